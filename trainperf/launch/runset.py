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

Each run is its own ``trainperf run`` process (or, inside a Slurm job, its own ``srun`` step); the
set's process waits for it, passes SIGTERM on to it and, on Ctrl-C, lets it close its log first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlperf_logging.mllog import constants as C
from rich.console import Console

from trainperf.atomic import write_text_atomic
from trainperf.config import Config
from trainperf.launch import EXIT_USER_ERROR
from trainperf.launch.torchrun import without_options
from trainperf.results.parse import parse_log
from trainperf.train.run import NOT_CONVERGED, fresh_seed

FAILED_DIR = "failed"
SET_FILE = "runset.json"
"""``{"nexp": N}``: the set's planned size, so that ``trainperf watch`` can say "run i of N"."""
_RESULT = re.compile(r"^result_(\d+)\.txt$")
SET_OPTIONS = {"--nexp": True, "--resume": False, "--seed": True, "--run-index": True}
"""Options of the launching command that its runs must not see again (name -> takes a value)."""

StepCommand = Callable[[list[str], int | None], list[str]]
"""(a run's trainperf arguments, its index) -> the command that runs it (e.g. an srun step)."""


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
    write_text_atomic(target, json.dumps({"nexp": nexp}) + "\n")
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


def run_set(
    cfg: Config,
    *,
    argv: list[str],
    nexp: int,
    resume: bool,
    seed: int | None,
    progress: bool,
    console: Console,
    out: Console,
    step: StepCommand | None = None,
) -> int:
    """``trainperf *argv --nexp N [--resume]``: each planned run as its own ``trainperf run``
    process (or ``step``'s command for it), then the score on ``out``. Returns the exit status:
    0 when the set is complete and scores."""
    from trainperf.launch.prepare import prepare_run
    from trainperf.results.score import render_score, score_directory

    results_dir = Path(cfg.log.results_dir).expanduser()
    plan = plan_run_set(results_dir, nexp, resume=resume)
    seeds = seeds_for(plan, seed)
    console.print(plan.describe())
    write_set_file(results_dir, nexp)  # trainperf watch DIR: "run i of N"
    prepare_run(cfg, progress=progress)  # once, before the first run
    base = without_options(argv, SET_OPTIONS)
    for n, index in enumerate(plan.todo, 1):
        if index in plan.failed:
            moved = move_failed_aside(results_dir, index)
            console.print(f"result_{index}.txt failed ({plan.failed[index]}): moved to {moved}")
        console.print(
            f"[bold]run {n} of {len(plan.todo)}[/]: result_{index}.txt, seed {seeds[index]}"
        )
        run_args = [*base, "--seed", str(seeds[index]), "--run-index", str(index)]
        if step is None:
            command = [sys.executable, "-m", "trainperf", *run_args]
        else:
            command = step(run_args, index)
        rc = wait_for_run(command, console=console)
        if rc == EXIT_USER_ERROR:  # a bad option or missing data: every later run would fail too
            console.print("stopping the set: fix the error above, then rerun with --resume")
            return rc
    score = score_directory(results_dir)
    render_score(score, out)
    final = plan_run_set(results_dir, nexp, resume=True)
    if final.todo:
        console.print(f"the set is incomplete: {final.describe()}; rerun with --resume")
        return 1
    return 0 if score.score_minutes is not None else 1


def wait_for_run(command: list[str], *, console: Console) -> int:
    """Run one run of a set as a child process and return its exit status; on Ctrl-C let it
    close its log first (KeyboardInterrupt goes on up). SIGTERM (Slurm's time limit, scancel,
    kill) goes on to the run, which closes its log as aborted; then this process exits with
    status 143, as the signal would have ended it, instead of leaving the run training alone."""
    proc = subprocess.Popen(command)
    terminated = []

    def forward(signum, frame) -> None:
        terminated.append(signum)
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        rc = proc.wait()
        if terminated:
            console.print("[yellow]terminated (SIGTERM): the run closed its log; the set stops[/]")
            raise SystemExit(128 + signal.SIGTERM)
        return rc
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)  # a no-op if the terminal's Ctrl-C reached it already
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
