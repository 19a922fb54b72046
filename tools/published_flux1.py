"""Build the v5.1 flux1 rows of ``trainperf/results/published_results.json``.

Re-run it with a clone of mlcommons/training_results_v5.1 (a bare one will do) at 441d65f4:

    python tools/published_flux1.py /path/to/training_results_v5.1          # print the rows
    python tools/published_flux1.py /path/to/training_results_v5.1 --write  # and update the table

Every ``<Org>/results/<system>/flux1`` folder is exported, with ``<Org>/systems/<system>.json``,
to a temporary ``training_results_v5.1/<Org>/results/<system>/flux1`` tree and scored by
trainperf's own scorer (``score_directory``, what ``trainperf score DIR`` runs) under the 5.1.0
rules. A row's score is the olympic mean times the folder's ``scaling.json`` (1.0 without one), as
the official summarizer computes it. ``samples_per_s_per_gpu`` is the steady training throughput
of the Llama rows: the samples of blocks 2..n over their time (``trainperf.results.curves``'
blocks, block_start to block_stop, which the v5.1 logs close at eval_start, so evaluations are
left out), averaged over the successful runs, over the accelerator count. flux1 trains on images:
``tokens_per_s_per_gpu`` is null. ``--write`` replaces the table's flux1 rows (sorted by
accelerator count, then score) and its description, atomically.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean
from typing import Any

from trainperf.atomic import write_text_atomic
from trainperf.results.curves import extract_blocks
from trainperf.results.parse import parse_log
from trainperf.results.published import normalize_accelerator
from trainperf.results.score import read_scaling_factor, score_directory

ROUND, RULESET, BENCHMARK = "v5.1", "5.1.0", "flux1"
TABLE = Path(__file__).resolve().parents[1] / "trainperf/results/published_results.json"
DESCRIPTION = (
    "Published MLPerf Training results (closed division) for the Llama benchmarks and flux1, "
    "re-scored from the result logs of mlcommons/training_results_v4.0 @6fe9543, v4.1 @b87b9e3, "
    "v5.0 @0fdc28f and v5.1 @441d65f4 (flux1: v5.1 only) with mlperf_logging (olympic mean x "
    "scaling.json; flux1 with trainperf's scorer, tools/published_flux1.py). "
    "samples_per_s_per_gpu = steady training samples/s/GPU (blocks 2..n, eval excluded, mean of "
    "the successful runs); tokens_per_s_per_gpu = that x 8192 for the Llama benchmarks, null for "
    "flux1 (an image model: no tokens) and where the logs carry no block throughput. "
    "Source: shared/reference/perf_anchors.md sections 1.3-1.7."
)
_FOLDER = re.compile(
    rf"^([^/]+)/results/([^/]+)/{BENCHMARK}/((?:result_[^/]+\.txt)|scaling\.json)$"
)


def git_show(repo: Path, rev: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"{rev}:{path}"], check=True, capture_output=True
    ).stdout


def list_folders(repo: Path, rev: str) -> dict[tuple[str, str], list[str]]:
    """(org, system) -> the files of its flux1 result folder."""
    names = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    folders: dict[tuple[str, str], list[str]] = {}
    for name in names:
        if match := _FOLDER.match(name):
            folders.setdefault((match[1], match[2]), []).append(name)
    return folders


def export_folder(
    repo: Path, rev: str, org: str, system: str, files: list[str], root: Path
) -> Path:
    """Write the folder and its systems json under ``root/training_results_v5.1``."""
    base = root / "training_results_v5.1" / org
    folder = base / "results" / system / BENCHMARK
    folder.mkdir(parents=True)
    for name in files:
        (folder / Path(name).name).write_bytes(git_show(repo, rev, name))
    (base / "systems").mkdir(exist_ok=True)
    systems = f"{org}/systems/{system}.json"
    (base / "systems" / f"{system}.json").write_bytes(git_show(repo, rev, systems))
    return folder


def steady_samples_per_s(log: Path) -> float | None:
    """Samples of blocks 2..n over their time (the first block, with its warm-up, left out)."""
    blocks = [b for b in extract_blocks(parse_log(log).events)[1:] if b.samples_per_s]
    seconds = sum(b.seconds for b in blocks if b.seconds > 0)
    if not seconds:
        return None
    return sum((b.samples_per_s or 0.0) * b.seconds for b in blocks if b.seconds > 0) / seconds


def score_row(org: str, system: str, folder: Path) -> dict[str, Any]:
    """One table row for a published flux1 folder exported by ``export_folder``."""
    spec = json.loads((folder.parents[2] / "systems" / f"{system}.json").read_text())
    name = re.sub(r"^NVIDIA\s+", "", spec["accelerator_model_name"].strip())
    count = int(spec["number_of_nodes"]) * int(spec["accelerators_per_node"])
    result = score_directory(folder, ruleset=RULESET)
    if not result.valid or result.score_minutes is None:
        raise ValueError(f"{org}/{system}: no score ({'; '.join(result.notes)})")
    factor, problem = read_scaling_factor(folder)
    assert problem is None, problem
    minutes = result.score_minutes / result.scaling_factor * factor  # scaling.json, else 1.0
    print(
        f"{org}/{system}: {result.method}, ruleset {result.ruleset}, RCP factor "
        f"{result.scaling_factor:.4f} ({result.scaling_source}), provisional "
        f"{result.provisional_reasons or 'no'}, notes {result.notes or 'none'}",
        file=sys.stderr,
    )
    rates = [steady_samples_per_s(r.path) for r in result.runs if r.status == "success"]
    known = [r for r in rates if r is not None]
    return {
        "benchmark": BENCHMARK,
        "round": ROUND,
        "submitter": org,
        "system": system,
        "accelerator": normalize_accelerator(name),
        "accelerator_name": name,
        "accelerators": count,
        "score_minutes": round(minutes, 3),
        "scaling_factor": round(factor, 4),
        "samples_per_s_per_gpu": round(mean(known) / count, 4) if known else None,
        "tokens_per_s_per_gpu": None,
    }


def render_table(description: str, rows: list[dict[str, Any]]) -> str:
    """The table's layout: one row a line."""
    body = ",\n".join("  " + json.dumps(row) for row in rows)
    return f'{{\n "description": {json.dumps(description)},\n "results": [\n{body}\n ]\n}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="clone of mlcommons/training_results_v5.1")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--write", action="store_true", help=f"update {TABLE.name}")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (org, system), files in sorted(list_folders(args.repo, args.rev).items()):
            folder = export_folder(args.repo, args.rev, org, system, files, Path(tmp))
            rows.append(score_row(org, system, folder))
    rows.sort(key=lambda r: (r["accelerators"], r["score_minutes"]))
    if args.write:
        table = json.loads(TABLE.read_text())
        kept = [r for r in table["results"] if r["benchmark"] != BENCHMARK]
        write_text_atomic(TABLE, render_table(DESCRIPTION, kept + rows))
    else:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
