"""Submission-style run sets: ``trainperf run BENCH --nexp 10 [--resume]``.

A set is ``result_0.txt .. result_<n-1>.txt`` in one results folder, each a whole run (its own
init, run_start and run_stop, cache clearing logged, a distinct logged seed), as MLPerf's rules ask
for a submission. A set is planned before any run starts:

- a fresh folder: every index, in order;
- a folder that already holds result logs: refused unless ``--resume``, which keeps every
  finished run (converged, or stopped at its step limit without converging, a legitimate MLPerf
  outcome) and runs again each index whose log is missing or failed (no run_stop: crashed or
  killed; or stopped by an error or Ctrl-C). A failed log is never overwritten: it moves to
  ``failed/`` first.

Seeds: with ``--seed S`` run i uses S + i (a resumed set gets the seeds it would have had);
otherwise each run draws a fresh one that no other run of the set has.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlperf_logging.mllog import constants as C

from trainperf.results.parse import parse_log
from trainperf.train.run import NOT_CONVERGED, fresh_seed

FAILED_DIR = "failed"
SET_FILE = "runset.json"
"""``{"nexp": N}``: the set's planned size, so that ``trainperf watch`` can say "run i of N"."""
_RESULT = re.compile(r"^result_(\d+)\.txt$")


@dataclass
class SetPlan:
    """Which indices of an ``nexp``-run set still have to run."""

    results_dir: Path
    nexp: int
    todo: list[int]
    kept: dict[int, str] = field(default_factory=dict)
    """index -> outcome of the finished runs the set keeps ('success' or 'not converged')."""
    failed: dict[int, str] = field(default_factory=dict)
    """index -> why its existing log counts as failed (rerun, the log moved aside first)."""

    def describe(self) -> str:
        if not self.kept and not self.failed:
            return f"{self.nexp} run(s) into {self.results_dir}"
        parts = [f"{len(self.kept)} of {self.nexp} finished"]
        if self.failed:
            parts.append(
                "failed, to rerun: "
                + ", ".join(f"result_{i}.txt ({why})" for i, why in sorted(self.failed.items()))
            )
        missing = [i for i in self.todo if i not in self.failed]
        if missing:
            parts.append(f"missing: {', '.join(f'result_{i}.txt' for i in missing)}")
        return f"resuming the set in {self.results_dir}: " + "; ".join(parts)


def result_indices(results_dir: Path) -> list[int]:
    if not results_dir.is_dir():
        return []
    found = (_RESULT.match(p.name) for p in results_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def run_outcome(path: Path) -> tuple[str, str]:
    """('success' | 'not converged' | 'failed', why) for the result log at `path`."""
    try:
        parsed = parse_log(path)
    except ValueError as exc:
        return "failed", str(exc)
    stops = [e for e in parsed.events if e.key == C.RUN_STOP]
    if not stops:
        return "failed", "no run_stop: the run crashed or was killed"
    meta = stops[-1].metadata or {}
    status, reason = meta.get(C.STATUS), str(meta.get("reason", ""))
    if status == C.SUCCESS:
        return "success", ""
    if reason.startswith(NOT_CONVERGED):
        return NOT_CONVERGED, reason
    return "failed", reason or f"run_stop status {status!r}"


def plan_run_set(results_dir: Path, nexp: int, *, resume: bool) -> SetPlan:
    """The runs still to do for an `nexp`-run set in `results_dir` (see the module docstring)."""
    if nexp < 1:
        raise ValueError(f"--nexp({nexp}) must be >= 1 (MLPerf sets: 10 runs, 3 for llama31_405b)")
    existing = result_indices(results_dir)
    if existing and not resume:
        names = ", ".join(f"result_{i}.txt" for i in existing[:4])
        raise ValueError(
            f"{results_dir} already holds {len(existing)} result log(s) ({names}"
            f"{', ...' if len(existing) > 4 else ''}); add --resume to complete that set, or "
            "give a new folder with --results DIR"
        )
    plan = SetPlan(results_dir=results_dir, nexp=nexp, todo=[])
    for index in range(nexp):
        path = results_dir / f"result_{index}.txt"
        if not path.exists():
            plan.todo.append(index)
            continue
        outcome, why = run_outcome(path)
        if outcome == "failed":
            plan.failed[index] = why
            plan.todo.append(index)
        else:
            plan.kept[index] = outcome
    return plan


def write_set_file(results_dir: Path, nexp: int) -> Path:
    """Record the planned size of the set in ``results_dir/runset.json`` (atomically)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / SET_FILE
    tmp = target.with_name(f".{SET_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({"nexp": nexp}) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def move_failed_aside(results_dir: Path, index: int) -> Path | None:
    """Move a failed ``result_<index>.txt`` (and its config) into ``failed/`` under a new name,
    so that the rerun can take the index; returns the new path (None if there was no log)."""
    log = results_dir / f"result_{index}.txt"
    if not log.exists():
        return None
    dest_dir = results_dir / FAILED_DIR
    dest_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        dest = dest_dir / f"result_{index}.{stamp}.{attempt}.txt"
        if not dest.exists():
            break
    os.replace(log, dest)
    config = results_dir / f"config_{index}.json"
    if config.exists():
        os.replace(config, dest.with_name(dest.name.replace("result_", "config_")[:-4] + ".json"))
    return dest


def seeds_for(plan: SetPlan, base_seed: int | None) -> dict[int, int]:
    """A seed for every index the plan runs: base_seed + index, or fresh ones that no kept run
    of the set used (MLPerf requires distinct seeds within a set)."""
    if base_seed is not None:
        return {i: base_seed + i for i in plan.todo}
    used = set()
    for index in plan.kept:
        seeds = [e.value for e in parse_log(plan.results_dir / f"result_{index}.txt").events
                 if e.key == C.SEED]  # fmt: skip
        used.update(seeds[:1])
    seeds: dict[int, int] = {}
    for index in plan.todo:
        seed = fresh_seed()
        while seed in used:
            seed = fresh_seed()
        used.add(seed)
        seeds[index] = seed
    return seeds
