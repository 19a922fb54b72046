"""A run set's parent passes SIGTERM on to the run it waits for (launch.runset.wait_for_run),
then stops the set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_sigterm_reaches_the_run_and_stops_the_set(tmp_path: Path) -> None:
    marker = tmp_path / "child_got_sigterm"
    ready = tmp_path / "child_ready"
    child = textwrap.dedent(f"""
        import pathlib, signal, sys, time
        def stop(signum, frame):
            pathlib.Path({str(marker)!r}).write_text("closed its log")
            sys.exit(1)
        signal.signal(signal.SIGTERM, stop)
        pathlib.Path({str(ready)!r}).write_text("")
        time.sleep(60)
    """)
    parent = textwrap.dedent(f"""
        import sys
        from rich.console import Console
        from trainperf.launch.runset import wait_for_run
        wait_for_run([sys.executable, "-c", {child!r}], console=Console(stderr=True))
        print("the set went on")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], env=env, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the child run did not start"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert marker.read_text() == "closed its log"
    assert proc.returncode == 128 + signal.SIGTERM
    assert "the set went on" not in out
