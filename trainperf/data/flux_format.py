"""The on-disk format of MLPerf flux1's preprocessed data, read with pyarrow alone.

The reference (torchtitan ``scripts/preprocess_flux_dataset.py``) encodes every image and caption
once with the frozen VAE, T5 and CLIP, and saves the result with Hugging Face
``datasets.save_to_disk``: a folder of Arrow IPC *stream* files ``data-XXXXX-of-NNNNN.arrow``
plus ``state.json`` (the file list) and ``dataset_info.json`` (the features). Columns:

- ``__key__`` string; ``t5_encodings``, ``clip_encodings``, ``mean``, ``logvar`` binary;
- ``timestep`` int32 (the COCO validation set: which of the 8 evaluation timesteps).

Each binary cell is the bytes of an ``np.save`` .npy file of a **uint16 array holding bfloat16
bit patterns**: t5 (T, D_text), clip (D_clip,), mean and logvar (C, H, W). `ArrowRows`
memory-maps every file (zero copy: a 2.5 TB set costs no RAM) and `npy_bf16_cells` decodes cells
straight from the mapping. `write_arrow_dataset` writes the same layout (the synthetic sets of
the reduced scales; ``datasets.load_from_disk`` reads it).
"""

from __future__ import annotations

import hashlib
import io
import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from trainperf.atomic import atomic_path

PREPARE_FIX = "re-run `trainperf prepare flux1`"
TRAIN_DIR, EVAL_DIR, EMPTY_DIR = "cc12m_preprocessed", "coco_preprocessed", "empty_encodings"
"""The folders ``prepare`` makes under the data folder (the MLCommons dataset names)."""
T5_EMPTY, CLIP_EMPTY = "t5_empty.npy", "clip_empty.npy"
"""float16 .npy of the encoders' output for the empty caption: (1, T, D_text), (1, D_clip)."""
T5, CLIP, MEAN, LOGVAR, TIMESTEP, KEY = (
    "t5_encodings", "clip_encodings", "mean", "logvar", "timestep", "__key__"
)  # fmt: skip
ENCODED_COLUMNS = (T5, CLIP, MEAN, LOGVAR)
_NPY_DTYPE = np.dtype("<u2")


def encode_bf16_npy(values: np.ndarray) -> bytes:
    """float32 -> the .npy bytes of its bfloat16 bit patterns (uint16), rounded to nearest even
    as torch's ``.to(torch.bfloat16)`` rounds (the reference encoders' output dtype)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # finite values; NaN/inf not produced
    buffer = io.BytesIO()
    np.save(buffer, rounded.astype(_NPY_DTYPE), allow_pickle=False)
    return buffer.getvalue()


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32, exactly (bf16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_npy_header(cell: pa.Buffer | bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of the .npy bytes `cell`; ValueError if they are not one."""
    view = io.BytesIO(memoryview(cell)[:4096])  # headers are a few hundred bytes
    version = np.lib.format.read_magic(view)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(view)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(view)
    if fortran:
        raise ValueError("a Fortran-order array")
    return dtype, tuple(shape), view.tell()


class ArrowRows:
    """A ``save_to_disk`` folder memory-mapped file by file (in file-name order), with the row
    offsets of each file, so that any row is found without reading the others.

    ValueError (naming the file and the fix) for a missing folder, no .arrow file, a file that
    ``state.json`` lists but is absent, a truncated or corrupt file, or a missing column.
    """

    def __init__(self, folder: Path, *, columns: Sequence[str]) -> None:
        self.folder = Path(folder)
        files = _arrow_files(self.folder)
        self.files: list[Path] = files
        self.tables: list[pa.Table] = [_map_table(f, columns) for f in files]
        self.starts = np.cumsum([0] + [t.num_rows for t in self.tables]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, row: int) -> tuple[int, int]:
        """(file number, row in that file) of global row `row`."""
        assert 0 <= row < len(self), f"row {row} outside 0..{len(self) - 1}"
        file = bisect_right(self.starts, row) - 1
        return file, row - self.starts[file]

    def cell(self, column: str, row: int) -> pa.Buffer:
        """The bytes of a binary cell, zero copy from the mapping."""
        file, local = self.locate(row)
        return self.tables[file].column(column)[local].as_buffer()

    def int_column(self, column: str) -> np.ndarray:
        """A whole integer column (the small COCO timestep column) as int64."""
        parts = [t.column(column).to_numpy().astype(np.int64) for t in self.tables]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def where(self, row: int) -> str:
        """'<file> row <n>' for messages."""
        file, local = self.locate(row)
        return f"{self.files[file]} row {local}"


def _arrow_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder} does not exist; {PREPARE_FIX}")
    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise ValueError(f"{folder} holds no .arrow file; {PREPARE_FIX}")
    state = folder / "state.json"
    if state.is_file():
        listed = [d["filename"] for d in json.loads(state.read_text()).get("_data_files", [])]
        if absent := [name for name in listed if not (folder / name).is_file()]:
            raise ValueError(
                f"{folder / absent[0]} is missing ({len(absent)} of the {len(listed)} files "
                f"state.json lists); {PREPARE_FIX}"
            )
    return files


def _map_table(path: Path, columns: Sequence[str]) -> pa.Table:
    try:
        with pa.memory_map(str(path)) as source:  # the table keeps the mapping alive
            table = pa.ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(
            f"{path} is truncated or corrupt ({str(exc).splitlines()[0]}); {PREPARE_FIX}"
        ) from None
    if missing := [c for c in columns if c not in table.column_names]:
        raise ValueError(
            f"{path} has no column {missing[0]!r} (it has {', '.join(table.column_names)}); "
            f"{PREPARE_FIX}"
        )
    return table


def npy_bf16_cells(rows: ArrowRows, column: str, indices: Sequence[int]) -> np.ndarray:
    """The cells `indices` of `column` decoded to one float32 array (len(indices), *shape).

    ValueError naming the file and row when a cell is not a .npy of uint16 or its shape differs
    from the first cell's."""
    arrays, shape = [], None
    for row in indices:
        cell = rows.cell(column, row)
        try:
            dtype, cell_shape, offset = read_npy_header(cell)
        except ValueError as exc:
            raise ValueError(
                f"{rows.where(row)}: {column} is not a valid .npy ({exc}); {PREPARE_FIX}"
            ) from None
        if dtype != _NPY_DTYPE:
            raise ValueError(
                f"{rows.where(row)}: {column} holds {dtype}, expected uint16 (bfloat16 bits); "
                f"{PREPARE_FIX}"
            )
        shape = shape or cell_shape
        if cell_shape != shape or len(cell) - offset != 2 * int(np.prod(shape)):
            raise ValueError(
                f"{rows.where(row)}: {column} has shape {cell_shape} ({len(cell) - offset} bytes)"
                f", other rows {shape}; {PREPARE_FIX}"
            )
        arrays.append(np.frombuffer(cell, dtype=_NPY_DTYPE, offset=offset).reshape(shape))
    return bf16_bits_to_float32(np.stack(arrays))


# --------------------------------------------------------------------- writing (save_to_disk)

_FEATURE_TYPES = {pa.string(): "string", pa.binary(): "binary", pa.int32(): "int32"}


def write_arrow_dataset(
    folder: Path, columns: Mapping[str, pa.Array], *, rows_per_file: int
) -> None:
    """Write `columns` as ``datasets.save_to_disk`` does: ``data-XXXXX-of-NNNNN.arrow`` stream
    files of at most `rows_per_file` rows (features in the schema's ``huggingface`` metadata),
    ``state.json`` and ``dataset_info.json`` (keys sorted as ``datasets`` writes them)."""
    features = {
        name: {"dtype": _FEATURE_TYPES[array.type], "_type": "Value"}
        for name, array in columns.items()
    }
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    table = pa.table(dict(columns)).replace_schema_metadata(metadata)
    n = max(1, -(-table.num_rows // rows_per_file))
    names = [f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        part = table.slice(i * rows_per_file, rows_per_file)
        with pa.OSFile(str(folder / name), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(part)
    fingerprint = hashlib.sha256(json.dumps(features).encode())
    for name in names:
        fingerprint.update((folder / name).read_bytes())
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": fingerprint.hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))


# --------------------------------------------------------------------- synthetic sets

AUTOENCODER_SHIFT, AUTOENCODER_SCALE = 0.1159, 0.3611  # TT flux_schnell_mlperf toml
SYNTHETIC_CLASSES = 16
EVAL_TIMESTEPS = 8  # TT scripts/coco_to_webdataset.py: timestep = index % 8


def write_synthetic_flux(
    root: Path,
    *,
    train_rows: int,
    eval_rows: int,
    text_tokens: int,
    text_dim: int,
    clip_dim: int,
    latent_channels: int = 16,
    latent_size: int,
    seed: int,
    rows_per_file: int = 1000,
) -> None:
    """Write a learnable stand-in for the flux1 data into `root`, in the MLPerf layout
    (``cc12m_preprocessed/``, ``coco_preprocessed/`` with timestep = index % 8,
    ``empty_encodings/``), atomically: `root` appears only once complete.

    Design: 16 classes. Each class has a fixed smooth latent (a few low-frequency cosines per
    channel, normalised so that the scaled latent (z - 0.1159) * 0.3611 has mean 0 and std 1, as
    the real VAE latents do after scaling), fixed random T5 token embeddings and a fixed CLIP
    vector. A row of class k has mean = the class latent + 5 % noise, logvar = log(0.01) (a
    posterior std of 0.1), and the class's text + 10 % noise. The text thus tells the model which
    image to denoise to: the rectified-flow loss falls well below that of a text-blind model.
    Same seed, same bytes.
    """
    rng = np.random.default_rng(seed)
    shape = (SYNTHETIC_CLASSES, latent_channels, latent_size, latent_size)
    latents = AUTOENCODER_SHIFT + _smooth_fields(rng, shape) / AUTOENCODER_SCALE
    classes = {  # in the reference's column order
        T5: rng.standard_normal((SYNTHETIC_CLASSES, text_tokens, text_dim), np.float32),
        CLIP: rng.standard_normal((SYNTHETIC_CLASSES, clip_dim), np.float32),
        MEAN: latents,
    }
    noise = {MEAN: 0.05 / AUTOENCODER_SCALE, T5: 0.1, CLIP: 0.1}
    with atomic_path(root, directory=True) as tmp:
        for folder, rows in ((TRAIN_DIR, train_rows), (EVAL_DIR, eval_rows)):
            label = rng.integers(SYNTHETIC_CLASSES, size=rows)
            columns: dict[str, pa.Array] = {KEY: pa.array([f"{i:09d}" for i in range(rows)])}
            for name, table in classes.items():
                cells = []
                for k in label:
                    value = table[k] + noise[name] * rng.standard_normal(table[k].shape)
                    cells.append(encode_bf16_npy(value))
                columns[name] = pa.array(cells, pa.binary())
            logvar = encode_bf16_npy(np.full(shape[1:], np.log(0.01), np.float32))
            columns[LOGVAR] = pa.array([logvar] * rows, pa.binary())
            if folder == EVAL_DIR:
                columns[TIMESTEP] = pa.array(np.arange(rows) % EVAL_TIMESTEPS, pa.int32())
            write_arrow_dataset(tmp / folder, columns, rows_per_file=rows_per_file)
        (tmp / EMPTY_DIR).mkdir()
        empty = {T5_EMPTY: (1, text_tokens, text_dim), CLIP_EMPTY: (1, clip_dim)}
        for name, empty_shape in empty.items():
            np.save(tmp / EMPTY_DIR / name, rng.standard_normal(empty_shape).astype(np.float16))


def _smooth_fields(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random fields of `shape` (..., H, W), each a sum of 4 cosines of 1 or 2 periods across
    the image (0 to 2 down it), with mean 0 and std 1 over its H x W."""
    *lead, h, w = shape
    y, x = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    fields = np.zeros(shape)
    for _ in range(4):
        fy = rng.integers(0, 3, size=(*lead, 1, 1))
        fx = rng.integers(1, 3, size=(*lead, 1, 1))  # never constant
        phase = rng.uniform(0, 2 * np.pi, size=(*lead, 1, 1))
        fields += np.cos(2 * np.pi * (fy * y + fx * x) + phase)
    fields -= fields.mean(axis=(-2, -1), keepdims=True)
    std = fields.std(axis=(-2, -1), keepdims=True)
    return (fields / np.where(std > 0, std, 1.0)).astype(np.float32)
