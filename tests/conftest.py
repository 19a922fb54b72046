"""Session-wide: the environment of every test process, the tolerance of the parity tests, and
the tiny trainings that several integration tests read.

Every process of the suite computes on one thread (OMP_NUM_THREADS=1, unless set): the suite
runs several processes at once (the background trainings below, torchrun's ranks, the test
itself), and on 2 shared cores two-thread OpenMP regions stall whenever one of their threads
waits for a core, while one thread per process keeps both cores busy.

The trainings (three converged llama31_8b tiny runs; the tiny LoRA base model and two converged
llama2_70b_lora tiny runs; one flux1 and one gpt_oss_20b tiny run) are most of the suite's work.
They start before the first test, as `trainperf` processes two at a time, while the other tests
go on; the tests that read them (through the fixtures tiny_runs, flux_runs, moe_runs, lora_base,
lora_runs) run last and wait for what they need.
Only the trainings that a selected test reads are started. The built-in corpus is built first,
before any test, so that no two processes build it at once.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from trainperf.models.llama.model import LlamaConfig

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before any test module imports torch

FLOAT32_ROUNDOFF = 2.0**-24
"""Unit roundoff u of float32: one correctly rounded operation is off by at most u, relatively."""
LAMBDA = 8.0
"""Confidence of the probabilistic bound: |error| <= LAMBDA sqrt(n) u fails with probability below
2 n exp(-LAMBDA^2 / 2), about 1e-10 for the n of our tiny models (Higham & Mary, SIAM J. Sci.
Comput. 41(5), 2019, theorem 3.1)."""


def float32_step_terms(cfg: LlamaConfig, *, tokens: int, seq_len: int) -> int:
    """Float32 terms on the longest chain of sums in one training step of the Llama `cfg`.

    Forward, per block: the two RMSNorms (dim each), the Q/K/V projections (dim), the scores
    (head_dim), attention's weighted sum (seq_len keys), wo (dim), w1/w3 (dim) and w2 (ffn_dim);
    then the final norm and the output projection (dim each), the log-sum-exp over the vocabulary
    and the loss's sum over `tokens`. Backward retraces that chain, and a weight's gradient sums
    over the `tokens` once more. LoRA adapters add a chain of `rank` terms beside their base,
    which this leaves out (rank 4 to 16 next to hundreds of terms).
    """
    block = 5 * cfg.dim + cfg.head_dim + seq_len + cfg.ffn_dim
    forward = cfg.n_layers * block + 2 * cfg.dim + cfg.vocab_size + tokens
    return 2 * forward + tokens


def float32_step_bound(cfg: LlamaConfig, *, tokens: int, seq_len: int) -> float:
    """How far, relatively, a float32 result of one training step (the loss, a gradient) may
    differ between two runs that add the same terms in other orders (sharded vs one process).

    A sum of n terms in float32 is off by at most LAMBDA sqrt(n) u relative to the sum of the
    terms' magnitudes, with near certainty, since rounding errors are independent and of mean
    zero (Higham & Mary 2019); the errors of a chain of sums add up the same way, so n counts the
    terms of the whole chain (`float32_step_terms`). Each run has its own errors: twice that.
    Nothing else differs: the sharded and the one-process runs compute the same sums.
    """
    n = float32_step_terms(cfg, tokens=tokens, seq_len=seq_len)
    return 2 * LAMBDA * math.sqrt(n) * FLOAT32_ROUNDOFF


@pytest.fixture(scope="session", autouse=True)
def trainperf_home(tmp_path_factory):
    """Keep every test's corpus cache out of the user's home; reuse it across the session.

    CI sets TRAINPERF_HOME to a folder inside the clone; otherwise a session temp folder is used.
    """
    if "TRAINPERF_HOME" not in os.environ:
        os.environ["TRAINPERF_HOME"] = str(tmp_path_factory.mktemp("trainperf_home"))
    return Path(os.environ["TRAINPERF_HOME"])


@pytest.fixture(scope="session")
def rounding_bound() -> Callable[..., float]:
    """``rounding_bound(cfg, tokens=, seq_len=)``: `float32_step_bound`, the tolerance of the
    parity tests (sharded training vs one process)."""
    return float32_step_bound


TINY_SEEDS = (11, 22, 33)
"""Seeds of the llama31_8b tiny runs (result_0.txt .. result_2.txt)."""
LORA_SEEDS = (1, 2)
"""Seeds of the llama2_70b_lora tiny runs (result_0.txt, result_1.txt)."""
FLUX_SEEDS = (5,)
"""Seed of the flux1 tiny run (result_0.txt)."""
MOE_SEEDS = (7,)
"""Seed of the gpt_oss_20b tiny run (result_0.txt)."""
TRAINING_TIMEOUT_S = 3600
PR_SET_PDEATHSIG = 1  # prctl(2)
try:  # looked up here: a child between fork and exec should not load libraries
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
READERS = {
    "tiny_runs": ("tiny",),
    "lora_base": ("base",),
    "lora_runs": ("base", "lora"),
    "flux_runs": ("flux",),
    "moe_runs": ("moe",),
}
"""Fixture -> the background jobs (by name prefix) it waits for."""


@dataclass(frozen=True)
class Runs:
    """Finished runs of one benchmark: ``folder/result_<i>.txt`` trained with ``seeds[i]``."""

    folder: Path
    seeds: tuple[int, ...]


@dataclass
class Job:
    """One `trainperf` command of the background trainings."""

    name: str
    args: list[str]
    after: tuple[str, ...] = ()
    """Jobs that must have succeeded first."""
    state: str = "waiting"
    """waiting, running, done or failed."""
    error: str = ""


@dataclass
class Trainings:
    """The background trainings of a session: jobs run in order, `workers` at a time, each as a
    `trainperf` process on one thread."""

    jobs: list[Job]
    root: Path
    """Their results (tiny/, lora/) and a log per job."""
    workers: int = 2
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _stopped: bool = False

    def start(self) -> None:
        for i in range(self.workers):
            threading.Thread(target=self._work, name=f"training-{i}", daemon=True).start()

    def wait(self, prefix: str) -> None:
        """Block until every job named `prefix`* has ended; fail the test if one failed."""
        mine = [j for j in self.jobs if j.name.startswith(prefix)]
        assert mine, f"no background training {prefix!r} was started for this session"
        with self._cond:
            self._cond.wait_for(lambda: all(j.state in ("done", "failed") for j in mine))
        failed = [j for j in mine if j.state == "failed"]
        if failed:
            pytest.fail("\n".join(f"background training {j.name}: {j.error}" for j in failed))

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.kill()
            self._cond.notify_all()

    def _next(self) -> Job | None:
        """The first waiting job whose predecessors succeeded (failing those whose failed)."""
        while not self._stopped:
            waiting = [j for j in self.jobs if j.state == "waiting"]
            if not waiting:
                return None
            states = {j.name: j.state for j in self.jobs}
            for job in waiting:
                if any(states[a] == "failed" for a in job.after):
                    job.state, job.error = "failed", f"needs {', '.join(job.after)}, which failed"
                    self._cond.notify_all()
                    break
                if all(states[a] == "done" for a in job.after):
                    job.state = "running"
                    return job
            else:
                self._cond.wait()
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._next()
            if job is None:
                return
            state, error = self._run(job)
            with self._cond:
                job.state, job.error = state, error
                self._cond.notify_all()

    def _run(self, job: Job) -> tuple[str, str]:
        log = self.root / f"{job.name}.log"
        env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "trainperf", *job.args]
        with open(log, "w") as out, self._cond:
            if self._stopped:
                return "failed", "the session ended first"
            # in the session's process group (Ctrl-C and `timeout` reach it) and killed if the
            # test process dies without its teardown
            proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
            self._procs[job.name] = proc
        try:
            rc = proc.wait(timeout=TRAINING_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if rc == 0:
            return "done", ""
        return "failed", f"trainperf {' '.join(job.args)} exited {rc}:\n{log.read_text()[-3000:]}"


def die_with_parent() -> None:
    """In a child before exec: SIGKILL it when the thread that started it (a worker of
    Trainings, which waits for it) ends, as when the test process dies (Linux's prctl)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def training_jobs(root: Path, wanted: set[str]) -> list[Job]:
    """The jobs of the wanted groups ('tiny', 'base', 'lora', 'flux', 'moe'), longest chain
    first."""
    tiny, lora = root / "tiny" / "llama31_8b", root / "lora" / "llama2_70b_lora"
    jobs = []
    if "flux" in wanted:
        for i, seed in enumerate(FLUX_SEEDS):
            args = ["run", "flux1", "--no-progress", "--results", str(root / "flux" / "flux1")]
            jobs.append(Job(f"flux-{i}", [*args, "--seed", str(seed), "--run-index", str(i)]))
    if "moe" in wanted:
        for i, seed in enumerate(MOE_SEEDS):
            results = str(root / "moe" / "gpt_oss_20b")
            args = ["run", "gpt_oss_20b", "--no-progress", "--results", results]
            jobs.append(Job(f"moe-{i}", [*args, "--seed", str(seed), "--run-index", str(i)]))
    if "base" in wanted:  # the LoRA base model: pretrained once, then cached in TRAINPERF_HOME
        jobs.append(Job("base", ["prepare", "llama2_70b_lora"]))
    if "tiny" in wanted:
        for i, seed in enumerate(TINY_SEEDS):
            args = ["run", "llama31_8b", "--no-progress", "--results", str(tiny), "--seed"]
            jobs.append(Job(f"tiny-{i}", [*args, str(seed), "--run-index", str(i)]))
    if "lora" in wanted:
        for i, seed in enumerate(LORA_SEEDS):
            args = ["run", "llama2_70b_lora", "--no-progress", "--results", str(lora), "--seed"]
            args += [str(seed), "--run-index", str(i)]
            jobs.append(Job(f"lora-{i}", args, after=("base",)))
    return jobs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the background trainings run last, the LoRA ones (the longest) last of
    all, so that everything else runs while they train."""

    def rank(item: pytest.Item) -> int:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"lora_base", "lora_runs"}:
            return 2
        return 1 if names & {"tiny_runs", "flux_runs", "moe_runs"} else 0

    items.sort(key=rank)  # stable: the order within each group stays


@pytest.fixture(scope="session", autouse=True)
def trainings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trainperf_home: Path
):
    """Start the background trainings that the selected tests read (see the module docstring)."""
    used = set().union(*(getattr(i, "fixturenames", ()) for i in request.session.items))
    wanted = {group for name in used & READERS.keys() for group in READERS[name]}
    root = tmp_path_factory.mktemp("trainings")
    background = Trainings(training_jobs(root, wanted), root=root)
    if wanted:
        corpus = [sys.executable, "-m", "trainperf", "prepare", "llama31_8b", "--scale", "tiny"]
        proc = subprocess.run(corpus, capture_output=True, text=True)
        assert proc.returncode == 0, f"the built-in corpus: {proc.stdout}\n{proc.stderr}"
        background.start()
    yield background
    background.stop()


@pytest.fixture(scope="session")
def tiny_runs(trainings: Trainings) -> Runs:
    """Three llama31_8b runs at the tiny scale (seeds 11, 22, 33), trained to the target."""
    trainings.wait("tiny")
    return Runs(trainings.root / "tiny" / "llama31_8b", TINY_SEEDS)


@pytest.fixture(scope="session")
def lora_base(trainings: Trainings) -> None:
    """The tiny LoRA base model, pretrained (BASE_STEPS) into TRAINPERF_HOME."""
    trainings.wait("base")


@pytest.fixture(scope="session")
def lora_runs(trainings: Trainings, lora_base: None) -> Runs:
    """Two llama2_70b_lora runs at the tiny scale (seeds 1, 2), trained to the target."""
    trainings.wait("lora")
    return Runs(trainings.root / "lora" / "llama2_70b_lora", LORA_SEEDS)


@pytest.fixture(scope="session")
def moe_runs(trainings: Trainings) -> Runs:
    """One gpt_oss_20b run at the tiny scale (seed 7), trained to the target."""
    trainings.wait("moe")
    return Runs(trainings.root / "moe" / "gpt_oss_20b", MOE_SEEDS)


@pytest.fixture(scope="session")
def flux_runs(trainings: Trainings) -> Runs:
    """One flux1 run at the tiny scale (seed 5), trained to the target on generated latents."""
    trainings.wait("flux")
    return Runs(trainings.root / "flux" / "flux1", FLUX_SEEDS)
