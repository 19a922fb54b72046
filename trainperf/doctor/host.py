"""Host checks: the data folder's free space and read speed, and the benchmark's prepared files.

Verification reuses what ``trainperf prepare --verify`` runs, offline: the indexed C4 files
(headers, sizes, token range), the tokenizer, the GovReport splits (counts, shapes), the base
model (config.json against the size registry, every weight file present), the built-in corpus
(its manifest's hashes). The MD5 of every downloaded file (minutes for 80 GB) only with ``md5``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from mlperf_logging.mllog import constants as C

from trainperf.config import Config
from trainperf.doctor import Check

GB = 1e9
MIN_READ_MB_S = 500.0
"""Sequential read below this warns: an evaluation or a restart then waits on the disk."""
READ_BYTES = 2**30
SMALL_SAMPLE = 64 * 2**20
HEADROOM_GB = 10.0
"""Free space a run still needs with its data present: index caches, results, logs."""
DATA_GB: dict[tuple[str, str], float] = {
    ("llama31_8b", "c4"): 80.0,  # the MLPerf preprocessed C4 download (prepare's message)
    ("llama2_70b_lora", "govreport"): 140.0,  # Llama-2-70B bf16 safetensors (69 B x 2 bytes)
    ("llama31_405b", "c4"): 160.0,  # two consolidated C4 files (en_6, en_7): ~2x the 8B's
}
"""Approximate bytes of a benchmark's prepared data at full scale, in GB; built-in data ~1 GB."""


def existing_parent(folder: Path) -> Path:
    folder = folder.expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def disk_space_check(
    folder: Path, *, free_gb: float, need_gb: float, data_present: bool, explicit: bool
) -> Check:
    """Free space of the data folder's filesystem against what the run still has to write."""
    name = "data folder space"
    if explicit and not folder.is_dir():
        return Check(
            name, "fail", f"{folder} does not exist", "fix --data-dir, or create it and prepare"
        )
    still = HEADROOM_GB if data_present else need_gb + HEADROOM_GB
    value = f"{free_gb:,.1f} GB free at {existing_parent(folder)}"
    if not data_present:
        value += f"; the data needs ~{need_gb:,.0f} GB"
    if free_gb >= still:
        return Check(name, "pass", value)
    fix = f"free {still - free_gb:,.0f} GB there, or prepare into another --data-dir"
    return Check(name, "fail" if not data_present else "warn", value, fix)


def local_disk_space(cfg: Config, folder: Path, *, data_present: bool, explicit: bool) -> Check:
    free_gb = shutil.disk_usage(existing_parent(folder)).free / GB
    need = DATA_GB.get((cfg.benchmark, cfg.data.source), 1.0)
    return disk_space_check(
        folder, free_gb=free_gb, need_gb=need, data_present=data_present, explicit=explicit
    )


def largest_file(folder: Path) -> Path | None:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return max(files, key=lambda p: p.stat().st_size, default=None)


def measure_read(path: Path, *, max_bytes: int = READ_BYTES) -> tuple[int, float, bool]:
    """(bytes read, seconds, whether the page cache was dropped first) of a sequential read of
    `path`'s first `max_bytes`. The cache is dropped for this file only (posix_fadvise
    DONTNEED, no root needed), so the read comes from the disk."""
    chunk = 16 * 2**20
    with open(path, "rb", buffering=0) as f:
        dropped = hasattr(os, "posix_fadvise")
        if dropped:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        buf = bytearray(chunk)
        view, done = memoryview(buf), 0
        start = time.perf_counter()
        while done < max_bytes:
            n = f.readinto(view[: min(chunk, max_bytes - done)])
            if not n:
                break
            done += n
        seconds = time.perf_counter() - start
    return done, seconds, dropped


def read_speed_check(path: Path | None, nbytes: int, seconds: float, *, dropped: bool) -> Check:
    """Warn below MIN_READ_MB_S; a sample under 64 MiB is reported but says it is small."""
    name = "data read speed"
    if path is None:
        return Check(name, "skip", "no data file to read", "prepare the data first")
    mb_s = nbytes / max(seconds, 1e-9) / 1e6
    notes = [] if dropped else ["page cache not dropped: may be cached"]
    if nbytes < SMALL_SAMPLE:
        notes.append(f"small sample: {nbytes / 2**20:.1f} MiB")
    note = f" ({'; '.join(notes)})" if notes else ""
    value = f"{mb_s:,.0f} MB/s reading {nbytes / 2**20:,.0f} MiB of {path.name}{note}"
    if mb_s >= MIN_READ_MB_S:
        return Check(name, "pass", value)
    fix = f"below {MIN_READ_MB_S:g} MB/s: put the data on local NVMe (or a faster filesystem)"
    return Check(name, "warn", value, fix)


def local_read_speed(folder: Path) -> Check:
    path = largest_file(folder) if folder.is_dir() else None
    if path is None:
        return read_speed_check(None, 0, 0.0, dropped=False)
    nbytes, seconds, dropped = measure_read(path)
    return read_speed_check(path, nbytes, seconds, dropped=dropped)


# ---- prepared data -------------------------------------------------------------------------------


def _prepare_cmd(cfg: Config) -> str:
    from trainperf.data.prepare import data_dir

    where = f" --data-dir {data_dir(cfg)}" if cfg.data.data_dir else ""
    return f"trainperf prepare {cfg.benchmark} --scale {cfg.scale}{where}"


def data_checks(cfg: Config, *, md5: bool = False) -> list[Check]:
    """The prepared data, tokenizer and checkpoint of `cfg`, each present and verified (missing
    data fails; the built-in data only warns: `run` builds it)."""
    from trainperf.data.prepare import data_paths, missing_files

    paths = data_paths(cfg)
    missing = [p for p in missing_files(paths, cfg) if p.name != "config.json"]
    absent = None
    if missing:
        built = cfg.data.source == "builtin"
        fix = _prepare_cmd(cfg) + (" (or let `trainperf run` build it)" if built else "")
        absent = Check("prepared data", "warn" if built else "fail", f"missing {missing[0]}", fix)
    if cfg.data.source == "builtin":
        checks = _builtin_checks(cfg, paths)
    elif cfg.data.source == "govreport":
        checks = _govreport_checks(cfg, paths)
    else:
        checks = _c4_checks(cfg, paths, md5=md5 and absent is None)
    if absent is not None:  # the other files are still checked: a missing checkpoint is news
        checks = [absent, *(c for c in checks if c.name not in ("prepared data", "data MD5"))]
    return checks


def _verified(name: str, fn, fix: str) -> Check:
    try:
        lines = fn()
    except (ValueError, OSError) as exc:
        return Check(name, "fail", str(exc).splitlines()[0], fix)
    lines = [lines] if isinstance(lines, str) else lines
    return Check(name, "pass", "; ".join(lines))


def _builtin_checks(cfg: Config, paths) -> list[Check]:
    from trainperf.data import govreport
    from trainperf.data.corpus import verify_builtin_corpus
    from trainperf.data.prepare import LORA_TINY_SAMPLES

    fix = f"rebuild: {_prepare_cmd(cfg)}"
    if cfg.model.lora_rank == 0:

        def corpus() -> str:
            info = verify_builtin_corpus(paths.root)
            return f"built-in corpus {paths.root}: {info.train_tokens:,} train tokens, hashes ok"

        return [_verified("prepared data", corpus, fix)]
    checks = [
        _verified(
            "prepared data",
            lambda: govreport.verify_dataset(
                paths.root,
                train_samples=LORA_TINY_SAMPLES[0],
                eval_samples=max(LORA_TINY_SAMPLES[1], cfg.train.eval_samples),
                max_seq_len=cfg.train.seq_len,
            ),
            fix,
        )
    ]
    if cfg.model.checkpoint is None and not (paths.model_dir / "config.json").is_file():
        why = f"the tiny base model is not built yet ({paths.model_dir})"
        return [*checks, Check("checkpoint", "warn", why, f"{_prepare_cmd(cfg)} (or `run`)")]
    return [*checks, _checkpoint_check(cfg, paths.model_dir, fix)]


def _govreport_checks(cfg: Config, paths) -> list[Check]:
    from trainperf.benchmarks import get_benchmark
    from trainperf.data import govreport

    spec, fix = get_benchmark(cfg.benchmark), f"{_prepare_cmd(cfg)} (resumes)"
    data = _verified(
        "prepared data",
        lambda: govreport.verify_dataset(
            paths.train_prefix.parent,
            train_samples=spec.data.train_samples,
            eval_samples=spec.eval.eval_samples,
            max_seq_len=spec.rules[C.MAX_SEQUENCE_LENGTH],
        ),
        fix,
    )
    return [data, _checkpoint_check(cfg, paths.model_dir, fix)]


def _checkpoint_check(cfg: Config, default: Path | None, fix: str) -> Check:
    from trainperf.benchmarks import get_benchmark

    family = get_benchmark(cfg.benchmark).family
    source = cfg.model.checkpoint
    if source == "random":
        return Check("checkpoint", "skip", "model.checkpoint=random: random init")
    folder = Path(source).expanduser() if source else default
    if folder is None or (source and not folder.exists()):
        return Check("checkpoint", "warn", f"{source}: not a local folder (a hub id?)", fix)
    return _verified("checkpoint", lambda: family.verify_checkpoint(folder, cfg.model.flavor), fix)


def _c4_checks(cfg: Config, paths, *, md5: bool) -> list[Check]:
    from trainperf.benchmarks import get_benchmark
    from trainperf.data import c4
    from trainperf.data.prepare import data_dir, verify_md5_lists

    spec, root = get_benchmark(cfg.benchmark), data_dir(cfg)
    fix = f"{_prepare_cmd(cfg)} (downloads what is missing or wrong)"
    vocab = spec.data.vocab_size or 65536
    checks = [
        _verified(
            "prepared data",
            lambda: c4.verify_c4(
                paths.root,
                seq_len=spec.rules[C.MAX_SEQUENCE_LENGTH],
                eval_samples=spec.eval.eval_samples,
                vocab_size=vocab,
                train_prefixes=spec.data.train_prefixes,
            ),
            fix,
        )
    ]
    if md5:

        def md5_lists() -> str:
            lines: list[str] = []
            for folder in dict.fromkeys([root / "data", paths.root, paths.tokenizer]):
                verify_md5_lists(folder, log=lines.append)
            return "; ".join(lines) or "no .md5 list found"

        checks.append(_verified("data MD5", md5_lists, fix))

    def tokenizer() -> str:
        tok = c4.load_tokenizer(paths.tokenizer)
        return f"{c4.find_tokenizer(paths.tokenizer)} ({tok.get_vocab_size():,} tokens)"

    checks.append(_verified("tokenizer", tokenizer, fix))
    if spec.data.checkpoint_note and not cfg.model.checkpoint:
        note = spec.data.checkpoint_note
        checks.append(Check("checkpoint", "fail", "no model.checkpoint", note))
    elif cfg.model.checkpoint:
        checks.append(_checkpoint_check(cfg, None, "set model.checkpoint to the HF folder"))
    else:
        checks.append(Check("checkpoint", "skip", f"{cfg.benchmark} trains from random init"))
    return checks
