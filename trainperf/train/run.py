"""A run's lifecycle around the Trainer: result file, MLLOG header, signals, timing.

The timed region follows the MLPerf rules: model build and data indexing happen between
``init_start`` and ``init_stop``; the clock (``run_start``) starts before the first training token
is read; ``run_stop`` is logged right after the first evaluation that reaches the target
(status ``success``), or when the step limit passes (status ``aborted``), or when the run fails
or is interrupted (status ``aborted`` with the reason), so a log always says how it ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from mlperf_logging.mllog import constants as C
from rich.console import Console

from trainperf.config import Config, save_config
from trainperf.data.prepare import DataPaths
from trainperf.mlperf.events import log_run_header
from trainperf.mlperf.logger import MLPerfLogger, create_result_file
from trainperf.train.distributed import DistEnv, broadcast_value
from trainperf.train.trainer import Trainer

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec


@dataclass
class RunResult:
    """What a finished (or failed) run reports back."""

    index: int
    log_path: Path
    config_path: Path
    status: str
    seed: int
    steps: int = 0
    samples: int = 0
    last_eval: float | None = None
    time_to_train_s: float | None = None
    reason: str | None = None
    peak_memory_gib: float | None = None
    """Peak GPU memory allocated by this rank (CUDA only)."""


def describe_platform(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        return f"{world_size}x{torch.cuda.get_device_name(device)}"
    return f"{world_size}x{platform.processor() or platform.machine()}-CPU"


NOT_CONVERGED = "not converged"
"""Start of the run_stop ``reason`` of a run that reached its step limit without the target: a
finished run (MLPerf scores it as non-converged). Any other reason of an aborted run (an
exception, Ctrl-C) marks a failed one, which ``--resume`` runs again."""


class RunTerminated(Exception):
    """SIGTERM reached the run: torchrun stopping it because another rank failed, Slurm's time
    limit or scancel, or a user's kill. Raised in the main thread so that the log gets its
    run_stop (aborted, with this reason) before the process ends."""


@contextlib.contextmanager
def time_limit(minutes: float):
    """Within: past `minutes` of wall clock (0: no limit), RunTerminated in the main thread."""
    if minutes <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    raised = []

    def handler(signum, frame):
        if raised:  # the log is being closed
            return
        raised.append(signum)
        raise RunTerminated(f"time limit of {minutes:g} min (train.time_limit_min) reached")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, minutes * 60)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def sigterm_raises():
    """Within: the first SIGTERM raises RunTerminated in the main thread, later ones are
    ignored until the block ends (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    raised = []

    def handler(signum, frame):
        if raised:  # a second SIGTERM while the log is being closed: finish closing it
            return
        raised.append(signum)
        raise RunTerminated(
            "terminated by SIGTERM (another rank failed, the job's time limit, or a kill)"
        )

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def clear_page_cache() -> bool:
    """Drop the OS page cache as MLPerf's reference launchers do before each run
    (``sync; sysctl vm.drop_caches=3``); False where that is not allowed (not root, containers)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        return False
    return True


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def resolve_run(cfg: Config, spec: BenchmarkSpec, env: DistEnv) -> Config:
    """The benchmark's rule-derived values and one seed shared by every rank."""
    cfg = spec.resolve(cfg)
    seed = cfg.train.seed if cfg.train.seed is not None else fresh_seed()
    seed = broadcast_value(seed, env)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def reserve_result(
    cfg: Config, env: DistEnv, *, index: int | None = None
) -> tuple[int, Path, Path]:
    """Rank 0 creates result_<i>.txt (the next free i, or `index`) and writes config_<i>.json;
    every rank learns i."""
    results_dir = Path(cfg.log.results_dir).expanduser()
    got: int | str = -1
    if env.is_main:
        try:
            got, log_path = create_result_file(results_dir, index=index)
            save_config(cfg, results_dir / f"config_{got}.json")
        except ValueError as exc:
            got = str(exc)
    got = broadcast_value(got, env)
    if isinstance(got, str):
        raise ValueError(got)
    return got, results_dir / f"result_{got}.txt", results_dir / f"config_{got}.json"


def run_benchmark(
    cfg: Config,
    spec: BenchmarkSpec,
    paths: DataPaths,
    *,
    console: Console,
    show_progress: bool = True,
    env: DistEnv | None = None,
    index: int | None = None,
) -> RunResult:
    """Run one benchmark attempt into the next free ``result_<i>.txt`` of the results folder
    (or into ``result_<index>.txt``, which must not exist).

    Under torchrun every rank calls this; rank 0 writes the log.
    """
    env = env or DistEnv()
    cfg = resolve_run(cfg, spec, env)
    seed = cfg.train.seed
    assert seed is not None
    index, log_path, config_path = reserve_result(cfg, env, index=index)
    result = RunResult(
        index=index, log_path=log_path, config_path=config_path, status=C.ABORTED, seed=seed
    )
    ml = MLPerfLogger(log_path, enabled=env.is_main)
    run_start: float | None = None
    trainer: Trainer | None = None
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(sigterm_raises())
        stack.enter_context(time_limit(cfg.train.time_limit_min))
        # at full scale, as the reference does; reduced scales log that they did not
        cleared = cfg.scale == "full" and env.local_rank == 0 and clear_page_cache()
        if cfg.scale == "full" and env.is_main and not cleared:
            console.print(
                "[yellow]page cache not dropped[/] (needs root; or run `sync; sudo sysctl "
                "vm.drop_caches=3` before each run): logged cache_clear false"
            )
        ml.event(C.CACHE_CLEAR, cleared)
        ml.start(C.INIT_START)
        trainer = Trainer(
            cfg, spec, paths, ml=ml, console=console, show_progress=show_progress, env=env
        )
        trainer.setup()
        platform_name = describe_platform(trainer.device, env.world_size)
        facts = trainer.facts(platform=platform_name)
        log_run_header(ml, cfg, spec, facts, config_filename=config_path.name)
        ml.end(C.INIT_STOP)
        ml.start(C.RUN_START)
        run_start = time.time()
        result.status = trainer.train()
        if result.status != C.SUCCESS:
            result.reason = (
                f"{NOT_CONVERGED}: target {cfg.train.target} not reached in "
                f"{cfg.train.max_steps} steps"
            )
    except KeyboardInterrupt:
        result.reason = "interrupted (Ctrl-C)"
        raise
    except Exception as exc:
        result.reason = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        result.time_to_train_s = None if run_start is None else time.time() - run_start
        if trainer is not None:
            result.steps = trainer.steps
            result.samples = trainer.steps * cfg.train.global_batch_size
            result.last_eval = trainer.last_eval
            if trainer.device.type == "cuda":
                result.peak_memory_gib = torch.cuda.max_memory_allocated(trainer.device) / 2**30
        meta = {C.SAMPLES_COUNT: result.samples, C.STATUS: result.status}
        if result.reason and result.status != C.SUCCESS:
            meta["reason"] = result.reason
        ml.end(C.RUN_STOP, metadata=meta)
        ml.close()
        stack.close()  # SIGTERM's previous handler again, once the log is closed
    return result
