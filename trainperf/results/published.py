"""Published MLPerf Training results for the Llama benchmarks and flux1, and a user's score beside
them.

The table is ``published_results.json`` (package data), re-scored from the rounds' result logs
(training_results_v4.0 to v5.1, flux1 v5.1 only: ``tools/published_flux1.py``; see its
"description"). ``compare`` picks the rows of the same
benchmark, accelerator kind and accelerator count, or the nearest counts when there are none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = [
    "BENCHMARKS",
    "Comparison",
    "PublishedResult",
    "compare",
    "compare_directory",
    "comparison_to_dict",
    "load_published",
    "check_accelerator",
    "normalize_accelerator",
    "published_accelerators",
    "render_compare",
]

BENCHMARKS = ("llama2_70b_lora", "llama31_8b", "llama31_405b", "flux1")

# Substring of a published accelerator name (lower case) -> kind; checked in this order, so that
# "gb200" wins over "b200" and "h200-nvl" over "h200".
_KINDS = (
    ("gb300", "gb300"),
    ("gb200", "gb200"),
    ("b300", "b300"),
    ("b200", "b200"),
    ("mi355x", "mi355x"),
    ("mi350x", "mi350x"),
    ("mi325x", "mi325x"),
    ("mi300x", "mi300x"),
    ("h200-nvl", "h200-nvl"),
    ("h200", "h200"),
    ("h100", "h100"),
)


@dataclass(frozen=True)
class PublishedResult:
    """One published result: a system's official score on one benchmark in one round."""

    benchmark: str
    round: str
    """MLPerf Training round, e.g. "v4.1"."""
    submitter: str
    system: str
    accelerator: str
    """Accelerator kind, lower case: "h100", "h200", "b200", "mi300x", ..."""
    accelerator_name: str
    """As the submission names it, e.g. "H200-SXM5-141GB"."""
    accelerators: int
    score_minutes: float
    scaling_factor: float
    samples_per_s_per_gpu: float | None
    tokens_per_s_per_gpu: int | None
    """Steady training throughput (evaluation excluded); None where the logs do not give it, and
    for flux1 (an image model: samples only)."""


@dataclass(frozen=True)
class Comparison:
    """A published result beside the user's score."""

    published: PublishedResult
    ratio: float
    """user score / published score: above 1 means the user's run is slower."""
    same_count: bool
    """False when no published result has the user's accelerator count and a nearest was used."""


def normalize_accelerator(name: str) -> str:
    """Accelerator kind of ``name`` ("H100-SXM5-80GB" -> "h100"); else the name, lower case."""
    lowered = name.strip().lower()
    return next((kind for pattern, kind in _KINDS if pattern in lowered), lowered)


@cache
def load_published() -> tuple[PublishedResult, ...]:
    """Every row of ``published_results.json``."""
    text = resources.files("trainperf.results").joinpath("published_results.json").read_text()
    return tuple(PublishedResult(**row) for row in json.loads(text)["results"])


def published_accelerators(benchmark: str | None = None) -> list[str]:
    """Accelerator kinds with a published result (for ``benchmark``, or for any)."""
    rows = load_published()
    return sorted({r.accelerator for r in rows if benchmark in (None, r.benchmark)})


def check_accelerator(accelerator: str, *, benchmark: str | None = None) -> str:
    """The kind of ``accelerator``; ValueError naming the published kinds when none has a result
    (for ``benchmark``, when given)."""
    kind = normalize_accelerator(accelerator)
    known = published_accelerators()
    if kind not in known:
        raise ValueError(
            f"unknown accelerator {accelerator!r}: no published MLPerf result names it; "
            f"give one of {', '.join(known)}"
        )
    kinds = published_accelerators(benchmark) if benchmark is not None else known
    if kind not in kinds:
        raise ValueError(
            f"no published {benchmark} result on {kind}; {benchmark} was published on "
            f"{', '.join(kinds)}"
        )
    return kind


def compare(
    score_minutes: float, *, benchmark: str, accelerator: str, count: int
) -> list[Comparison]:
    """Published results for ``benchmark`` on ``count`` accelerators of kind ``accelerator``.

    When none has that count, the rows with the nearest count(s) of the same kind are returned
    with ``same_count=False``. An accelerator without a published result for the benchmark is a
    ValueError naming those with one. Rows are sorted by published score, fastest first.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    if not score_minutes > 0:
        raise ValueError(f"score_minutes must be positive, got {score_minutes!r}")
    if count < 1:
        raise ValueError(f"--gpus({count}) must be at least 1: the accelerators the runs used")
    kind = check_accelerator(accelerator, benchmark=benchmark)
    rows = [r for r in load_published() if r.benchmark == benchmark and r.accelerator == kind]
    same = [r for r in rows if r.accelerators == count]
    if not same:
        nearest = min(abs(r.accelerators - count) for r in rows)
        same = [r for r in rows if abs(r.accelerators - count) == nearest]
    same.sort(key=lambda r: r.score_minutes)
    return [Comparison(r, score_minutes / r.score_minutes, r.accelerators == count) for r in same]


def compare_directory(path: Path, *, accelerator: str, count: int) -> tuple[Any, list[Comparison]]:
    """Score ``path`` with ``score_directory`` and compare its score: (ScoreResult, rows).

    Raises ValueError when the accelerator has no published result, when the runs are ours at a
    reduced scale (their time to train measures another model, data and target), or when the
    folder gives no score or no known benchmark.
    """
    from trainperf.mlperf.compliance import run_identity
    from trainperf.results.score import score_directory

    check_accelerator(accelerator)
    if count < 1:
        raise ValueError(f"--gpus({count}) must be at least 1: the accelerators the runs used")
    identities = {run_identity(f) for f in sorted(Path(path).glob("result_*.txt"))}
    reduced = sorted({(b, s) for b, s in identities if s not in (None, "full")})
    if reduced:
        benchmark, scale = reduced[0]
        raise ValueError(
            f"{path} holds {scale}-scale runs of {benchmark}: a reduced-scale run trains another "
            "model size on other data to another target, so its time is not comparable to "
            f"full-scale MLPerf results; compare a full-scale run (trainperf run {benchmark} "
            "--scale full --data-dir DIR)"
        )
    result = score_directory(Path(path))
    if result.score_minutes is None:
        raise ValueError(f"{path} gives no score ({'; '.join(result.notes)}); nothing to compare")
    if result.benchmark not in BENCHMARKS:
        raise ValueError(
            f"{path} is benchmark {result.benchmark!r}; published results exist for "
            f"{', '.join(BENCHMARKS)}"
        )
    rows = compare(
        result.score_minutes, benchmark=result.benchmark, accelerator=accelerator, count=count
    )
    return result, rows


def comparison_to_dict(row: Comparison) -> dict[str, Any]:
    """A JSON-ready view of one ``Comparison``."""
    return {**vars(row.published), "ratio": row.ratio, "same_count": row.same_count}


def _rate(row: PublishedResult, *, tokens: bool) -> str:
    value = row.tokens_per_s_per_gpu if tokens else row.samples_per_s_per_gpu
    if value is None:
        return "-"
    return f"{value:,}" if tokens else f"{value:.2f}"


def render_compare(
    rows: list[Comparison],
    console: Console,
    *,
    score_minutes: float | None = None,
    provisional: list[str] | None = None,
) -> None:
    """Print the published rows with the ratio of the user's score to each; ``provisional``:
    why the user's score is not yet a submission's (ScoreResult.provisional_reasons)."""
    if not rows:
        console.print("No published result for this benchmark and accelerator.")
        return
    first = rows[0].published
    title = f"{first.benchmark}: published results on {first.accelerator}"
    if score_minutes is not None:
        title += f" (yours: {score_minutes:.3f} min)"
    table = Table(title=escape(title))
    # tokens/s where the benchmark trains on tokens; samples/s for flux1 (images), which has none
    tokens = any(r.published.tokens_per_s_per_gpu is not None for r in rows)
    rate = "tok/s/GPU" if tokens else "samples/s/GPU"
    for name in ("round", "submitter", "system", "GPUs", "score (min)", rate, "yours / it"):
        table.add_column(
            name, justify="left" if name in ("round", "submitter", "system") else "right"
        )
    for row in rows:
        p = row.published
        table.add_row(
            p.round,
            escape(p.submitter),
            escape(p.system),
            str(p.accelerators),
            f"{p.score_minutes:.3f}",
            _rate(p, tokens=tokens),
            f"{row.ratio:.3f}",
        )
    console.print(table)
    console.print("  - yours / it: your score over the published one (above 1: yours is slower)")
    if not rows[0].same_count:
        console.print("  - no published result at your accelerator count; nearest shown")
    if provisional:
        console.print(f"  - your score is provisional ({escape(', '.join(provisional))})")
