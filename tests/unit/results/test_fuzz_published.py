"""Random mutations of real published logs through the parser and the whole scorer (official
compliance checker included): they never crash, they only report."""

import random
import shutil
from pathlib import Path

import pytest

from trainperf.results.parse import summarize_run
from trainperf.results.score import score_directory

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "mlperf_results"
DELL = FIXTURES / "training_results_v5.1/Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora"


def mutate(lines: list[str], rng: random.Random) -> list[str]:
    """Truncate a line, flip characters, delete MLLOG lines, or cut the file short."""
    lines = list(lines)
    mllog = [i for i, line in enumerate(lines) if ":::MLLOG" in line]
    for _ in range(rng.randint(1, 6)):
        i = rng.choice(mllog) if mllog else 0
        if i >= len(lines):
            continue
        kind = rng.randrange(4)
        if kind == 0:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif kind == 1:
            chars = list(lines[i])
            for _ in range(rng.randint(1, 8)):
                if chars:
                    chars[rng.randrange(len(chars))] = chr(rng.randrange(32, 0x2FF))
            lines[i] = "".join(chars)
        elif kind == 2:
            lines[i] = ""
        else:
            lines = lines[: rng.randrange(len(lines) + 1)]
    return lines


@pytest.mark.skipif(not DELL.is_dir(), reason="published fixtures absent (../shared)")
def test_mutated_published_logs_never_crash(tmp_path: Path) -> None:
    rng = random.Random(7)
    originals = sorted(DELL.glob("result_*.txt"))[:3]
    texts = [p.read_text(encoding="utf-8", errors="replace").splitlines() for p in originals]
    for trial in range(6):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        for path, lines in zip(originals, texts):
            (folder / path.name).write_text("\n".join(mutate(lines, rng)), encoding="utf-8")
            run = summarize_run(folder / path.name)
            assert run.converged or run.problems
        shutil.copy(DELL / "scaling.json", folder / "scaling.json")
        result = score_directory(folder)  # must not raise: bad files are reported, not fatal
        assert len(result.runs) == 3
        assert result.score_minutes is None or result.score_minutes > 0
        bad = [r for r in result.runs if not r.converged]
        assert all(r.problems for r in bad)
