"""flux1's data on disk: the synthetic set of the reduced scales (sized from the model flavor,
built once and cached) and the MLCommons download of the three preprocessed sets of the full
scale (CC12M, COCO, the empty encodings), verified by opening them as a run would.

``prepare.py`` calls into here for a Flux benchmark; the format itself is ``flux_format.py``,
the reader ``flux.py``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainperf.config import Config
from trainperf.data.prepare import (
    DataPaths,
    Log,
    PrepareOptions,
    data_dir,
    missing_files,
    verify_md5_lists,
)

if TYPE_CHECKING:
    from trainperf.benchmarks.spec import BenchmarkSpec

FLUX_SYNTHETIC_ROWS = (4096, 256)
FLUX_SYNTHETIC_SEED = 0  # the data is fixed across runs; the run seed draws the noise
MLCOMMONS_METADATA = "https://training.mlcommons-storage.org/metadata"


@dataclass(frozen=True)
class FluxSizes:
    """The sizes of a synthetic flux1 set, from the model flavor it is made for."""

    text_tokens: int
    text_dim: int
    clip_dim: int
    latent_channels: int
    latent_size: int
    train_rows: int
    eval_rows: int

    @property
    def key(self) -> str:
        """The cache folder name: every size in it, so another flavor gets its own set."""
        return (
            f"flux-synthetic-t{self.text_tokens}x{self.text_dim}-c{self.clip_dim}-"
            f"l{self.latent_channels}x{self.latent_size}-r{self.train_rows}-{self.eval_rows}"
        )


def flux_synthetic_sizes(cfg: Config) -> FluxSizes:
    """What the built-in flux1 set of `cfg` holds: the model flavor's text and latent sizes
    (a square latent of image_tokens 2 x 2 patches), FLUX_SYNTHETIC_ROWS rows."""
    from trainperf.benchmarks import get_benchmark

    model = get_benchmark(cfg.benchmark).family.model_config(cfg)
    side = math.isqrt(model.image_tokens)
    if side * side != model.image_tokens or model.in_channels % 4:
        raise ValueError(
            f"model.flavor {cfg.model.flavor} has image_tokens({model.image_tokens}) and "
            f"in_channels({model.in_channels}): synthetic data needs a square grid of 2 x 2 "
            "patches (a square number of tokens, in_channels divisible by 4); pick such a flavor"
        )
    return FluxSizes(
        text_tokens=model.text_tokens,
        text_dim=model.context_in_dim,
        clip_dim=model.vec_in_dim,
        latent_channels=model.in_channels // 4,
        latent_size=2 * side,
        train_rows=FLUX_SYNTHETIC_ROWS[0],
        eval_rows=max(FLUX_SYNTHETIC_ROWS[1], cfg.train.eval_samples),
    )


def prepare_flux_data(cfg: Config, paths: DataPaths, *, progress: bool) -> DataPaths:
    """flux1: the synthetic set of a reduced scale, written once (cached by its sizes); the
    downloaded sets must be there."""
    if not (missing := missing_files(paths)):
        return paths
    if cfg.data.source != "builtin":
        raise ValueError(
            f"flux1 data not found in {paths.root} (missing {missing[0]}); run `trainperf "
            f"prepare {cfg.benchmark} --scale {cfg.scale} --data-dir {paths.root}` (downloads "
            "the MLPerf preprocessed CC12M and COCO, ~2.5 TB), or use --scale tiny"
        )
    from trainperf.data.flux_format import write_synthetic_flux

    sizes = flux_synthetic_sizes(cfg)
    if progress:
        print(
            f"building the synthetic flux1 set ({sizes.train_rows} + {sizes.eval_rows} rows) in "
            f"{paths.root}",
            file=sys.stderr,
        )
    fields = {f.name: getattr(sizes, f.name) for f in dataclasses.fields(sizes)}
    write_synthetic_flux(paths.root, seed=FLUX_SYNTHETIC_SEED, **fields)
    return paths


@dataclass(frozen=True)
class FluxSources:
    """MLCommons ``.uri`` of flux1's three preprocessed sets (mlcommons/training
    ``text_to_image/README.md``; each lists its files in the ``.md5`` beside it)."""

    train_uri: str = f"{MLCOMMONS_METADATA}/flux-1-cc12m-preprocessed.uri"
    eval_uri: str = f"{MLCOMMONS_METADATA}/flux-1-coco-preprocessed.uri"
    empty_uri: str = f"{MLCOMMONS_METADATA}/flux-1-empty-encodings.uri"

    @classmethod
    def beside(cls, uri: str) -> FluxSources:
        """The three sets under their MLCommons names in the metadata folder of `uri`."""
        folder = uri.strip().rsplit("/", 1)[0]
        default = cls()
        return cls(*(f"{folder}/{u.rsplit('/', 1)[1]}" for u in dataclasses.astuple(default)))


def prepare_flux(
    root: Path,
    sources: FluxSources,
    *,
    verify_only: bool = False,
    train_rows: int | None = None,
    eval_rows: int | None = None,
    model_cfg: Any = None,
    workers: int = 8,
    log: Log = lambda _: None,
    console: Any = None,
) -> None:
    """Fetch flux1's three sets into ``root/cc12m_preprocessed``, ``root/coco_preprocessed`` and
    ``root/empty_encodings`` (MD5-verified, resumable), then open them as a run would: row counts
    (`train_rows`, `eval_rows` when given), shapes against each other and `model_cfg`.
    ``verify_only`` touches no network. ValueError names the first problem."""
    from trainperf.data import flux, mlcommons
    from trainperf.data.flux_format import EMPTY_DIR, EVAL_DIR, TRAIN_DIR

    folders = {TRAIN_DIR: sources.train_uri, EVAL_DIR: sources.eval_uri}
    folders[EMPTY_DIR] = sources.empty_uri
    for name, uri in folders.items():
        if not verify_only:
            mlcommons.download_dataset(uri, root / name, workers=workers, log=log, console=console)
        verify_md5_lists(root / name, log=log)
    paths = DataPaths(root, root / TRAIN_DIR, root / EVAL_DIR, root / EMPTY_DIR)
    lines = flux.verify_flux(paths, train_rows=train_rows, eval_rows=eval_rows, model_cfg=model_cfg)
    for line in lines:
        log(line)


def prepare_flux_benchmark(
    spec: BenchmarkSpec, cfg: Config, o: PrepareOptions, *, log: Log, console: Any
) -> Path:
    """`prepare_benchmark` for flux1's full-scale data (``cc12m``): download and verify."""
    from trainperf.data import flux

    if o.raw_images:
        return encode_flux_benchmark(spec, cfg, o, log=log)

    uri = o.dataset_uri or spec.data.dataset_uri
    root = data_dir(cfg)
    prepare_flux(
        root,
        FluxSources.beside(uri) if uri else FluxSources(),
        verify_only=o.verify_only,
        train_rows=spec.data.train_samples or flux.TRAIN_ROWS,
        eval_rows=spec.eval.eval_samples,
        model_cfg=spec.family.model_config(cfg),
        workers=o.workers,
        log=log,
        console=console,
    )
    return root


def encode_flux_benchmark(spec: BenchmarkSpec, cfg: Config, o: PrepareOptions, *, log: Log) -> Path:
    """``prepare flux1 --raw DIR``: encode the raw pairs with the FLUX.1 encoders, then open the
    result as a run would (its shapes against the model; any row count)."""
    import torch

    from trainperf.data import flux
    from trainperf.data.flux_encode import (
        DEFAULT_ENCODERS,
        RAW_SPLITS,
        encode_raw_flux,
        load_encoders,
        raw_pairs,
    )
    from trainperf.data.flux_format import EMPTY_DIR, EVAL_DIR, TRAIN_DIR

    assert o.raw_images is not None
    for name in RAW_SPLITS:  # the inputs first: no encoder download for a wrong folder
        raw_pairs(o.raw_images / name)
    if o.verify_only:
        raise ValueError("--raw encodes; --verify checks prepared sets: give one of them")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    source = o.encoders or DEFAULT_ENCODERS
    log(f"loading the FLUX.1 encoders (VAE, CLIP, T5) from {source} on {device}")
    root = data_dir(cfg)
    encode_raw_flux(o.raw_images, root, load_encoders(source, device=device), log=log)
    paths = DataPaths(root, root / TRAIN_DIR, root / EVAL_DIR, root / EMPTY_DIR)
    for line in flux.verify_flux(paths, model_cfg=spec.family.model_config(cfg)):
        log(line)
    return root
