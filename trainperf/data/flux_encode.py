"""``trainperf prepare flux1 --raw DIR``: encode raw images and captions into the MLPerf layout.

What MLCommons ships as ``cc12m_preprocessed``/``coco_preprocessed``/``empty_encodings`` is the
output of frozen encoders: per image the VAE posterior (``mean``, ``logvar``, 16 x H/8 x W/8), per
caption the T5-XXL token states (256 x 4096) and the CLIP ViT-L/14 pooled vector (768), all
stored as bf16 .npy cells (``flux_format``). This module recomputes them from raw pairs with the
encoders of a diffusers FLUX.1 pipeline folder or hub id (``vae/``, ``text_encoder/`` CLIP,
``tokenizer/``, ``text_encoder_2/`` T5, ``tokenizer_2/``; by default
black-forest-labs/FLUX.1-schnell), as the diffusers Flux pipeline calls them: T5 on 256 tokens
padded to the maximum, no attention mask; CLIP's pooled output on 77 tokens; images resized
(shorter side) and centre-cropped to 256 x 256, scaled to [-1, 1].

Raw layout: ``DIR/cc12m/`` and ``DIR/coco/``, each holding images (.jpg, .jpeg, .png, .webp)
with a same-named ``.txt`` caption (a webdataset shard unpacked). The COCO rows get the
evaluation timestep ``index % 8``, as the reference's conversion does. Needs transformers,
diffusers and Pillow (``pip install 'trainperf[flux-raw]'``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from trainperf.atomic import atomic_path
from trainperf.data.flux_format import (
    CLIP,
    CLIP_EMPTY,
    EMPTY_DIR,
    EVAL_DIR,
    EVAL_TIMESTEPS,
    KEY,
    LOGVAR,
    MEAN,
    T5,
    T5_EMPTY,
    TIMESTEP,
    TRAIN_DIR,
    encode_bf16_npy,
    write_arrow_dataset,
)

DEFAULT_ENCODERS = "black-forest-labs/FLUX.1-schnell"
IMAGE_SIZE = 256
T5_TOKENS = 256
CLIP_TOKENS = 77
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
RAW_SPLITS = {"cc12m": TRAIN_DIR, "coco": EVAL_DIR}
"""Raw folder -> the preprocessed folder it becomes."""


@dataclass
class Encoders:
    vae: Any
    t5: Any
    t5_tokenizer: Any
    clip: Any
    clip_tokenizer: Any
    device: torch.device

    @torch.no_grad()
    def text(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(T5 token states (B, 256, D_t5), CLIP pooled (B, D_clip)) as float32."""
        t5_ids = self.t5_tokenizer(
            list(captions), max_length=T5_TOKENS, padding="max_length", truncation=True,
            return_tensors="pt",
        ).input_ids  # fmt: skip
        clip_ids = self.clip_tokenizer(
            list(captions), max_length=CLIP_TOKENS, padding="max_length", truncation=True,
            return_tensors="pt",
        ).input_ids  # fmt: skip
        t5 = self.t5(t5_ids.to(self.device), output_hidden_states=False)[0]
        clip = self.clip(clip_ids.to(self.device), output_hidden_states=False).pooler_output
        return t5.float().cpu().numpy(), clip.float().cpu().numpy()

    @torch.no_grad()
    def images(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(mean, logvar) of the VAE posterior of images in [-1, 1], (B, C, H/8, W/8)."""
        posterior = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        return posterior.mean.float().cpu().numpy(), posterior.logvar.float().cpu().numpy()


def load_encoders(source: str, *, device: torch.device) -> Encoders:
    """The frozen encoders of a diffusers FLUX.1 pipeline folder or hub id `source`."""
    try:
        from diffusers import AutoencoderKL
        from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel
    except ImportError as exc:
        raise ValueError(
            f"--raw needs transformers and diffusers ({exc.name} is missing): "
            "pip install 'trainperf[flux-raw]'"
        ) from exc
    try:
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
        clip = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
        t5 = T5EncoderModel.from_pretrained(source, subfolder="text_encoder_2")
        clip_tok = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
        t5_tok = AutoTokenizer.from_pretrained(source, subfolder="tokenizer_2")
    except OSError as exc:
        raise ValueError(
            f"cannot load the FLUX.1 encoders from {source!r} ({str(exc).splitlines()[0]}); "
            "give --encoders a diffusers pipeline folder (vae/, text_encoder/, tokenizer/, "
            "text_encoder_2/, tokenizer_2/) or a hub id (HF_TOKEN for gated repos)"
        ) from exc
    for model in (vae, clip, t5):
        model.to(device).eval().requires_grad_(False)
    return Encoders(vae, t5, t5_tok, clip, clip_tok, device)


def raw_pairs(folder: Path) -> list[tuple[str, Path, str]]:
    """(key, image path, caption) of a raw folder, sorted by key; ValueError naming what is
    missing."""
    if not folder.is_dir():
        raise ValueError(f"raw folder {folder} not found; --raw DIR needs DIR/cc12m and DIR/coco")
    pairs = []
    for image in sorted(folder.iterdir()):
        if image.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        caption = image.with_suffix(".txt")
        if not caption.is_file():
            raise ValueError(f"{image} has no caption {caption.name} beside it")
        pairs.append((image.stem, image, caption.read_text(encoding="utf-8").strip()))
    if not pairs:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return pairs


def load_image(path: Path, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(3, size, size) in [-1, 1]: the shorter side resized to `size` (bicubic), centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path} is not a readable image ({exc}); remove or replace it") from exc
    scale = size / min(rgb.size)
    w, h = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
    rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    array = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def encode_split(
    pairs: Sequence[tuple[str, Path, str]],
    encoders: Encoders,
    *,
    batch_size: int,
    timesteps: bool,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, pa.Array]:
    """The columns of one preprocessed split (the reference's order)."""
    cells: dict[str, list[bytes]] = {T5: [], CLIP: [], MEAN: [], LOGVAR: []}
    for batch in _batches(pairs, batch_size):
        t5, clip = encoders.text([caption for _, _, caption in batch])
        mean, logvar = encoders.images(torch.stack([load_image(path) for _, path, _ in batch]))
        for name, values in ((T5, t5), (CLIP, clip), (MEAN, mean), (LOGVAR, logvar)):
            cells[name] += [encode_bf16_npy(v) for v in values]
        advance(len(batch))
    columns: dict[str, pa.Array] = {KEY: pa.array([key for key, _, _ in pairs])}
    columns.update({name: pa.array(values, pa.binary()) for name, values in cells.items()})
    if timesteps:
        columns[TIMESTEP] = pa.array(np.arange(len(pairs)) % EVAL_TIMESTEPS, pa.int32())
    return columns


def _counter(what: str, total: int, log: Callable[[str], None]) -> Callable[[int], None]:
    """advance(n): '  <what>: done/total images, rate' every HEARTBEAT_S and at the end."""
    from trainperf.train.progress import HEARTBEAT_S

    done, start = 0, time.perf_counter()
    last = start

    def advance(n: int) -> None:
        nonlocal done, last
        done, now = done + n, time.perf_counter()
        if now - last >= HEARTBEAT_S or done == total:
            rate = done / max(now - start, 1e-9)
            log(f"  {what}: {done:,}/{total:,} images, {rate:.1f} images/s")
            last = now

    return advance


def encode_raw_flux(
    raw: Path,
    root: Path,
    encoders: Encoders,
    *,
    batch_size: int = 16,
    rows_per_file: int = 1000,
    log: Callable[[str], None] = print,
) -> None:
    """Encode ``raw/cc12m`` and ``raw/coco`` into `root` (the three MLPerf folders). Each folder
    is written under a temporary name and renamed when complete; a folder already there (an
    interrupted call's finished part) is kept."""
    splits = {name: raw_pairs(raw / name) for name in RAW_SPLITS}
    with atomic_path(root / EMPTY_DIR, directory=True) as empty:
        t5, clip = encoders.text([""])
        np.save(empty / T5_EMPTY, t5.astype(np.float16))
        np.save(empty / CLIP_EMPTY, clip.astype(np.float16))
    for name, folder in RAW_SPLITS.items():
        if (root / folder).exists():  # written whole or not at all: an earlier call finished it
            log(f"✓ {name}: kept {root / folder} (remove it to encode {raw / name} again)")
            continue
        pairs = splits[name]
        columns = encode_split(
            pairs,
            encoders,
            batch_size=batch_size,
            timesteps=folder == EVAL_DIR,
            advance=_counter(f"encoding {name}", len(pairs), log),
        )
        with atomic_path(root / folder, directory=True) as tmp:
            write_arrow_dataset(tmp, columns, rows_per_file=rows_per_file)
        log(f"✓ {name}: {len(pairs)} rows -> {root / folder}")
