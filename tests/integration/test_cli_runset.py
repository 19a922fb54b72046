"""`trainperf run --nexp N [--resume]`: a submission-style set through the real CLI (tiny, CPU).

Runs are cut to 4 steps (each ends `aborted`, not converged: a finished run), so the set and
its resume take seconds; convergence itself is tests/integration/test_cli_tiny.py's business.
"""

from pathlib import Path

SHORT = ["--no-progress", "train.max_steps=4", "train.warmup_steps=1"]


def test_set_then_resume_after_a_crash(trainperf, mllog, tmp_path: Path) -> None:
    results = tmp_path / "set"
    proc = trainperf("run", "--nexp", "2", "--results", str(results), "--seed", "3", *SHORT)
    assert proc.returncode == 1, proc.stderr  # complete, but no converged run: no score
    assert "run 2 of 2: result_1.txt, seed 4" in proc.stderr + proc.stdout
    assert "Score" in proc.stdout
    seeds = [next(r["value"] for r in mllog(results / f"result_{i}.txt") if r["key"] == "seed")
             for i in (0, 1)]  # fmt: skip
    assert seeds == [3, 4]
    for i in (0, 1):
        keys = [r["key"] for r in mllog(results / f"result_{i}.txt")]
        assert keys.count("run_start") == keys.count("run_stop") == 1 and "cache_clear" in keys
        # reduced scales do not drop the page cache and say so (full scale tries, as run.sub)
        cleared = [
            r["value"] for r in mllog(results / f"result_{i}.txt") if r["key"] == "cache_clear"
        ]
        assert cleared == [False]

    # result_1 "crashed": its run_stop never got written
    log1 = results / "result_1.txt"
    log1.write_text("".join(line for line in log1.open() if '"run_stop"' not in line))
    crashed = log1.read_text()
    again = trainperf("run", "--nexp", "3", "--results", str(results), "--seed", "3", *SHORT)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = trainperf(
        "run", "--nexp", "3", "--resume", "--results", str(results), "--seed", "3", *SHORT
    )
    out = resumed.stderr + resumed.stdout
    assert "1 of 3 finished" in out and "missing: result_2.txt" in out, out
    moved = list((results / "failed").glob("result_1.*.txt"))
    assert len(moved) == 1 and moved[0].read_text() == crashed  # kept, never overwritten
    assert sorted(p.name for p in results.glob("result_*.txt")) == [
        "result_0.txt", "result_1.txt", "result_2.txt"
    ]  # fmt: skip
    assert '"run_stop"' in log1.read_text()
    seed2 = next(r["value"] for r in mllog(results / "result_2.txt") if r["key"] == "seed")
    assert seed2 == 5
