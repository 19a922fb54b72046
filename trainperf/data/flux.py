"""flux1's data as the trainer reads it: batches of VAE posteriors, text encodings and the
per-sample randomness of the rectified-flow loss.

The prepared folder holds three MLPerf sets (``flux_format`` reads their Arrow files zero copy):
``cc12m_preprocessed/`` (training, 1,099,776 rows), ``coco_preprocessed/`` (validation, 29,696
rows with a timestep index 0..7) and ``empty_encodings/`` (T5 and CLIP of the empty caption).

Every random number of a sample (its posterior draw, noise, timestep, caption dropout) comes
from a torch.Generator seeded by (run seed, sample index) and, in evaluation, the evaluation
pass: a batch is the same whichever ranks share it and however it is cut into micro-batches.
As in the reference (torchtitan ``dataset/flux_dataset.py``), training walks the rows in stored
order, again each epoch, and evaluation reads the first ``eval_samples`` rows in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainperf.config import Config
from trainperf.data.flux_format import (
    CLIP,
    CLIP_EMPTY,
    ENCODED_COLUMNS,
    EVAL_TIMESTEPS,
    LOGVAR,
    MEAN,
    PREPARE_FIX,
    T5,
    T5_EMPTY,
    TIMESTEP,
    ArrowRows,
    npy_bf16_cells,
)
from trainperf.data.prepare import DataPaths

if TYPE_CHECKING:
    from trainperf.models.flux.model import FluxConfig

CAPTION_DROPOUT_PROB = 0.1
"""Training samples whose T5 and CLIP encodings are both replaced by the empty caption's
(TT flux_schnell_mlperf toml ``training.classifer_free_guidance_prob``; none in evaluation
since TT 4a2bf72)."""
EVAL_TIMESTEP_DIVISOR = float(EVAL_TIMESTEPS)
"""Evaluation timestep t = timestep index / 8 (TT ``train.py::FluxTrainer.eval_step``)."""
TRAIN_ROWS, EVAL_ROWS = 1_099_776, 29_696  # MLLOG train_samples / eval_samples of the reference
_TRAIN_STREAM, _EVAL_STREAM = 0, 1  # seed words that keep training and evaluation draws apart


@dataclass(frozen=True)
class FluxShapes:
    """Per-sample shapes of a prepared set."""

    t5: tuple[int, ...]
    """(T, D_text)."""
    clip: tuple[int, ...]
    """(D_clip,)."""
    latent: tuple[int, ...]
    """(C, H, W) of mean and logvar."""

    def describe(self) -> str:
        return f"t5 {self.t5}, clip {self.clip}, latent {self.latent}"


class FluxSets:
    """The three prepared sets opened and checked against each other (and the model)."""

    def __init__(self, paths: DataPaths, model_cfg: FluxConfig | None = None) -> None:
        self.train = ArrowRows(paths.train_prefix, columns=ENCODED_COLUMNS)
        self.eval = ArrowRows(paths.valid_prefix, columns=(*ENCODED_COLUMNS, TIMESTEP))
        self.shapes = _row_shapes(self.train)
        if (other := _row_shapes(self.eval)) != self.shapes:
            raise ValueError(
                f"{paths.valid_prefix} has {other.describe()} but {paths.train_prefix} has "
                f"{self.shapes.describe()}: the two sets come from different encoders; "
                + PREPARE_FIX
            )
        self.empty_t5 = _read_empty(paths.tokenizer / T5_EMPTY, (1, *self.shapes.t5))
        self.empty_clip = _read_empty(paths.tokenizer / CLIP_EMPTY, (1, *self.shapes.clip))
        self.timesteps = self.eval.int_column(TIMESTEP)
        if len(self.timesteps) and not 0 <= self.timesteps.min() <= self.timesteps.max() < 8:
            raise ValueError(
                f"{paths.valid_prefix} has timesteps {self.timesteps.min()}..."
                f"{self.timesteps.max()}, expected 0..7; {PREPARE_FIX}"
            )
        if model_cfg is not None:
            check_model_shapes(self.shapes, model_cfg)


def _row_shapes(rows: ArrowRows) -> FluxShapes:
    t5, clip, mean, logvar = (npy_bf16_cells(rows, c, [0]).shape[1:] for c in ENCODED_COLUMNS)
    if mean != logvar or len(mean) != 3 or len(t5) != 2 or len(clip) != 1:
        raise ValueError(
            f"{rows.where(0)}: shapes t5 {t5}, clip {clip}, mean {mean}, logvar {logvar} are not "
            f"(T, D), (D,), (C, H, W) twice; {PREPARE_FIX}"
        )
    return FluxShapes(t5=t5, clip=clip, latent=mean)


def _read_empty(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """An empty-caption encoding (float16 .npy of `shape`) as float32 without the leading 1."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read ({exc}); {PREPARE_FIX}") from None
    if array.dtype != np.float16 or array.shape != shape:
        raise ValueError(
            f"{path} holds {array.dtype} {array.shape}, expected float16 {shape} (the data's "
            f"encoder sizes); {PREPARE_FIX}"
        )
    return torch.from_numpy(array[0].astype(np.float32))


def check_model_shapes(shapes: FluxShapes, model_cfg: FluxConfig) -> None:
    """ValueError naming both shapes when the data does not fit the model: T5 (text_tokens,
    context_in_dim), CLIP (vec_in_dim,), latent C x 4 = in_channels, H/2 x W/2 = image_tokens."""
    c, h, w = shapes.latent
    fits = (
        shapes.t5 == (model_cfg.text_tokens, model_cfg.context_in_dim)
        and shapes.clip == (model_cfg.vec_in_dim,)
        and c * 4 == model_cfg.in_channels
        and h % 2 == 0
        and w % 2 == 0
        and (h // 2) * (w // 2) == model_cfg.image_tokens
    )
    if not fits:
        raise ValueError(
            f"the data has {shapes.describe()} but the model wants t5 ({model_cfg.text_tokens}, "
            f"{model_cfg.context_in_dim}), clip ({model_cfg.vec_in_dim},), latent "
            f"({model_cfg.in_channels // 4}, H, W) with H/2 x W/2 = {model_cfg.image_tokens} "
            "tokens; pick the model.flavor the data was encoded for, or prepare data for this one"
        )


def sample_generator(seed: int, *words: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *words), mixed by numpy's SeedSequence so that nearby
    indices give unrelated streams."""
    state = np.random.SeedSequence([seed % 2**64, *words]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class FluxData:
    """flux1's training and evaluation batches (`trainperf.data.readers.BenchmarkData`).

    A batch is a dict of float32 tensors: ``mean``, ``logvar``, ``eps``, ``noise`` (B, C, H, W),
    ``t5`` (B, T, D_text), ``clip`` (B, D_clip), ``t`` (B,). The task draws the latent
    z = mean + exp(logvar / 2) * eps; training has t ~ U[0, 1) and 10 % caption dropout,
    evaluation t = timestep / 8, fresh eps and noise each pass (`begin_eval`), no dropout.
    """

    def __init__(self, cfg: Config, paths: DataPaths, model_cfg: FluxConfig | None = None) -> None:
        assert cfg.train.seed is not None, "resolve the seed first"
        self.seed = cfg.train.seed
        self.sets = FluxSets(paths, model_cfg)
        self.train_samples = len(self.sets.train)
        self.eval_size = cfg.train.eval_samples
        if self.eval_size > len(self.sets.eval):
            raise ValueError(
                f"{paths.valid_prefix} has {len(self.sets.eval)} validation rows but "
                f"train.eval_samples is {self.eval_size}; lower train.eval_samples or {PREPARE_FIX}"
            )
        self.eval_pass = 0

    def begin_eval(self) -> None:
        """Start an evaluation pass: its noise and posterior draws are new."""
        self.eval_pass += 1

    def train_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Samples `indices` of the training stream: row i % rows, randomness from (seed, i)."""
        rows = [int(i) % self.train_samples for i in indices]
        batch = _decode(self.sets.train, rows)
        gens = [sample_generator(self.seed, _TRAIN_STREAM, int(i)) for i in indices]
        batch["t"] = torch.cat([torch.rand(1, generator=g) for g in gens])
        drop = torch.cat([torch.rand(1, generator=g) for g in gens]) < CAPTION_DROPOUT_PROB
        batch["t5"][drop] = self.sets.empty_t5
        batch["clip"][drop] = self.sets.empty_clip
        return batch | _normals(gens, batch["mean"].shape[1:])

    def eval_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Validation rows `indices` with t = timestep / 8; randomness from (seed, pass, i)."""
        rows = [int(i) for i in indices]
        assert all(0 <= r < self.eval_size for r in rows), f"eval rows {rows} >= {self.eval_size}"
        batch = _decode(self.sets.eval, rows)
        t = self.sets.timesteps[rows] / EVAL_TIMESTEP_DIVISOR
        batch["t"] = torch.from_numpy(t.astype(np.float32))
        gens = [sample_generator(self.seed, _EVAL_STREAM, self.eval_pass, r) for r in rows]
        return batch | _normals(gens, batch["mean"].shape[1:])


def _decode(rows: ArrowRows, indices: list[int]) -> dict[str, torch.Tensor]:
    names = {T5: "t5", CLIP: "clip", MEAN: "mean", LOGVAR: "logvar"}
    return {key: torch.from_numpy(npy_bf16_cells(rows, c, indices)) for c, key in names.items()}


def _normals(gens: list[torch.Generator], shape: torch.Size) -> dict[str, torch.Tensor]:
    """eps and noise (B, *shape) ~ N(0, 1), each sample from its own generator."""
    eps = torch.stack([torch.randn(shape, generator=g) for g in gens])
    noise = torch.stack([torch.randn(shape, generator=g) for g in gens])
    return {"eps": eps, "noise": noise}


def read_flux(cfg: Config, paths: DataPaths, model_cfg: FluxConfig) -> FluxData:
    """The flux1 spec's reader: the prepared sets, checked against the model's sizes."""
    return FluxData(cfg, paths, model_cfg)


def verify_flux(
    paths: DataPaths,
    *,
    train_rows: int | None = None,
    eval_rows: int | None = None,
    model_cfg: FluxConfig | None = None,
) -> list[str]:
    """Open the prepared sets as a run would and describe them, one line each; ValueError when
    they do not open, do not fit `model_cfg`, or hold other row counts than expected."""
    sets = FluxSets(paths, model_cfg)
    for rows, expected in ((sets.train, train_rows), (sets.eval, eval_rows)):
        if expected is not None and len(rows) != expected:
            raise ValueError(
                f"{rows.folder} holds {len(rows):,} rows in {len(rows.files)} files, expected "
                f"{expected:,}: the download is incomplete; {PREPARE_FIX}"
            )
    counts = np.bincount(sets.timesteps, minlength=EVAL_TIMESTEPS)
    return [
        f"training: {len(sets.train):,} rows in {len(sets.train.files)} files of "
        f"{paths.train_prefix}; {sets.shapes.describe()}",
        f"validation: {len(sets.eval):,} rows in {len(sets.eval.files)} files of "
        f"{paths.valid_prefix}; per timestep 0..7: {' '.join(map(str, counts))}",
        f"empty encodings: t5 {(1, *sets.shapes.t5)}, clip {(1, *sets.shapes.clip)} in "
        f"{paths.tokenizer}",
    ]
