"""``trainperf report DIR``: one self-contained HTML file (and the same figures as PNG files) on a
folder of result logs, ours or a published submission's.

It holds the train loss and eval curves of every run against the target and the RCP band of
samples to converge, each run's time to train (the runs the score drops marked, as
``trainperf.results.score`` decides), throughput per block, the score with the compliance and RCP
verdicts, the system description, and a diagnosis of each run (``trainperf.results.diagnose``).
Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlperf_logging.mllog import constants as C

from trainperf.atomic import write_bytes_atomic
from trainperf.benchmarks import BENCHMARKS
from trainperf.mlperf.rcp import rcp_band
from trainperf.mlperf.seeds import check_seeds
from trainperf.results.curves import (
    Block,
    RunCurves,
    Throughput,
    extract_blocks,
    extract_curves,
    training_throughput,
)
from trainperf.results.diagnose import UNREADABLE, Diagnosis, diagnose_run
from trainperf.results.parse import RunSummary, parse_log, summarize_events
from trainperf.results.report_figures import draw_figures
from trainperf.results.report_render import render_html, report_to_dict, score_line
from trainperf.results.score import ScoreResult, score_directory, sort_naturally

__all__ = [
    "Block",
    "Report",
    "RunReport",
    "build_report",
    "describe_system",
    "find_system_file",
    "report_to_dict",
    "score_line",
]


@dataclass
class RunReport:
    file: str
    summary: RunSummary
    diagnosis: Diagnosis
    curves: RunCurves
    blocks: list[Block]
    throughput: Throughput | None
    """Training samples/s of the run (curves.THROUGHPUT), as ``watch`` shows it."""
    config: dict[str, Any] | None
    seq_len: int | None


@dataclass
class Report:
    directory: Path
    out_dir: Path
    html_path: Path
    png_paths: list[Path]
    runs: list[RunReport]
    score: ScoreResult
    system: list[tuple[str, str]]
    system_source: str
    band: tuple[float, float, float] | None = None
    """(RCP mean, stdev, min acceptable mean) of samples to converge, when an RCP applies."""
    seeds: str | None = None
    """The official seed checker's verdict ("passed" or "failed: ..."); None when not run."""


def build_report(
    directory: Path,
    *,
    out: Path | None = None,
    ruleset: str | None = None,
    compliance: bool = True,
    rcp: bool = True,
) -> Report:
    """Diagnose, score and plot every ``result_*.txt`` of ``directory``; write the report.

    ``ruleset``, ``compliance`` and ``rcp`` go to ``score_directory``. Raises ``ValueError``
    (one line) when the folder is missing, holds no result logs, or holds no readable one; a
    single unreadable log among good ones is diagnosed "unreadable".
    """
    directory = Path(directory)
    files = _result_files(directory)
    runs = [_read_run(f) for f in files]
    if all(r.diagnosis.verdict == UNREADABLE for r in runs):
        first = runs[0].diagnosis.reasons[0]
        raise ValueError(
            f"no readable result log in {directory} ({len(runs)} unreadable; {files[0].name}: "
            f"{first}); point trainperf report at a folder of complete :::MLLOG result logs"
        )
    score = score_directory(directory, ruleset=ruleset, compliance=compliance, rcp=rcp)
    seeds = _seed_line(files, score.ruleset) if compliance else None
    out_dir = Path(out) if out is not None else directory / "report"
    _make_dir(out_dir)
    system, source = describe_system(directory, runs)
    report = Report(directory, out_dir, out_dir / "report.html", [], runs, score, system, source)
    report.seeds = seeds
    report.band = _band(score, runs)
    figures = draw_figures(report)
    for name, png in figures.items():
        report.png_paths.append(_write_atomic(out_dir / name, png))
    _write_atomic(report.html_path, render_html(report, figures).encode("utf-8"))
    return report


def _result_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(
            f"{directory} is not a folder; give the folder holding result_*.txt "
            "(trainperf run --results DIR, or a published results/<system>/<benchmark> folder)"
        )
    files = sort_naturally([p for p in directory.glob("result_*.txt") if p.is_file()])
    if not files:
        raise ValueError(f"no result_*.txt files in {directory}; nothing to report")
    return files


def _seed_line(files: list[Path], ruleset: str | None) -> str | None:
    """The seed checker's verdict, as ``trainperf check`` words it."""
    if ruleset is None:
        return None
    verdict = check_seeds(files, ruleset=ruleset)
    return "passed" if verdict.passed else "failed: " + "; ".join(verdict.reasons)


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"cannot create the report folder {out_dir}: {exc.strerror or exc}; "
            "choose a writable one with --out PATH"
        ) from None


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write under a temporary name in the same folder, then rename (never half-written)."""
    try:
        return write_bytes_atomic(path, data)
    except OSError as exc:
        raise ValueError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable folder with --out"
        ) from None


# --- reading the runs -------------------------------------------------------------------------


def _read_run(path: Path) -> RunReport:
    parsed = parse_log(path)
    summary = summarize_events(parsed.events, path=path, errors=parsed.errors)
    config = _read_config(path)
    diagnosis = diagnose_run(parsed.events, errors=parsed.errors, config=config, summary=summary)
    curves = extract_curves(parsed.events, global_batch_size=summary.global_batch_size)
    seq_len = _seq_len(curves, config, summary.benchmark)
    blocks, rate = extract_blocks(parsed.events), training_throughput(parsed.events)
    return RunReport(path.name, summary, diagnosis, curves, blocks, rate, config, seq_len)


def _read_config(log: Path) -> dict[str, Any] | None:
    """Our ``config_<i>.json`` beside ``result_<i>.txt``; None for published logs."""
    path = log.with_name(log.name.replace("result_", "config_", 1)).with_suffix(".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _seq_len(curves: RunCurves, config: dict[str, Any] | None, benchmark: str | None) -> int | None:
    logged = curves.hyper.get(C.MAX_SEQUENCE_LENGTH)
    if isinstance(logged, int) and logged > 0:
        return logged
    if config is not None:
        return (config.get("train") or {}).get("seq_len")
    spec = BENCHMARKS.get(benchmark or "")
    return spec.rules.get(C.MAX_SEQUENCE_LENGTH) if spec is not None else None


# --- system description -----------------------------------------------------------------------


def find_system_file(directory: Path) -> Path | None:
    """``<org>/systems/<system>.json`` for a published ``<org>/results/<system>/<benchmark>``."""
    directory = Path(directory).resolve()
    for results in (directory.parent, directory):  # DIR = .../results/<system>[/<benchmark>]
        if results.parent.name == "results":
            candidate = results.parent.parent / "systems" / f"{results.name}.json"
            if candidate.is_file():
                return candidate
    return None


def describe_system(directory: Path, runs: list[RunReport]) -> tuple[list[tuple[str, str]], str]:
    """(rows, where they come from): the systems JSON, the logs' submission keys, our config."""
    rows: list[tuple[str, str]] = []
    sources = []
    path = find_system_file(directory)
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            rows.append(("systems file", f"{path.name} unreadable: {exc}"))
        else:
            rows += [(k, _flat(v)) for k, v in data.items() if _flat(v)]
        sources.append(str(path))
    readable = [r for r in runs if r.diagnosis.verdict != UNREADABLE] or runs
    hyper = readable[0].curves.hyper
    keys = (
        C.SUBMISSION_ORG,
        C.SUBMISSION_PLATFORM,
        C.SUBMISSION_DIVISION,
        C.SUBMISSION_STATUS,
        C.GLOBAL_BATCH_SIZE,
        C.GRADIENT_ACCUMULATION_STEPS,
        C.MAX_SEQUENCE_LENGTH,
        C.TENSOR_PARALLELISM,
        C.PIPELINE_PARALLELISM,
        C.CONTEXT_PARALLELISM,
        C.MICRO_BATCH_SIZE,
        C.LOWEST_NUMERICAL_PRECISION_IN_LINEAR,
    )
    log_rows = [(f"log: {k}", _flat(hyper[k])) for k in keys if k in hyper]
    if log_rows:
        rows += log_rows
        sources.append(f"{readable[0].file} (MLLOG)")
    config = readable[0].config
    if config is not None:
        rows += _config_rows(config)
        differ = [r.file for r in runs if r.config is not None and r.config != config]
        if differ:
            rows.append(("config differs in", ", ".join(differ)))
        sources.append(readable[0].file.replace("result_", "config_").replace(".txt", ".json"))
    return rows, "; ".join(sources) or "nothing describes the system"


def _config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("config: benchmark / scale", f"{config.get('benchmark')} / {config.get('scale')}")]
    for section in ("model", "train", "parallel", "data"):
        if values := config.get(section):
            text = ", ".join(f"{k}={'none' if v is None else _flat(v)}" for k, v in values.items())
            rows.append((f"config: {section}", text))
    return rows


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_flat(v) for v in value if _flat(v))
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items() if _flat(v))
    return "" if value is None else str(value)


def _band(score: ScoreResult, runs: list[RunReport]) -> tuple[float, float, float] | None:
    batches = {r.summary.global_batch_size for r in runs} - {None}
    if score.benchmark is None or score.ruleset is None or len(batches) != 1:
        return None
    scales = {(r.config or {}).get("scale", "full") for r in runs}
    if scales != {"full"}:
        return None  # the RCPs are full-scale samples to converge
    return rcp_band(benchmark=score.benchmark, ruleset=score.ruleset, gbs=batches.pop())
