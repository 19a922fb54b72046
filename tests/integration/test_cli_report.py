"""`trainperf report` through the real CLI: a crafted folder, --json, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from mllog_lines import T0
from mllog_lines import mllog as line

HEADER = {  # what the closed llama31_8b rules accept at GBS 32
    "submission_benchmark": "llama31_8b",
    "global_batch_size": 32,
    "opt_base_learning_rate": 8e-4,
    "opt_end_learning_rate": 8e-5,
    "opt_learning_rate_warmup_steps": 128,
    "opt_learning_rate_decay_steps": 1_200_000 - 128,
    "opt_learning_rate_decay_schedule": "cosine with linear warmup",
    "max_steps": 1_200_000,
}


def mllog(key: str, value=None, *, t: int, **meta) -> str:
    return line(key, value, time_ms=t, **meta)


def write_run(path: Path, evals: list[float], *, status: str) -> None:
    """A llama31_8b log at GBS 32 evaluating every 12288 samples, one minute per evaluation."""
    t, lines = T0, []
    for key, value in HEADER.items():
        lines.append(mllog(key, value, t=t))
    lines += [mllog("run_start", t=t), mllog("block_start", t=t, samples_count=0)]
    for i, value in enumerate(evals, start=1):
        t += 60_000
        lines += [
            mllog("train_loss", value + 1.0, t=t, samples_count=i * 12288),
            mllog("block_stop", t=t, samples_count=i * 12288),
            mllog("eval_accuracy", value, t=t, samples_count=i * 12288),
            mllog("block_start", t=t, samples_count=i * 12288),
        ]
    lines.append(mllog("run_stop", t=t, samples_count=len(evals) * 12288, status=status))
    path.write_text("\n".join(lines) + "\n")


def test_report_json_on_a_crafted_folder(tmp_path: Path, trainperf) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs / "result_0.txt", [6.0, 4.5, 3.25], status="success")
    write_run(runs / "result_1.txt", [6.0, 5.0, 5.1, 5.3, 5.6], status="aborted")
    proc = trainperf("report", str(runs), "--json", check=True)
    data = json.loads(proc.stdout)
    assert [r["verdict"] for r in data["runs"]] == ["converged", "diverged"]
    assert data["html"] == str(runs / "report" / "report.html")
    page = Path(data["html"]).read_text()
    assert page.count("data:image/png;base64,") == 3 and "diverged" in page
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in data["pngs"])


def test_report_bad_input_is_one_line_exit_2(tmp_path: Path, trainperf) -> None:
    proc = trainperf("report", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "is not a folder" in proc.stderr
    (tmp_path / "result_0.txt").write_text(':::MLLOG {"key": "run_start", "time_ms": 1')
    proc = trainperf("report", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no readable result log" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
