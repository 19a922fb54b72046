"""``trainperf watch``: follow result logs as they grow, for our runs and any MLPerf submission.

Three layers, each usable alone:

- ``LogTail`` reads the bytes appended to one file since the last poll and hands back complete
  lines; a partial last line waits for its newline (a line still being written is never parsed).
- ``RunState`` is one run built from ``parse_line`` events: benchmark, seed, GBS, samples, train
  loss, learning rate, training throughput (``curves.THROUGHPUT``, the figure ``report`` shows),
  the evaluations against the target with their trend, the ETA to
  the target (from the slope of the last evaluations and from the RCP mean samples to converge)
  and the status; the status and time to train come from ``summarize_events``, as in ``score``.
- ``Watch`` follows a path: one log, a results folder (every ``result_*.txt``, natural order,
  new files picked up) or a Slurm job's output (launcher prefixes and other output ignored, a new
  run begins after a ``run_stop``).

``trainperf.results.watch_view`` renders a ``Watch`` (rich Live on a terminal, one plain line per
change otherwise) and follows it until every run has ended.

Every quality metric of the LLM benchmarks is a loss (eval loss, log perplexity): lower is better
and a run converges at the first ``eval_accuracy <= target``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_logging.mllog import constants as C

from trainperf.results.curves import Throughput, least_squares_slope, training_throughput
from trainperf.results.parse import MLLogEvent, RunSummary, parse_line, summarize_events
from trainperf.results.score import required_run_count, sort_naturally

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec

__all__ = [
    "EXIT_FAILED",
    "EXIT_RUNNING",
    "EXIT_SUCCESS",
    "SET_FILE",
    "LogTail",
    "RunState",
    "Watch",
]

EXIT_SUCCESS = 0
"""Every watched run ended with run_stop status success."""
EXIT_FAILED = 1
"""At least one run ended with another status (aborted, not converged)."""
EXIT_RUNNING = 3
"""--once / --timeout returned while a run was still going (or an expected log was missing)."""
SET_FILE = "runset.json"
"""Written by ``trainperf run --nexp N`` into the results folder: ``{"nexp": N}``."""
ETA_EVALS = 3
"""The ETA slope is fitted over this many last evaluations."""
PARTIAL_GRACE_S = 5.0
"""A last line without newline is parsed once the file has not grown for this long."""

_TRIAL = re.compile(r"Beginning trial (\d+) of (\d+)")  # NVIDIA's run_and_time.sh / Slurm output
_RESULT_INDEX = re.compile(r"^result_(\d+)\.txt$")
# Events that open a new run when they come after a run_stop (a Slurm output of several trials).
_RUN_OPENERS = {C.CACHE_CLEAR, C.INIT_START, C.SUBMISSION_BENCHMARK, C.RUN_START}
_SAMPLE_KEYS = {"train_loss", "tracked_stats", C.EVAL_START, C.EVAL_ACCURACY, C.BLOCK_STOP}
_LOSS_KEYS = ("train_loss", "reduced_train_loss", "loss")  # ours / NVIDIA NeMo, tracked_stats
_LR_KEYS = ("lr", "learning_rate")


class LogTail:
    """Incremental reader of one growing file: only complete lines, numbered from 1."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.lineno = 0
        self.partial = b""
        self.truncated = False
        """Set by ``read`` when the file shrank (rewritten): the caller starts over."""

    def read(self, *, final: bool = False) -> list[tuple[int, str]]:
        """(line number, text) of each line completed since the last call.

        ``final``: the file is taken as complete, so a last line without newline counts too.
        A file that does not exist (yet) gives no lines.
        """
        try:
            size = self.path.stat().st_size
            if size < self.offset:  # rewritten or truncated: read it again from the start
                self.offset, self.lineno, self.partial, self.truncated = 0, 0, b"", True
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        pieces = (self.partial + data).split(b"\n")
        self.partial = pieces.pop()
        if final and self.partial:
            pieces.append(self.partial)
            self.partial = b""
        lines = []
        for raw in pieces:
            self.lineno += 1
            # Bytes that are not UTF-8 are replaced: published logs hold odd console output.
            lines.append((self.lineno, raw.decode("utf-8", errors="replace").rstrip("\r")))
        return lines


@dataclass
class RunState:
    """One run as its log has shown it so far."""

    path: Path
    segment: int = 0
    """0 for the first run of the file, 1 for the run after its run_stop, ..."""
    events: list[MLLogEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    trial: tuple[int, int] | None = None
    """(i, N) from a "Beginning trial i of N" line of the job output."""
    samples: int | None = None
    samples_ms: int | None = None
    """time_ms of the event that last raised ``samples``."""
    train_loss: float | None = None
    lr: float | None = None
    logged_throughput: float | None = None
    """Samples/s as the log's own ``tracked_stats`` throughput reports it (NVIDIA NeMo)."""
    seq_len: int | None = None
    log_target: float | None = None
    """The log's own ``target_accuracy`` (v5.1+ NVIDIA-based submissions)."""
    config: dict[str, Any] | None = None
    """Our ``config_<i>.json`` beside the log, when there is one."""
    ended: bool = False
    """A run_stop has been read (the status is then the summary's)."""
    _summary: RunSummary | None = None
    _throughput: tuple[Throughput | None] | None = None

    # -- building ---------------------------------------------------------------------------------
    def add(self, event: MLLogEvent) -> None:
        self.events.append(event)
        self._summary, self._throughput = None, None
        self.ended |= event.key == C.RUN_STOP
        meta, value = event.metadata, event.value
        if event.key in _SAMPLE_KEYS:
            self._see_samples(meta.get(C.SAMPLES_COUNT), event.time_ms)
        if event.key == "train_loss" and _number(value) is not None:
            self.train_loss = _number(value)
        if event.key == "tracked_stats" and isinstance(value, dict):
            loss = next((_number(value.get(k)) for k in _LOSS_KEYS if k in value), None)
            self.train_loss = loss if loss is not None else self.train_loss
            rate = _number(value.get("throughput"))
            self.logged_throughput = rate if rate is not None else self.logged_throughput
            for key in _LR_KEYS:
                self.lr = _number(value.get(key), self.lr)
        for key in _LR_KEYS:
            if key in meta:
                self.lr = _number(meta.get(key), self.lr)
        if event.key in _LR_KEYS:
            self.lr = _number(value, self.lr)
        if event.key == C.MAX_SEQUENCE_LENGTH and _number(value):
            self.seq_len = int(value)
        if event.key == "target_accuracy" and _number(value) is not None:
            self.log_target = _number(value)

    def _see_samples(self, count: Any, time_ms: int) -> None:
        # Samples only grow: v5.1 logs give a block's size (not a running count) on block events.
        count = _number(count)
        if count is not None and (self.samples is None or count > self.samples):
            self.samples, self.samples_ms = int(count), time_ms

    # -- reading ----------------------------------------------------------------------------------
    @property
    def summary(self) -> RunSummary:
        if self._summary is None:
            self._summary = summarize_events(self.events, path=self.path, errors=self.errors)
        return self._summary

    @property
    def status(self) -> str:
        """success / aborted / ... (run_stop), running, initializing or waiting."""
        s = self.summary
        if s.run_stop_ms is not None:
            return s.status or "run_stop without status"
        if s.run_start_ms is not None:
            return "running"
        return "initializing" if self.events else "waiting"

    @property
    def reason(self) -> str | None:
        """The run_stop's ``reason`` metadata (ours: why a run was aborted), if any."""
        stops = [e for e in self.events if e.key == C.RUN_STOP]
        reason = stops[-1].metadata.get("reason") if stops else None
        return str(reason) if reason else None

    @property
    def target(self) -> tuple[float | None, str]:
        """(quality target, where it comes from: log, config, rules or unknown)."""
        if self.log_target is not None:
            return self.log_target, "log"
        cfg_target = self._train_config("target")
        if _number(cfg_target) is not None:
            return float(cfg_target), "config"
        spec = _benchmark_spec(self.summary.benchmark)
        return (spec.eval.target, "rules") if spec is not None else (None, "unknown")

    def _train_config(self, key: str) -> Any:
        train = (self.config or {}).get("train")
        return train.get(key) if isinstance(train, dict) else None

    @property
    def scale(self) -> str | None:
        scale = (self.config or {}).get("scale")
        return scale if isinstance(scale, str) else None

    @property
    def throughput(self) -> Throughput | None:
        """Training samples/s (``curves.THROUGHPUT``, as ``report`` shows it); a running run's
        open block counts up to its last train event."""
        if self._throughput is None:
            self._throughput = (training_throughput(self.events, open_block=not self.ended),)
        return self._throughput[0]

    @property
    def samples_per_s(self) -> float | None:
        rate = self.throughput
        return rate.samples_per_s if rate is not None else None

    @property
    def progress_per_s(self) -> float | None:
        """Samples over wall time since run_start (evaluations included, as in time to train):
        the pace that the ETAs extrapolate."""
        start = self.summary.run_start_ms
        if start is None or self.samples is None or self.samples_ms is None:
            return None
        seconds = (self.samples_ms - start) / 1000
        return self.samples / seconds if seconds > 0 and self.samples > 0 else None

    @property
    def tokens_per_s(self) -> float | None:
        rate = self.samples_per_s
        seq = self.seq_len or _number(self._train_config("seq_len"))
        if seq is None:
            spec = _benchmark_spec(self.summary.benchmark)
            seq = spec.rules.get(C.MAX_SEQUENCE_LENGTH) if spec is not None else None
        return None if rate is None or not seq else rate * seq

    @property
    def trend(self) -> float | None:
        """Change of eval_accuracy from the previous evaluation to the last one."""
        evals = self.summary.evals
        return evals[-1][1] - evals[-2][1] if len(evals) >= 2 else None

    def eta_slope(self) -> tuple[float | None, str]:
        """(seconds to the target from the slope of the last evaluations, why when None)."""
        target, _ = self.target
        evals = [(s, v) for s, v in self.summary.evals if s is not None][-ETA_EVALS:]
        if target is None:
            return None, "target unknown"
        if evals and evals[-1][1] <= target:
            return 0.0, "target reached"
        if len(evals) < 2:
            return None, "needs 2 evaluations"
        slope = least_squares_slope(evals)  # eval units per sample
        if slope is None or slope >= 0:
            return None, "no downward trend"
        need = (evals[-1][1] - target) / -slope
        rate = self.progress_per_s
        if rate is None:
            return None, "no samples/s yet"
        done = max((self.samples or 0) - evals[-1][0], 0)
        return max(need - done, 0.0) / rate, f"{need:,.0f} samples at {slope:.3g}/sample"

    def eta_rcp(self) -> tuple[float | None, float | None, str]:
        """(seconds to the RCP mean samples to converge, that mean, basis or why not)."""
        s = self.summary
        if s.benchmark is None or s.global_batch_size is None:
            return None, None, "benchmark or GBS not logged"
        if self.scale not in (None, "full"):
            return None, None, f"scale {self.scale}: the RCPs are full-scale"
        if self.ended:
            return None, None, "run ended"
        mean, basis = _rcp_mean(s.benchmark, s.global_batch_size)
        if mean is None:
            return None, None, basis
        rate = self.progress_per_s
        if rate is None:
            return None, mean, basis
        return max(mean - (self.samples or 0), 0.0) / rate, mean, basis


class Watch:
    """The runs under one path: a log file, a results folder or a Slurm job's output."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        if not self.path.exists():
            raise ValueError(
                f"{self.path} does not exist; give a result log (result_0.txt), a results folder "
                "(trainperf run --results DIR) or a Slurm job's output (slurm-1234.out)"
            )
        self.is_dir = self.path.is_dir()
        if self.is_dir and not self._files() and not (self.path / SET_FILE).exists():
            raise ValueError(
                f"{self.path} holds no result_*.txt and no {SET_FILE} of a run set; watch the "
                "folder that trainperf run --results DIR writes, or a log file inside it"
            )
        self.tails: dict[Path, LogTail] = {}
        self.runs: dict[Path, list[RunState]] = {}
        self.last_growth: dict[Path, float] = {}

    def _files(self) -> list[Path]:
        if not self.is_dir:
            return [self.path]
        return sort_naturally([p for p in self.path.glob("result_*.txt") if p.is_file()])

    def poll(self, *, final: bool = False) -> bool:
        """Read what was appended since the last poll; True when anything changed."""
        changed = False
        for path in self._files():
            tail = self.tails.setdefault(path, LogTail(path))
            first = path not in self.runs
            if first:
                self.runs[path] = [RunState(path=path, config=_read_config(path))]
                changed = True
            # A last line without newline counts once the file has been quiet for a while.
            grace = self._idle(path) >= PARTIAL_GRACE_S and _parses(tail.partial)
            offset = tail.offset
            lines = tail.read(final=final or grace)
            if tail.truncated:
                tail.truncated = False
                self.runs[path] = [RunState(path=path, config=_read_config(path))]
            if tail.offset != offset and not first:  # first sight: the file's mtime says
                self.last_growth[path] = self.clock()
            for lineno, line in lines:
                self._feed(path, lineno, line)
            changed |= bool(lines)
        return changed

    def _feed(self, path: Path, lineno: int, line: str) -> None:
        runs = self.runs[path]
        run = runs[-1]
        trial = _TRIAL.search(line)
        try:
            event = parse_line(line, lineno=lineno)
        except ValueError as exc:
            run.errors.append(f"line {lineno}: {exc}")
            return
        if event is None:
            if trial:
                if run.ended:
                    run = RunState(path=path, segment=len(runs), config=run.config)
                    runs.append(run)
                run.trial = (int(trial.group(1)), int(trial.group(2)))
            return
        if run.ended and event.key in _RUN_OPENERS:
            run = RunState(path=path, segment=len(runs), config=run.config)
            runs.append(run)
        run.add(event)
        if run.config is None and event.key == C.CONFIG_FILENAME and isinstance(event.value, str):
            run.config = _read_json(path.parent / Path(event.value).name)

    # -- the set ----------------------------------------------------------------------------------
    @property
    def all_runs(self) -> list[RunState]:
        return [run for path in self._files() for run in self.runs.get(path, [])]

    def expected_runs(self) -> int | None:
        """N of "run i of N": a folder's run-set size (runset.json), or for a published
        submission's folder the rules' run count; a job output's trial count; None when nothing
        says (our single runs: config_<i>.json without runset.json)."""
        if not self.is_dir:
            trials = [r.trial[1] for r in self.all_runs if r.trial]
            return max(trials) if trials else None
        nexp = _set_size(self.path)
        if nexp is not None:
            return nexp
        if any(r.config is not None for r in self.all_runs):
            return None  # our runs without a set: each trainperf run is a whole of its own
        names = {r.summary.benchmark for r in self.all_runs if r.summary.benchmark}
        return required_run_count(names.pop()) if len(names) == 1 else None

    def label(self, run: RunState) -> str:
        """'run i of N' for one run."""
        runs = self.all_runs
        i, n = runs.index(run) + 1, self.expected_runs()  # a set: the run's place in it
        if self.is_dir:
            return f"run {i} of {n or len(runs)}"
        if run.trial:
            i, n = run.trial
        elif match := _RESULT_INDEX.match(self.path.name):
            nexp = _set_size(self.path.parent)  # one log of our set: result_<i-1>.txt
            if nexp is not None:
                i, n = int(match.group(1)) + 1, nexp
        return f"run {i} of {n or len(runs)}"

    def done(self) -> bool:
        """Every expected run has ended (a lone log: its runs; a set: N runs)."""
        runs = self.all_runs
        if not runs or not all(r.ended for r in runs):
            return False
        if self.is_dir:
            return len(runs) >= (self.expected_runs() or len(runs))
        last = runs[-1]
        if last.trial and not _RESULT_INDEX.match(self.path.name):
            return last.trial[0] >= last.trial[1]  # a job output: wait for its last trial
        return True

    def exit_code(self) -> int:
        runs = self.all_runs
        if any(r.ended and r.summary.status != C.SUCCESS for r in runs):
            return EXIT_FAILED
        return EXIT_SUCCESS if self.done() else EXIT_RUNNING

    def idle_seconds(self, run: RunState) -> float:
        """Seconds since the run's file last grew."""
        return self._idle(run.path)

    def _idle(self, path: Path) -> float:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return 0.0
        return max(self.clock() - max(mtime, self.last_growth.get(path, 0.0)), 0.0)

    def finished_count(self) -> int:
        return sum(r.ended for r in self.all_runs)


# -- helpers --------------------------------------------------------------------------------------
def _number(value: Any, default: float | None = None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


@functools.lru_cache(maxsize=16)
def _rcp_mean(benchmark: str, gbs: int) -> tuple[float | None, str]:
    """(RCP mean samples to converge, basis), or (None, why); cached: it reads the RCP files."""
    from trainperf.perf.estimate import rcp_mean_samples

    try:
        mean, basis, _ = rcp_mean_samples(benchmark, gbs)
    except ValueError as exc:
        return None, str(exc)
    return mean, basis


def _benchmark_spec(name: str | None) -> BenchmarkSpec | None:
    from trainperf.benchmarks import BENCHMARKS

    return BENCHMARKS.get(name) if name else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _set_size(folder: Path) -> int | None:
    nexp = (_read_json(folder / SET_FILE) or {}).get("nexp")
    return nexp if isinstance(nexp, int) and not isinstance(nexp, bool) and nexp > 0 else None


def _read_config(log: Path) -> dict[str, Any] | None:
    """Our config_<i>.json beside result_<i>.txt (None for other submissions' logs)."""
    match = _RESULT_INDEX.match(log.name)
    return _read_json(log.with_name(f"config_{match.group(1)}.json")) if match else None


def _parses(partial: bytes) -> bool:
    if not partial:
        return False
    try:
        return parse_line(partial.decode("utf-8", errors="replace"), lineno=0) is not None
    except ValueError:
        return False
