"""The ``trainperf`` command line: argument parsing only; the work is in the packages."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from mlperf_logging.mllog import constants as C
from rich.console import Console
from rich.table import Table

from trainperf.benchmarks import (
    BENCHMARKS,
    DEFAULT_BENCHMARK,
    DEFAULT_SCALE,
    get_benchmark,
    get_default_config,
)
from trainperf.config import Config, apply_overrides

EXIT_USER_ERROR = 2

console = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        help=f"full | proxy | small | tiny (default: full with --data-dir, else {DEFAULT_SCALE})",
    )
    p.add_argument("--data-dir", help="folder of the prepared data (default: trainperf's cache)")


def _add_slurm_args(p: argparse.ArgumentParser, *, time_limit: str, what: str) -> None:
    """--launcher slurm and its options, shared by run and doctor."""
    g = p.add_argument_group("Slurm (--launcher slurm)")
    g.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default="local",
        help="local: this machine (--nproc GPUs through torchrun); slurm: render and submit an "
        f"sbatch job whose srun steps run torchrun on every node for the {what} (--dry-run "
        "prints it)",
    )
    g.add_argument("--nodes", type=int, default=1, help="Slurm nodes (each runs --nproc ranks)")
    g.add_argument("--time", default=time_limit, help=f"Slurm time limit (default {time_limit})")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--account", help="Slurm account")
    g.add_argument("--dry-run", action="store_true", help="print the sbatch script, submit nothing")
    g.add_argument("--container", metavar="IMAGE", help="run the steps in IMAGE (pyxis/enroot)")
    g.add_argument(
        "--container-mounts",
        default="",
        metavar="SRC:DST,...",
        help="pyxis --container-mounts (e.g. /data:/data)",
    )
    g.add_argument(
        "--container-runtime",
        choices=["pyxis", "docker"],
        default="pyxis",
        help="docker: print the equivalent `docker run` command instead of an sbatch script",
    )
    g.add_argument("--in-slurm-job", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainperf",
        description="Reproduce and score the MLPerf Training LLM benchmarks on the GPUs you have.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="benchmarks, their scales, targets and data status")

    p = sub.add_parser(
        "prepare",
        help="get or build and verify a benchmark's data (and base model)",
        description="Make a benchmark's data ready. Reduced scales build theirs offline. "
        "llama2_70b_lora at full scale downloads GovReport and Llama-2-70B through the Hugging "
        "Face Hub into DATA_DIR/scrolls_gov_report_8k and DATA_DIR/model (set HF_TOKEN; reruns "
        "resume) and verifies them.",
    )
    p.add_argument("benchmark", nargs="?", default=DEFAULT_BENCHMARK)
    _add_bench_args(p)
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
    p.add_argument("--dataset-uri", help="MLCommons .uri of the dataset (default: the rules')")
    p.add_argument("--tokenizer-uri", help="MLCommons .uri of the tokenizer (default: the rules')")
    p.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")

    p = sub.add_parser(
        "download",
        help="download and verify any MLCommons dataset from its .uri (the R2 downloader)",
        description="Fetch URI (https://…/metadata/<name>.uri), then every file its <name>.md5 "
        "lists, into DIR: in parallel, resuming partial files, retrying transient errors, "
        "checking each MD5. Protected datasets read CF_ACCESS_CLIENT_ID + "
        "CF_ACCESS_CLIENT_SECRET or CF_ACCESS_TOKEN. Exit 0 only when every file is verified.",
    )
    p.add_argument("uri", metavar="URI")
    p.add_argument("-d", "--dir", type=Path, required=True, help="download folder")
    p.add_argument(
        "--include", action="append", metavar="GLOB", help="only files matching (repeatable)"
    )
    p.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--verify", action="store_true", help="only check DIR against its .md5 list")

    p = sub.add_parser(
        "run",
        help="train a benchmark to its quality target and write MLPerf result logs",
        description="Train BENCHMARK (default llama31_8b) at --scale (default tiny) until the "
        "quality target, writing result_<i>.txt MLLOG files into --results. Extra arguments "
        "section.key=value override the config (e.g. train.lr=3e-3 train.max_steps=800).",
    )
    p.add_argument("items", nargs="*", metavar="[BENCHMARK] [section.key=value ...]")
    _add_bench_args(p)
    p.add_argument(
        "--seed",
        type=int,
        help="run seed (default: a fresh random seed, logged); with --nexp run i uses SEED + i",
    )
    p.add_argument("--results", help="results folder (default ./results/<benchmark>)")
    p.add_argument(
        "--nexp",
        type=int,
        default=1,
        help="a submission-style set: this many runs into result_0.txt .. result_<N-1>.txt, each "
        "in its own process with its own seed, then the score (MLPerf: 10; llama31_405b: 3)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="complete the set in --results: keep its finished runs, rerun each missing or "
        "failed one (a failed log moves to failed/, never overwritten)",
    )
    p.add_argument("--run-index", type=int, help=argparse.SUPPRESS)  # a set's run: this index
    p.add_argument(
        "--system",
        metavar="NAME",
        help="a system preset (trainperf systems): its GPUs per node and nodes, and the fastest "
        "layout whose estimated memory fits; auto: the local GPUs. key=value still override",
    )
    _add_slurm_args(p, time_limit="04:00:00", what="runs")
    p.add_argument("--no-progress", action="store_true", help="no live progress display")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes (GPUs) on this machine: >1 starts torchrun, FSDP over them (default 1)",
    )
    p.add_argument(
        "--nnodes",
        type=int,
        default=1,
        help="machines in the run: start the same command on each, with --rdzv-endpoint",
    )
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous (first node)")
    p.add_argument("--rdzv-id", default="trainperf", help="rendezvous id, the same on every node")

    p = sub.add_parser(
        "perf",
        help="throughput, MFU, memory and projected time to train (the NVIDIA 405B recipe method)",
        description="Time --steps optimizer steps (after --warmup) of BENCHMARK's real training "
        "step on synthetic tokens (or the prepared data with --data-dir): step time, tokens/s, "
        "model TFLOP/s/GPU and MFU vs the device's dense bf16 peak, peak memory, projected time "
        "to train from the RCP mean samples. Proxy configurations: --layers, --gbs. Extra "
        "section.key=value arguments override the config (default model.checkpoint=random).",
    )
    p.add_argument("items", nargs="*", metavar="[BENCHMARK] [section.key=value ...]")
    p.add_argument(
        "--scale", help="full | small | tiny (default: full on a GPU machine, tiny on CPU)"
    )
    p.add_argument("--data-dir", help="time on the prepared data instead of synthetic tokens")
    p.add_argument("--steps", type=int, default=10, help="measured steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    p.add_argument("--layers", type=int, help="proxy: this many transformer layers")
    p.add_argument("--gbs", type=int, help="proxy: this global batch size")
    p.add_argument(
        "--preset",
        help="a named proxy configuration of the benchmark (--preset help lists them); "
        "--layers, --gbs and section.key=value still apply on top",
    )
    p.add_argument("--nproc", type=int, default=1, help="local GPUs through torchrun")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after the timed steps, profile --profile-steps more: a Chrome trace per rank in "
        "DIR and GPU time by kernel category (GEMM, attention, communication, ...)",
    )
    p.add_argument(
        "--profile-steps", type=int, default=2, help="steps under the profiler (default 2)"
    )

    p = sub.add_parser(
        "doctor",
        help="is this machine ready? GPUs, versions, GEMM rate, NCCL bandwidth, disk, data, config",
        description="Check the machine and BENCHMARK's config (default llama31_8b; --scale and "
        "section.key=value as in run): GPUs visible, driver / torch / CUDA versions, free GPU "
        "memory, bf16 GEMM TFLOP/s against the device's dense peak (pass >= 60%, warn >= 40%), "
        "all-reduce bus bandwidth over --nproc local GPUs through torchrun (busbw = algbw x "
        "2(n-1)/n as nccl-tests reports it; H100/H200 pass above 300 GB/s), the data folder's "
        "free space and read speed (warn below 500 MB/s), the prepared data, tokenizer and "
        "checkpoint (verified offline, as prepare --verify), and the config's consistency (eval "
        "interval, batch split, steps, tensor parallel, the memory estimate). Each check: pass, "
        "warn, fail or skip, with a fix. Exit 0 with no fail (warns do not fail), 1 with a fail, "
        "2 for bad input (unknown benchmark or scale, bad override, --nproc above the GPUs); a "
        "--data-dir that does not exist is a failed check, not bad input.",
    )
    p.add_argument("items", nargs="*", metavar="[BENCHMARK] [section.key=value ...]")
    _add_bench_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--system",
        metavar="NAME",
        help="judge the config for this preset's GPUs and memory (trainperf systems) instead of "
        "the detected ones",
    )
    p.add_argument(
        "--nproc",
        type=int,
        help="ranks on this machine for the all-reduce test and the config's world size "
        "(default: every local GPU when more than one, else 1; on CPU, N gloo processes)",
    )
    p.add_argument("--nnodes", type=int, default=1, help="machines (start doctor on each)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous (first node)")
    p.add_argument("--rdzv-id", default="trainperf-doctor", help="rendezvous id, same everywhere")
    p.add_argument("--gemm-size", type=int, default=8192, help="GEMM n for n x n x n (8192)")
    p.add_argument(
        "--allreduce-mib",
        metavar="M,M,...",
        help="all-reduce buffer sizes in MiB (default 64,256,1024 on GPUs, 1,4,16 on CPU)",
    )
    p.add_argument("--md5", action="store_true", help="also check the downloads' MD5 (slow)")
    _add_slurm_args(p, time_limit="00:20:00", what="checks")
    p.add_argument("--report-file", type=Path, help=argparse.SUPPRESS)  # rank 0 -> launcher

    p = sub.add_parser(
        "systems",
        help="system presets (config_<system>.sh as data) and the layout each runs BENCH with",
        description="Each preset's GPUs and memory, and for BENCHMARK (default llama31_8b at full "
        "scale) the fastest layout whose estimated memory per GPU fits, with the estimate.",
    )
    p.add_argument("benchmark", nargs="?", default="llama31_8b")
    p.add_argument("--scale", default="full", help="scale of the benchmark (default full)")

    p = sub.add_parser("score", help="time to train of each run and the MLPerf score of a folder")
    p.add_argument("directories", type=Path, nargs="+", metavar="DIR")
    p.add_argument("--json", action="store_true", help="one JSON object (a list for several DIRs)")
    p.add_argument("--csv", action="store_true", help="print CSV: one row per run, then the score")
    p.add_argument("--ruleset", help="compliance / RCP ruleset (default: newest knowing it)")
    p.add_argument(
        "--write-scaling",
        action="store_true",
        help="write the RCP normalization factor to DIR/scaling.json (atomically)",
    )

    p = sub.add_parser(
        "estimate", help="model FLOPs, tokens/s, MFU and days to train (NVIDIA recipe arithmetic)"
    )
    p.add_argument("--model", required=True, help="size registry name, e.g. llama3.1-405b")
    p.add_argument("--seq", type=int, required=True, help="sequence length")
    p.add_argument("--gbs", type=int, required=True, help="global batch size (sequences)")
    p.add_argument("--step-time", type=float, required=True, help="seconds per optimizer step")
    p.add_argument("--gpus", type=int, required=True, help="number of accelerators")
    p.add_argument("--device", required=True, help="h100, h200, b200, mi300x, mi325x, mi355x")
    p.add_argument("--dtype", default="bf16", help="bf16 or fp8 (the MFU denominator)")
    p.add_argument("--tokens", type=float, help="tokens to train, for the days estimate")
    p.add_argument(
        "--formula",
        default="nvidia-recipe",
        help="nvidia-recipe (405B with the recipe's 16 query groups, as it publishes) or model",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("compare", help="a results folder's score beside published MLPerf results")
    p.add_argument("directory", type=Path)
    p.add_argument("--accelerator", required=True, help="e.g. h100, h200, b200, mi300x")
    p.add_argument("--gpus", type=int, required=True, help="accelerators the runs used")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser(
        "watch",
        help="follow a run live: samples, loss, lr, throughput, evals vs target, ETA, status",
        description="Follow PATH as it grows: a result log, a results folder (every "
        "result_*.txt, new ones picked up; runs side by side) or a Slurm job's output "
        "(launcher prefixes such as '0: ' and other output are skipped). Works on any MLPerf "
        "submission's logs. Shows benchmark, run i of N, samples, train loss, learning rate, "
        "throughput, each evaluation against the target with its trend, the ETA to the target "
        "from the slope of the last evaluations and from the RCP mean samples to converge, and "
        "the status. Without a terminal it prints one plain line per change.",
        epilog="Exit status: 0 every watched run ended with run_stop status success; 1 a run "
        "ended with another status (aborted, not converged); 2 bad input (PATH missing, a folder "
        "without logs); 3 --once or --timeout returned while a run was still going or an "
        "expected log was missing; 130 interrupted (Ctrl-C).",
    )
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
    p.add_argument("--once", action="store_true", help="print the current state once and exit")
    p.add_argument("--timeout", type=float, metavar="S", help="stop watching after S seconds")
    p.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    p.add_argument(
        "--stale",
        type=float,
        default=60.0,
        metavar="S",
        help="show 'no new lines for Ns' once a running log has not grown for S s (default 60)",
    )

    p = sub.add_parser(
        "check", help="official compliance, RCP and seed checks of a folder of result logs"
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--ruleset", help="ruleset (default: newest that knows the benchmark)")

    p = sub.add_parser(
        "report",
        help="HTML report of a results folder: curves, times, throughput, score, diagnoses",
        description="One self-contained HTML file (figures embedded; the same PNGs beside it) on "
        "a folder of result logs, ours or a published submission's: train loss and eval curves "
        "against the target and the RCP band, time to train per run, throughput per block, the "
        "score with the compliance and RCP verdicts, the system description, and a diagnosis of "
        "each run (converged, diverged, plateaued, too slow, LR schedule or eval cadence not as "
        "the rules require).",
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--out", type=Path, help="folder to write into (default: DIR/report)")
    p.add_argument("--json", action="store_true", help="print the diagnoses and paths as JSON")
    p.add_argument("--ruleset", help="compliance / RCP ruleset (default: newest knowing it)")
    return parser


def _scale(args: argparse.Namespace) -> str:
    """--scale, or its default: a data folder means the real data (full), none the tiny scale."""
    if args.scale:
        return args.scale
    return "full" if args.data_dir else DEFAULT_SCALE


def resolve_run_config(args: argparse.Namespace) -> Config:
    benchmark, overrides = DEFAULT_BENCHMARK, []
    for i, item in enumerate(args.items):
        if "=" in item:
            overrides.append(item)
        elif i == 0:
            benchmark = item
        else:
            raise ValueError(f"unexpected argument {item!r}: overrides look like section.key=value")
    cfg = get_default_config(benchmark, _scale(args))
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    overrides.append(f"log.results_dir={args.results or Path('results') / benchmark}")
    return apply_overrides(cfg, overrides)


def _layouts_for(system, cfg: Config):
    """Candidate layouts of `system` for the benchmark config `cfg`, fastest first."""
    from trainperf.benchmarks import get_benchmark
    from trainperf.launch.systems import rank_layouts

    family = get_benchmark(cfg.benchmark).family
    return rank_layouts(
        system,
        family.shape(family.model_config(cfg)),
        seq_len=cfg.train.seq_len,
        micro_batch=cfg.train.micro_batch_size,
        lora=cfg.model.lora_rank > 0,
    )


def cmd_systems(args: argparse.Namespace) -> int:
    from trainperf.launch.systems import SYSTEMS

    cfg = get_default_config(args.benchmark, args.scale)
    table = Table(title=f"trainperf systems: layout for {args.benchmark} ({args.scale})")
    for col in ("system", "GPUs", "GiB/GPU", "description", "layout", "estimate"):
        table.add_column(col)
    for system in SYSTEMS.values():
        choices = _layouts_for(system, cfg)
        pick = next((c for c in choices if c.fits), None)
        layout = " ".join(pick.overrides) if pick else "does not fit"
        estimate = (pick or choices[-1]).estimate if choices else None
        table.add_row(
            system.name,
            f"{system.nodes}x{system.gpus_per_node}",
            f"{system.memory_gib:.0f}" if system.memory_gib else "-",
            system.description,
            layout if system.memory_gib else "(defaults)",
            f"~{estimate.total_gib:.0f} GiB" if estimate and system.memory_gib else "-",
        )
    stdout.print(table)
    return 0


def _apply_system(args: argparse.Namespace, cfg: Config) -> Config:
    """--system NAME|auto: GPUs, nodes and the fastest fitting layout; user overrides win."""
    from trainperf.launch.systems import detect_system, get_system

    system = detect_system() if args.system == "auto" else get_system(args.system)
    args.nproc, args.nodes = system.gpus_per_node, system.nodes
    if not system.memory_gib:  # CPU: the benchmark's own layout
        console.print(f"system {system.name}: {system.description}")
        return cfg
    choices = _layouts_for(system, cfg)
    pick = next((c for c in choices if c.fits), None)
    if pick is None:
        lines = "\n".join(f"  {' '.join(c.overrides)}: {c.estimate.describe()}" for c in choices)
        raise ValueError(
            f"{cfg.benchmark} ({cfg.scale}) does not fit {system.name} ({system.world_size} x "
            f"{system.memory_gib:.0f} GiB) in any layout:\n{lines}\nuse more GPUs or nodes"
        )
    console.print(
        f"system {system.name} ({system.description}): {' '.join(pick.overrides)}; "
        f"{pick.estimate.describe()} of {system.memory_gib:.0f}"
    )
    user = [i for i in args.items if "=" in i]
    args.items = [i for i in args.items if "=" not in i] + list(pick.overrides) + user
    return resolve_run_config(args)


def cmd_list(_: argparse.Namespace) -> int:
    from trainperf.data.prepare import data_dir, data_status

    table = Table(title="trainperf benchmarks")
    for col in ("benchmark", "scale", "model", "seq", "GBS", "target", "data", "description"):
        table.add_column(col)
    for name, spec in BENCHMARKS.items():
        for scale, s in spec.scales.items():
            cfg = spec.config(scale)
            status = data_status(cfg)
            data = f"{status} ({s.data_source}: {data_dir(cfg)})"
            table.add_row(
                name,
                scale,
                s.flavor,
                str(s.seq_len),
                str(s.global_batch_size),
                f"<= {s.target:g}",
                data,
                s.description,
            )
    stdout.print(table)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from trainperf.data.prepare import prepare_data

    cfg = get_default_config(args.benchmark, _scale(args))
    if args.data_dir:
        cfg = apply_overrides(cfg, [f"data.data_dir={args.data_dir}"])
    if cfg.data.source == "govreport":
        return _prepare_govreport(cfg, verify_only=args.verify, skip_model=args.skip_model)
    if cfg.data.source == "c4":
        return _prepare_c4(cfg, args)
    if args.raw_c4:
        raise ValueError(
            f"--raw-c4 prepares the full-scale C4 data; {cfg.benchmark} --scale {cfg.scale} uses "
            f"{cfg.data.source} data: add --scale full"
        )
    spec = get_benchmark(cfg.benchmark)
    paths = prepare_data(cfg, train_prefixes=spec.data.train_prefixes, progress=True)
    if paths.model_dir is not None and not args.skip_model:
        from trainperf.train.base_model import prepare_base_model

        prepare_base_model(cfg, spec, paths, progress=True)
    stdout.print(f"{cfg.benchmark} {cfg.scale}: data ready in {paths.root}")
    return 0


def _prepare_govreport(cfg: Config, *, verify_only: bool, skip_model: bool) -> int:
    from trainperf.benchmarks import get_benchmark
    from trainperf.data import govreport
    from trainperf.data.prepare import GOVREPORT_DIRNAME, data_dir

    spec = get_benchmark(cfg.benchmark)
    root = data_dir(cfg)
    dataset, model = root / GOVREPORT_DIRNAME, root / "model"
    if not verify_only:
        from trainperf.data.hub import download_govreport, download_model

        download_govreport(dataset)
        if not skip_model:
            download_model(model)
    lines = govreport.verify_dataset(
        dataset,
        train_samples=spec.data.train_samples,
        eval_samples=spec.eval.eval_samples,
        max_seq_len=spec.rules[C.MAX_SEQUENCE_LENGTH],
    )
    for line in lines:
        stdout.print(line, markup=False)
    if not skip_model:
        _verify_base_model(cfg, model)
    stdout.print(f"{cfg.benchmark}: data ready in {root}")
    return 0


def _prepare_c4(cfg: Config, args: argparse.Namespace) -> int:
    from trainperf.benchmarks import get_benchmark
    from trainperf.data.prepare import C4Sources, data_dir, prepare_c4

    spec = get_benchmark(cfg.benchmark)
    data = spec.data
    if data.checkpoint_note:  # said first: what prepare cannot fetch
        console.print(f"[yellow]note:[/] {data.checkpoint_note}")
    if args.raw_c4 and data.tokenizer_uri is None:
        raise ValueError(f"--raw-c4 is for llama31_8b; {cfg.benchmark} downloads its C4 files")
    sources = C4Sources(
        dataset_uri=args.dataset_uri or data.dataset_uri,
        tokenizer_uri=args.tokenizer_uri or data.tokenizer_uri,
        tokenizer_repo=data.tokenizer_repo,
        # the 8B model embeds the Llama 3.1 vocabulary; 405B's is the tokenizer's (Mixtral)
        vocab_size=data.vocab_size,
        eval_samples=spec.eval.eval_samples,
        train_prefixes=data.train_prefixes,
    )
    root = data_dir(cfg)
    prepare_c4(
        root,
        sources,
        verify_only=args.verify,
        raw_c4=Path(args.raw_c4) if args.raw_c4 else None,
        tokenizer=Path(args.tokenizer) if args.tokenizer else None,
        workers=args.workers,
        log=_plain,
        console=console,
    )
    missing = " (checkpoint not included, see the note)" if data.checkpoint_note else ""
    stdout.print(f"{cfg.benchmark}: data ready in {root}{missing}")
    return 0


def _plain(line: str) -> None:
    stdout.print(line, markup=False)


def cmd_download(args: argparse.Namespace) -> int:
    from trainperf.data import mlcommons

    if args.verify:
        md5_files = sorted(args.dir.glob("*.md5")) if args.dir.is_dir() else []
        if not md5_files:
            raise ValueError(
                f"no .md5 list in {args.dir}; download first: trainperf download URI -d {args.dir}"
            )
        for md5_file in md5_files:
            verified = mlcommons.verify_dataset_files(args.dir, md5_file, include=args.include)
            _plain(f"{md5_file.name}: {len(verified)} file(s) verified in {args.dir}")
        return 0
    mlcommons.download_dataset(
        args.uri, args.dir, include=args.include, workers=args.workers, log=_plain, console=console
    )
    return 0


def _verify_base_model(cfg: Config, folder: Path) -> None:
    from trainperf.benchmarks import get_benchmark

    family = get_benchmark(cfg.benchmark).family
    stdout.print(family.verify_checkpoint(folder, cfg.model.flavor))


def _relaunch_with_torchrun(
    argv: list[str],
    nproc: int,
    *,
    nnodes: int = 1,
    endpoint: str | None = None,
    rdzv_id: str = "",
    purpose: str | None = None,
) -> int:
    """Start ``nproc`` copies of this command on this machine through torchrun; with ``nnodes``
    > 1, this machine joins the c10d rendezvous at ``endpoint`` with the other nodes."""
    from torch.distributed.run import main as torchrun_main

    rest = _without_options(
        argv, {"--nproc": True, "--nnodes": True, "--rdzv-endpoint": True, "--rdzv-id": True}
    )
    if nnodes > 1:
        where = [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
                 f"--rdzv-id={rdzv_id}"]  # fmt: skip
        console.print(f"joining {nnodes} nodes at {endpoint} with {nproc} process(es) here")
    else:
        where = ["--standalone"]
        purpose = purpose or f"FSDP over {nproc} ranks"
        console.print(f"starting {nproc} processes with torchrun ({purpose})")
    try:
        torchrun_main([*where, f"--nproc-per-node={nproc}", "-m", "trainperf", *rest])
    except Exception:  # torchrun's ChildFailedError; the ranks printed their errors or status
        console.print("the run did not succeed on every rank (see the lines above)")
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from trainperf.benchmarks import get_benchmark
    from trainperf.train.distributed import (
        barrier,
        init_distributed,
        launched_by_torchrun,
        local_device,
        shutdown,
    )
    from trainperf.train.run import RunTerminated, run_benchmark

    cfg = resolve_run_config(args)
    if args.system and not launched_by_torchrun() and not args.in_slurm_job:
        cfg = _apply_system(args, cfg)
        args.argv = _without_options(args.argv, {"--system": True, "--nproc": True})
        args.argv += [f"--nproc={args.nproc}", f"--nodes={args.nodes}"]
        args.argv += [o for o in args.items if "=" in o and o not in args.argv]
    if args.nproc < 1:
        raise ValueError(f"--nproc({args.nproc}) must be >= 1")
    torchrun = launched_by_torchrun()
    if args.launcher == "slurm" and not args.in_slurm_job:
        return _submit_slurm(args, cfg)
    if args.in_slurm_job:
        return _run_in_slurm_job(args, cfg)
    if args.nexp != 1 or args.resume:
        if args.nnodes > 1:
            raise ValueError(
                "a run set (--nexp/--resume) on several nodes runs through Slurm (--launcher "
                "slurm --nodes N); --nnodes runs one run at a time"
            )
        if torchrun:
            raise ValueError("start a run set (--nexp/--resume) directly, not under torchrun; "
                             "--nproc N starts torchrun for each run")  # fmt: skip
        return _run_set(args, cfg)
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the first node's)")
    if (args.nproc > 1 or args.nnodes > 1) and not torchrun:
        _prepare_run(cfg, progress=not args.no_progress)
        return _relaunch_with_torchrun(
            args.argv,
            args.nproc,
            nnodes=args.nnodes,
            endpoint=args.rdzv_endpoint,
            rdzv_id=args.rdzv_id,
        )
    env = init_distributed(
        local_device(cfg.train.device), timeout_s=cfg.parallel.collective_timeout_s
    )
    try:
        if env.is_main:
            paths = _prepare_run(cfg, progress=not args.no_progress)
        barrier(env)
        if not env.is_main:
            paths = _prepare_run(cfg, progress=False)
        if env.is_main:
            console.print(
                f"[bold]{cfg.benchmark}[/] scale [bold]{cfg.scale}[/]: target eval <= "
                f"{cfg.train.target:g}, GBS {cfg.train.global_batch_size}, seq "
                f"{cfg.train.seq_len}" + (f", {env.world_size} ranks" if env.enabled else "")
            )
        result = run_benchmark(
            cfg,
            get_benchmark(cfg.benchmark),
            paths,
            console=console,
            show_progress=not args.no_progress,
            env=env,
            index=args.run_index,
        )
    except RunTerminated as exc:
        if env.is_main:
            console.print(f"[red]run stopped:[/] {exc}; its log ends with run_stop aborted")
        return 128 + signal.SIGTERM
    finally:
        shutdown(env)
    if not env.is_main:
        return 0 if result.status == "success" else 1
    minutes = None if result.time_to_train_s is None else result.time_to_train_s / 60
    line = (
        f"{result.status}: time to train {minutes:.3f} min, samples to converge {result.samples}"
        if result.status == "success"
        else f"{result.status}: {result.reason} (last eval {result.last_eval})"
    )
    stdout.print(line)
    stdout.print(f"log: {result.log_path}  config: {result.config_path}  seed: {result.seed}")
    if result.peak_memory_gib is not None:
        stdout.print(f"peak GPU memory {result.peak_memory_gib:.2f} GiB (rank 0)")
    return 0 if result.status == "success" else 1


def _without_options(argv: list[str], options: dict[str, bool]) -> list[str]:
    """argv without the given options (name -> whether it takes a value), any spelling."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in options:
            skip = options[name] and "=" not in item
            continue
        out.append(item)
    return out


def _wait_for_run(command: list[str]) -> int:
    """Run one run of a set as a child process; on Ctrl-C let it close its log first. SIGTERM
    (Slurm's time limit, scancel, kill) goes on to the run, which closes its log as aborted;
    then the set stops with exit status 143 instead of leaving the run training alone."""
    import subprocess

    proc = subprocess.Popen(command)
    terminated = []

    def forward(signum, frame) -> None:
        terminated.append(signum)
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        rc = proc.wait()
        if terminated:
            console.print("[yellow]terminated (SIGTERM): the run closed its log; the set stops[/]")
            raise SystemExit(128 + signal.SIGTERM)
        return rc
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)  # a no-op if the terminal's Ctrl-C reached it already
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


# options of the launching command that its runs must not see again
_SET_OPTIONS = {"--nexp": True, "--resume": False, "--seed": True, "--run-index": True}
_SLURM_OPTIONS = {
    "--nnodes": True, "--rdzv-endpoint": True, "--rdzv-id": True,
    "--launcher": True, "--nodes": True, "--time": True, "--partition": True, "--account": True,
    "--dry-run": False, "--container": True, "--container-mounts": True,
    "--container-runtime": True, "--in-slurm-job": False, "--nproc": True,
}  # fmt: skip


def _slurm_options(args: argparse.Namespace, cfg: Config):
    from trainperf.launch.slurm import SlurmOptions

    container = args.container
    return SlurmOptions(
        nodes=args.nodes,
        gpus_per_node=args.nproc,
        gpus=cfg.train.device != "cpu",
        time_limit=args.time,
        partition=args.partition,
        account=args.account,
        job_name=f"trainperf-{cfg.benchmark}",
        container=container,
        container_mounts=[m for m in args.container_mounts.split(",") if m],
        python="python3" if container else sys.executable,
    )


def _submit_slurm(args: argparse.Namespace, cfg: Config) -> int:
    """--launcher slurm: render the batch script; print it (--dry-run) or submit it."""
    from trainperf.launch.slurm import docker_command, render_sbatch, submit

    opts = _slurm_options(args, cfg)
    results_dir = Path(cfg.log.results_dir).expanduser().absolute()
    if args.container_runtime == "docker":
        run_args = _without_options(args.argv, _SLURM_OPTIONS)
        print(shlex.join(docker_command(opts, run_args)))
        return 0
    if args.nexp != 1 or args.resume:  # refuse a set that cannot start before queueing it
        from trainperf.launch.runset import plan_run_set

        plan_run_set(results_dir, args.nexp, resume=args.resume)
    job_args = _without_options(args.argv, {"--dry-run": False})
    script = render_sbatch(opts, job_args)
    if args.dry_run:
        print(script, end="")
        return 0
    job_id, path, output = submit(script, results_dir=results_dir)
    stdout.print(f"submitted Slurm job {job_id}: {opts.nodes} node(s) x {opts.gpus_per_node}")
    stdout.print(f"script: {path}\noutput: {output}\nresults: {results_dir}")
    return 0


def _run_in_slurm_job(args: argparse.Namespace, cfg: Config) -> int:
    """Inside the sbatch job (first node): each run as one srun step over all nodes."""
    from trainperf.launch.slurm import job_head_node, srun_step

    opts = _slurm_options(args, cfg)
    head, job = job_head_node(), os.environ.get("SLURM_JOB_ID", "job")

    def step(run_args: list[str], index: int | None) -> list[str]:
        run_args = _without_options(run_args, _SLURM_OPTIONS)
        return srun_step(opts, run_args, head=head, rendezvous_id=f"{job}-{index}")

    if args.nexp != 1 or args.resume:
        return _run_set(args, cfg, step=step)
    return _wait_for_run(step(_without_options(args.argv, _SET_OPTIONS), None))


def _run_set(args: argparse.Namespace, cfg: Config, *, step=None) -> int:
    """--nexp N [--resume]: each planned run as its own `trainperf run` process (or `step`'s
    command for it), then the score."""
    from trainperf.launch.runset import (
        move_failed_aside,
        plan_run_set,
        seeds_for,
        write_set_file,
    )
    from trainperf.results.score import render_score, score_directory

    results_dir = Path(cfg.log.results_dir).expanduser()
    plan = plan_run_set(results_dir, args.nexp, resume=args.resume)
    seeds = seeds_for(plan, args.seed)
    console.print(plan.describe())
    write_set_file(results_dir, args.nexp)  # trainperf watch DIR: "run i of N"
    _prepare_run(cfg, progress=not args.no_progress)  # once, before the first run
    base = _without_options(args.argv, _SET_OPTIONS)
    for n, index in enumerate(plan.todo, 1):
        if index in plan.failed:
            moved = move_failed_aside(results_dir, index)
            console.print(f"result_{index}.txt failed ({plan.failed[index]}): moved to {moved}")
        console.print(
            f"[bold]run {n} of {len(plan.todo)}[/]: result_{index}.txt, seed {seeds[index]}"
        )
        run_args = [*base, "--seed", str(seeds[index]), "--run-index", str(index)]
        if step is None:
            command = [sys.executable, "-m", "trainperf", *run_args]
        else:
            command = step(run_args, index)
        rc = _wait_for_run(command)
        if rc == EXIT_USER_ERROR:  # a bad option or missing data: every later run would fail too
            console.print("stopping the set: fix the error above, then rerun with --resume")
            return rc
    score = score_directory(results_dir)
    render_score(score, stdout)
    final = plan_run_set(results_dir, args.nexp, resume=True)
    if final.todo:
        console.print(f"the set is incomplete: {final.describe()}; rerun with --resume")
        return 1
    return 0 if score.score_minutes is not None else 1


def _prepare_run(cfg: Config, *, progress: bool):
    """Data (and a reduced scale's base model) ready before a run; returns the paths."""
    from trainperf.benchmarks import get_benchmark
    from trainperf.data.prepare import prepare_data

    spec = get_benchmark(cfg.benchmark)
    paths = prepare_data(cfg, train_prefixes=spec.data.train_prefixes, progress=progress)
    if cfg.data.source == "builtin" and paths.model_dir is not None and not cfg.model.checkpoint:
        from trainperf.train.base_model import prepare_base_model

        prepare_base_model(cfg, spec, paths, progress=progress)
    return paths


def cmd_perf(args: argparse.Namespace) -> int:
    import torch

    from trainperf.benchmarks import get_benchmark
    from trainperf.perf.measure import measure
    from trainperf.train.distributed import init_distributed, launched_by_torchrun, shutdown

    bad = [f"{flag}({value}) must be >= {low}" for flag, value, low in (
        ("--nproc", args.nproc, 1), ("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
        ("--profile-steps", args.profile_steps, 1)) if value < low]  # fmt: skip
    if bad:  # before any GPU work
        raise ValueError("; ".join(bad))
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        raise ValueError(f"--profile {args.profile} is a file; give a folder for the traces")
    preset = _perf_preset(args)
    if args.scale is None:
        default = "full" if torch.cuda.is_available() else DEFAULT_SCALE
        args.scale = preset.scale if preset else default
    # random weights unless a checkpoint is asked for; the proxy options are plain overrides
    overrides = ["model.checkpoint=random", *(preset.overrides if preset else ())]
    overrides += [i for i in args.items if "=" in i]
    if args.layers is not None:
        overrides.append(f"model.n_layers={args.layers}")
    if args.gbs is not None:
        overrides.append(f"train.global_batch_size={args.gbs}")
    args.items = [i for i in args.items if "=" not in i] + overrides
    args.seed, args.results = None, None  # a fresh seed (shared by the ranks); no result files
    cfg = resolve_run_config(args)
    if args.nproc > 1 and not launched_by_torchrun():
        return _relaunch_with_torchrun(args.argv, args.nproc)
    from trainperf.train.distributed import local_device

    env = init_distributed(
        local_device(cfg.train.device), timeout_s=cfg.parallel.collective_timeout_s
    )
    try:
        paths = _prepare_run(cfg, progress=False) if args.data_dir else None
        result = measure(
            cfg,
            get_benchmark(cfg.benchmark),
            paths,
            steps=args.steps,
            warmup=args.warmup,
            env=env,
            console=console,
            profile_dir=args.profile,
            profile_steps=args.profile_steps,
        )
    finally:
        shutdown(env)
    if env.is_main:
        _render_perf(result, as_json=args.json)
    return 0


def _perf_preset(args: argparse.Namespace):
    """The PerfPreset that --preset names, or None; 'help' lists them and exits."""
    if args.preset is None:
        return None
    from trainperf.benchmarks import get_benchmark

    names = [i for i in args.items if "=" not in i]
    bench = names[0] if names else DEFAULT_BENCHMARK
    presets = get_benchmark(bench).perf_presets
    if args.preset == "help" or args.preset not in presets:
        lines = "\n".join(f"  {n}: {p.description}" for n, p in presets.items()) or "  (none)"
        if args.preset == "help":
            stdout.print(f"perf presets of {bench}:\n{lines}", highlight=False)
            raise SystemExit(0)
        raise ValueError(f"unknown --preset {args.preset!r} for {bench}; known:\n{lines}")
    return presets[args.preset]


def _render_perf(result, *, as_json: bool) -> None:
    from trainperf.perf.measure import perf_to_dict

    if as_json:
        stdout.print_json(json.dumps(perf_to_dict(result)))
        return
    r = result
    table = Table(title=f"trainperf perf {r.benchmark} ({r.scale}, {r.data})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("device", f"{r.world_size} x {r.device}"),
        ("features", r.features),
        ("layers / seq / GBS / micro-batch",
         f"{r.n_layers} / {r.seq_len} / {r.global_batch_size} / {r.micro_batch_size}"),
        ("step time (median, min)", f"{r.median_step_s:.3f} s, {r.min_step_s:.3f} s"),
        ("tokens/s", f"{r.tokens_per_s:,.0f}"),
        ("tokens/s/GPU", f"{r.tokens_per_s_per_gpu:,.0f}"),
        ("model TFLOP/s/GPU", "n/a (LoRA)" if r.model_tflops_per_gpu is None
         else f"{r.model_tflops_per_gpu:,.1f}"),
        ("MFU (dense bf16 peak)", "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%"),
        ("peak memory (rank 0)", "n/a" if r.peak_memory_gib is None
         else f"{r.peak_memory_gib:.2f} GiB"),
        ("projected time to train", "n/a" if r.projected_minutes is None
         else f"{r.projected_minutes:,.1f} min"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    stdout.print(table)
    stdout.print(r.projection_note, markup=False)
    stdout.print(f"step times: {r.step_times_s} (first {r.warmup_steps} not counted)")
    stdout.print(f"losses (rank 0, seed {r.seed}): {r.losses}")
    if r.profile is not None:
        from trainperf.perf.profile import ProfileSummary

        summary = ProfileSummary(**{k: v for k, v in r.profile.items() if k != "gpu_busy_fraction"})
        stdout.print("\n".join(summary.lines()), markup=False, highlight=False)


def cmd_doctor(args: argparse.Namespace) -> int:
    from trainperf.doctor.run import DoctorOptions
    from trainperf.train.distributed import launched_by_torchrun

    args.seed, args.results = None, None
    cfg = resolve_run_config(args)  # unknown benchmark, scale or override: exit 2
    opts = DoctorOptions(
        cfg=cfg,
        explicit_data_dir=bool(args.data_dir),
        nproc=_doctor_nproc(args),
        nnodes=args.nnodes,
        gemm_size=args.gemm_size,
        allreduce_mib=_mib_list(args.allreduce_mib),
        md5=args.md5,
    )
    if args.system:
        from trainperf.launch.systems import get_system

        opts.system = get_system(args.system)
    if args.launcher == "slurm" or args.in_slurm_job:
        return _doctor_slurm(args, opts)
    if (opts.nproc > 1 or opts.nnodes > 1) and not launched_by_torchrun():
        return _doctor_with_torchrun(args, opts)
    return _doctor_here(args, opts)


def _doctor_nproc(args: argparse.Namespace) -> int:
    import torch

    slurm = args.launcher == "slurm" and not args.in_slurm_job  # GPUs are on the nodes, not here
    if slurm and args.nproc is None:
        raise ValueError("--launcher slurm needs --nproc G: the GPUs (ranks) on each node")
    gpus = 0 if slurm or not torch.cuda.is_available() else torch.cuda.device_count()
    nproc = args.nproc if args.nproc is not None else (gpus if gpus > 1 else 1)
    bad = [f"{flag}({value}) must be >= {low}" for flag, value, low in (
        ("--nproc", nproc, 1), ("--nnodes", args.nnodes, 1), ("--gemm-size", args.gemm_size, 16))
        if value < low]  # fmt: skip
    if bad:
        raise ValueError("; ".join(bad))
    if gpus and nproc > gpus:
        raise ValueError(f"--nproc({nproc}) is more than the {gpus} visible GPU(s)")
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the first node's)")
    return nproc


def _mib_list(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        sizes = tuple(int(m) for m in text.split(",") if m.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--allreduce-mib {text!r}: give positive MiB sizes, e.g. 64,256,1024")
    return sizes


def _doctor_here(args: argparse.Namespace, opts) -> int:
    """This process's share of the checks (all of them alone; under torchrun, one rank's)."""
    from trainperf.doctor.run import diagnose, write_report
    from trainperf.train.distributed import init_distributed, local_device, shutdown

    env = init_distributed(local_device("auto"), timeout_s=120)
    try:
        checks = diagnose(opts, env)
    finally:
        shutdown(env)
    if checks is None:  # not rank 0
        return 0
    if args.report_file is not None:  # the launching process renders it
        write_report(args.report_file, _doctor_payload(opts, checks, env.world_size))
        return 0
    return _render_doctor(args, opts, checks, env.world_size)


def _doctor_with_torchrun(args: argparse.Namespace, opts) -> int:
    """--nproc N / --nnodes: the checks on N ranks per node; rank 0 hands its report back."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="trainperf-doctor-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [*_without_options(args.argv, {"--report-file": True}), f"--report-file={report}"]
        rc = _relaunch_with_torchrun(
            argv,
            opts.nproc,
            nnodes=opts.nnodes,
            endpoint=args.rdzv_endpoint,
            rdzv_id=args.rdzv_id,
            purpose="the doctor's checks",
        )
        return _doctor_report(args, opts, report, rc, ranks=opts.nproc * opts.nnodes)


def _doctor_slurm(args: argparse.Namespace, opts) -> int:
    """--launcher slurm: submit an sbatch job; inside it, one srun step of torchrun per node
    runs the ranks, and the first node prints rank 0's report into the job's output."""
    import dataclasses

    from trainperf.launch.slurm import (
        docker_command,
        job_head_node,
        render_sbatch,
        srun_step,
        submit,
    )

    args.nproc = opts.nproc
    sopts = dataclasses.replace(_slurm_options(args, opts.cfg), job_name="trainperf-doctor")
    folder = Path("trainperf-doctor").absolute()  # the job's working folder: shared by the nodes
    if not args.in_slurm_job:
        if args.container_runtime == "docker":
            print(shlex.join(docker_command(sopts, _without_options(args.argv, _SLURM_OPTIONS))))
            return 0
        script = render_sbatch(sopts, _without_options(args.argv, {"--dry-run": False}))
        if args.dry_run:
            print(script, end="")
            return 0
        job_id, _, output = submit(script, results_dir=folder)
        stdout.print(f"submitted Slurm job {job_id}: {sopts.nodes} node(s) x {opts.nproc}")
        stdout.print(f"the report will be in {output}")
        return 0
    job = os.environ.get("SLURM_JOB_ID", "job")
    report = folder / "slurm" / f"doctor-{job}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    skip = {**_SLURM_OPTIONS, "--report-file": True}
    ranks = [*_without_options(args.argv, skip), f"--report-file={report}"]
    rc = _wait_for_run(srun_step(sopts, ranks, head=job_head_node(), rendezvous_id=f"{job}-dr"))
    return _doctor_report(args, opts, report, rc, ranks=sopts.nodes * opts.nproc)


def _doctor_report(args: argparse.Namespace, opts, report: Path, rc: int, *, ranks: int) -> int:
    """Render the report rank 0 wrote; without one, the launch failure and the local checks."""
    from trainperf.doctor import checks_from_dict
    from trainperf.doctor.run import diagnose
    from trainperf.train.distributed import DistEnv

    payload = json.loads(report.read_text()) if report.is_file() else None
    if payload is not None:
        return _render_doctor(args, opts, checks_from_dict(payload), payload["world_size"])
    if rc == 0 and opts.nnodes > 1:
        console.print("this node's ranks finished; the node that ran rank 0 prints the report")
        return 0
    # the ranks failed (NCCL, rendezvous, a crash): say so, and check what one process can
    opts.launch_failure = f"the {ranks} torchrun ranks did not finish (exit {rc})"
    return _render_doctor(args, opts, diagnose(opts, DistEnv()) or [], 1)


def _doctor_payload(opts, checks, world_size: int) -> dict:
    from trainperf.doctor import report_to_dict

    cfg = opts.cfg
    return report_to_dict(checks, benchmark=cfg.benchmark, scale=cfg.scale, world_size=world_size)


def _render_doctor(args: argparse.Namespace, opts, checks, world_size: int) -> int:
    from trainperf.doctor import overall, render_checks

    if args.json:
        print(json.dumps(_doctor_payload(opts, checks, world_size), indent=2))
    else:
        title = f"trainperf doctor: {opts.cfg.benchmark} ({opts.cfg.scale}), {world_size} rank(s)"
        render_checks(checks, stdout, title=title)
    return 1 if overall(checks) == "fail" else 0


def cmd_score(args: argparse.Namespace) -> int:
    from trainperf.results.score import (
        render_score,
        score_directory,
        score_to_csv,
        score_to_dict,
        write_scaling,
    )

    _check_ruleset(args.ruleset)
    for directory in args.directories:
        if not directory.is_dir():
            raise ValueError(f"{directory} is not a folder; give the folder holding result_*.txt")
    results, rc = [], 0
    for directory in args.directories:
        result = score_directory(directory, ruleset=args.ruleset)
        if args.write_scaling:
            if result.rcp is None or not result.rcp.passed:
                verdict = "none" if result.rcp is None else result.rcp.verdict
                raise ValueError(f"{directory}: RCP check {verdict}: no factor for scaling.json")
            path = write_scaling(directory, result.rcp.normalization_factor)
            console.print(f"wrote {path} (scaling_factor {result.rcp.normalization_factor!r})")
        if args.csv:
            score_to_csv(result, sys.stdout)
        elif not args.json:
            render_score(result, stdout)
        results.append(score_to_dict(result))
        rc |= result.score_minutes is None
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return int(rc)


def _check_ruleset(ruleset: str | None) -> None:
    from trainperf.mlperf.compliance import known_rulesets

    if ruleset is not None and ruleset not in known_rulesets():
        raise ValueError(f"unknown ruleset {ruleset!r}; known: {', '.join(known_rulesets())}")


def cmd_check(args: argparse.Namespace) -> int:
    from trainperf.results.check import check_directory

    _check_ruleset(args.ruleset)
    report = check_directory(args.directory, ruleset=args.ruleset)
    for line in report.lines:
        stdout.print(line, markup=False)
    return 0 if report.passed else 1


def cmd_watch(args: argparse.Namespace) -> int:
    from trainperf.results.watch import Watch
    from trainperf.results.watch_view import follow, show_once

    bad = [f"{flag}({value}) must be > 0" for flag, value in (
        ("--interval", args.interval), ("--timeout", args.timeout), ("--stale", args.stale))
        if value is not None and not value > 0]  # fmt: skip
    if bad:
        raise ValueError("; ".join(bad))
    if args.json and not args.once:
        raise ValueError("--json prints one state: add --once (trainperf watch PATH --once --json)")
    watch = Watch(args.path)
    if args.once:
        return show_once(watch, console=stdout, as_json=args.json, stale_s=args.stale)
    return follow(
        watch, console=stdout, interval=args.interval, timeout=args.timeout, stale_s=args.stale
    )


def cmd_report(args: argparse.Namespace) -> int:
    if not args.directory.is_dir():  # before importing the checkers (seconds of scipy)
        raise ValueError(f"{args.directory} is not a folder; give the folder holding result_*.txt")
    from trainperf.results.report import build_report, report_to_dict, score_line

    _check_ruleset(args.ruleset)
    report = build_report(args.directory, out=args.out, ruleset=args.ruleset)
    if args.json:
        print(json.dumps(report_to_dict(report), indent=2))
        return 0
    for run in report.runs:
        why = run.diagnosis.reasons[0] if run.diagnosis.reasons else ""
        stdout.print(f"{run.file}: {run.diagnosis.verdict}: {why}", markup=False)
    stdout.print(score_line(report.score), markup=False)
    stdout.print(f"wrote {report.html_path} (+ {len(report.png_paths)} PNG)", markup=False)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from trainperf.perf.estimate import (
        estimate,
        estimate_to_dict,
        recipe_overrides,
        render_estimate,
    )

    kwargs = dict(
        model=args.model,
        seq=args.seq,
        gbs=args.gbs,
        step_time=args.step_time,
        gpus=args.gpus,
        device=args.device,
        dtype=args.dtype,
        tokens=args.tokens,
    )
    overrides = recipe_overrides(args.model, args.formula)
    result = estimate(**kwargs, model_overrides=overrides)
    exact = estimate(**kwargs) if overrides else result
    if args.json:
        out = estimate_to_dict(result)
        out["formula"] = args.formula
        out["model_flops_per_sample_exact_model"] = exact.model_flops_per_sample
        out["mfu_exact_model"] = exact.mfu
        print(json.dumps(out, indent=2))
        return 0
    note = None
    if overrides:
        note = (
            f"(NVIDIA recipe convention {overrides}; the model itself gives "
            f"{exact.model_flops_per_sample:.3E} FLOPs/sample and MFU {exact.mfu:.2%}: "
            "--formula model)"
        )
    render_estimate(result, stdout, note=note)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from trainperf.results.published import compare_directory, comparison_to_dict, render_compare

    if not args.directory.is_dir():
        raise ValueError(f"{args.directory} is not a folder; give the folder holding result_*.txt")
    result, rows = compare_directory(args.directory, accelerator=args.accelerator, count=args.gpus)
    if args.json:
        print(
            json.dumps(
                {
                    "score_minutes": result.score_minutes,
                    "benchmark": result.benchmark,
                    "published": [comparison_to_dict(r) for r in rows],
                },
                indent=2,
            )
        )
    else:
        render_compare(rows, stdout, score_minutes=result.score_minutes)
    return 0


COMMANDS = {
    "list": cmd_list,
    "systems": cmd_systems,
    "prepare": cmd_prepare,
    "run": cmd_run,
    "score": cmd_score,
    "check": cmd_check,
    "watch": cmd_watch,
    "report": cmd_report,
    "estimate": cmd_estimate,
    "compare": cmd_compare,
    "download": cmd_download,
    "perf": cmd_perf,
    "doctor": cmd_doctor,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `run` takes section.key=value overrides after its options too (argparse alone would not)
    args, unknown = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command in ("run", "perf", "doctor"):
        args.items += [u for u in unknown if "=" in u and not u.startswith("-")]
        unknown = [u for u in unknown if u not in args.items]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in ("run", "perf"):
        # Training allocates and frees tensors of many sizes; segments that grow in place keep
        # the CUDA cache from fragmenting (torchtitan and NeMo set the same). A user's own
        # setting wins; it must be set before CUDA starts, and torchrun's workers inherit it.
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    try:
        return COMMANDS[args.command](args)
    except ValueError as exc:
        if os.environ.get("TRAINPERF_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError" or os.environ.get("TRAINPERF_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {out_of_memory_message(exc)}")
        return EXIT_USER_ERROR


def out_of_memory_message(exc: BaseException) -> str:
    """One paragraph for a CUDA out-of-memory error: what ran out and what to change."""
    first = str(exc).splitlines()[0] if str(exc) else "CUDA out of memory"
    return (
        f"the GPU ran out of memory ({first.rstrip('.')}). Fit the step with less memory: "
        "parallel.activation_checkpointing=full, a smaller train.micro_batch_size, more GPUs "
        "(--nproc N / more nodes: FSDP shards the weights), parallel.float8=rowwise for a LoRA "
        "frozen base, parallel.compile_inside_checkpoint=true with compile and full checkpointing "
        "(or parallel.compile=false), or a "
        "proxy with fewer layers (--layers N for perf). Set TRAINPERF_DEBUG=1 for the traceback."
    )


if __name__ == "__main__":
    sys.exit(main())
