"""``trainperf prepare``: get or build, and verify, a benchmark's data (and base model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainperf.benchmarks import DEFAULT_BENCHMARK
from trainperf.cli.common import add_bench_args, console, plain, scale_of, stdout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="get or build and verify a benchmark's data (and base model)",
        description="Make a benchmark's data ready. Reduced scales build theirs offline. "
        "llama2_70b_lora at full scale downloads GovReport and Llama-2-70B through the Hugging "
        "Face Hub into DATA_DIR/scrolls_gov_report_8k and DATA_DIR/model (set HF_TOKEN; reruns "
        "resume) and verifies them. flux1 at full scale downloads the MLPerf preprocessed "
        "CC12M, COCO and empty encodings (~2.5 TB) into DATA_DIR/cc12m_preprocessed, "
        "coco_preprocessed and empty_encodings.",
    )
    p.add_argument("benchmark", nargs="?", default=DEFAULT_BENCHMARK)
    add_bench_args(p)
    p.add_argument("--verify", action="store_true", help="only verify what is there")
    p.add_argument("--skip-model", action="store_true", help="data only, no base model")
    p.add_argument(
        "--raw-c4",
        metavar="DIR",
        help="llama31_8b: tokenize raw allenai/c4 en JSON (c4-*.json.gz) from DIR instead of "
        "downloading the preprocessed files",
    )
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="with --raw-c4: Hugging Face tokenizer folder (default: download the MLPerf one)",
    )
    p.add_argument(
        "--raw",
        metavar="DIR",
        help="flux1 full: encode raw image + .txt caption pairs from DIR/cc12m and DIR/coco with "
        "the FLUX.1 VAE, CLIP and T5 (needs trainperf[flux-raw]) instead of downloading the "
        "MLPerf encodings",
    )
    p.add_argument(
        "--encoders",
        metavar="DIR_OR_HUB_ID",
        help="with --raw: a diffusers FLUX.1 pipeline (vae/, text_encoder/, tokenizer/, "
        "text_encoder_2/, tokenizer_2/); default black-forest-labs/FLUX.1-schnell",
    )
    p.add_argument(
        "--dataset-uri",
        help="MLCommons .uri of the dataset (default: the rules'); flux1: any of its three, the "
        "others are read beside it",
    )
    p.add_argument("--tokenizer-uri", help="MLCommons .uri of the tokenizer (default: the rules')")
    p.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.benchmarks import get_benchmark
    from trainperf.config import apply_overrides
    from trainperf.data.prepare import PrepareOptions
    from trainperf.launch.prepare import prepare_benchmark_files

    spec = get_benchmark(args.benchmark)
    spec.check_trainable()  # no data for a run that cannot start
    cfg = spec.config(scale_of(args))
    if args.data_dir:
        cfg = apply_overrides(cfg, [f"data.data_dir={args.data_dir}"])
    options = PrepareOptions(
        verify_only=args.verify,
        skip_model=args.skip_model,
        raw_c4=Path(args.raw_c4) if args.raw_c4 else None,
        tokenizer=Path(args.tokenizer) if args.tokenizer else None,
        raw_images=Path(args.raw) if args.raw else None,
        encoders=args.encoders,
        dataset_uri=args.dataset_uri,
        tokenizer_uri=args.tokenizer_uri,
        workers=args.workers,
    )
    root = prepare_benchmark_files(spec, cfg, options, log=plain, console=console)
    if cfg.data.source == "govreport":
        stdout.print(f"{cfg.benchmark}: data ready in {root}")
    elif cfg.data.source == "c4":
        missing = " (checkpoint not included, see the note)" if spec.data.checkpoint_note else ""
        stdout.print(f"{cfg.benchmark}: data ready in {root}{missing}")
    else:
        stdout.print(f"{cfg.benchmark} {cfg.scale}: data ready in {root}")
    return 0
