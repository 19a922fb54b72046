"""Shared by the integration tests: the real CLI in a subprocess, the MLLOG records of a log, and
the tiny trainings several tests read, trained once per session in the background.

The trainings (three converged llama31_8b tiny runs; the tiny LoRA base model and two converged
llama2_70b_lora tiny runs) are most of the suite's work. They start when the first integration
test runs, as single-threaded processes, two at a time, while the other tests go on; the tests
that read them run last (`pytest_collection_modifyitems`) and wait for what they need. Only the
trainings that some selected test reads are started. The built-in corpus is built first, before
any test, so that no two processes build it at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TINY_SEEDS = (11, 22, 33)
"""Seeds of the llama31_8b tiny runs (result_0.txt .. result_2.txt)."""
LORA_SEEDS = (1, 2)
"""Seeds of the llama2_70b_lora tiny runs (result_0.txt, result_1.txt)."""
TRAINING_TIMEOUT_S = 3600
READERS = {"tiny_runs": ("tiny",), "lora_base": ("base",), "lora_runs": ("base", "lora")}
"""Fixture -> the background jobs (by name prefix) it waits for."""


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "trainperf", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"trainperf {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_mllog(path: Path) -> list[dict]:
    return [
        json.loads(line.split(":::MLLOG ", 1)[1])
        for line in path.read_text().splitlines()
        if ":::MLLOG " in line
    ]


@pytest.fixture(scope="session")
def trainperf():
    """``trainperf(*args, check=False)``: run the CLI, return the CompletedProcess."""
    return run_cli


@pytest.fixture(scope="session")
def mllog():
    """``mllog(path)``: the MLLOG records of a result file."""
    return read_mllog


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
    `trainperf` process with one thread (two single-threaded processes keep both cores busy
    without the stalls of two-thread OpenMP regions on a shared machine)."""

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
                    os.killpg(proc.pid, signal.SIGKILL)
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
            proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            self._procs[job.name] = proc
        try:
            rc = proc.wait(timeout=TRAINING_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        if rc == 0:
            return "done", ""
        return "failed", f"trainperf {' '.join(job.args)} exited {rc}:\n{log.read_text()[-3000:]}"


def training_jobs(root: Path, wanted: set[str]) -> list[Job]:
    """The jobs of the wanted groups ('tiny', 'base', 'lora'), longest chain first."""
    tiny, lora = root / "tiny" / "llama31_8b", root / "lora" / "llama2_70b_lora"
    jobs = []
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
        return 2 if names & {"lora_base", "lora_runs"} else 1 if "tiny_runs" in names else 0

    items.sort(key=rank)  # stable: the order within each group stays


@pytest.fixture(scope="session", autouse=True)
def trainings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Start the background trainings that the selected tests read (see the module docstring)."""
    used = set().union(*(getattr(i, "fixturenames", ()) for i in request.session.items))
    wanted = {group for name in used & READERS.keys() for group in READERS[name]}
    root = tmp_path_factory.mktemp("trainings")
    background = Trainings(training_jobs(root, wanted), root=root)
    if wanted:
        run_cli("prepare", "llama31_8b", "--scale", "tiny", check=True)  # the built-in corpus
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
    """The tiny LoRA base model, pretrained (600 steps) into TRAINPERF_HOME."""
    trainings.wait("base")


@pytest.fixture(scope="session")
def lora_runs(trainings: Trainings, lora_base: None) -> Runs:
    """Two llama2_70b_lora runs at the tiny scale (seeds 1, 2), trained to the target."""
    trainings.wait("lora")
    return Runs(trainings.root / "lora" / "llama2_70b_lora", LORA_SEEDS)
