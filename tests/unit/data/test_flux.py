"""flux1's data: the npy-bf16 cells, the Arrow reader on a synthetic set in the MLPerf layout,
the per-sample randomness of its batches, and one clear message per kind of bad input."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from trainperf.config import Config, DataConfig, TrainConfig
from trainperf.data.flux import CAPTION_DROPOUT_PROB, FluxData, read_flux, verify_flux
from trainperf.data.flux_format import (
    AUTOENCODER_SCALE,
    AUTOENCODER_SHIFT,
    ArrowRows,
    bf16_bits_to_float32,
    encode_bf16_npy,
    write_arrow_dataset,
    write_synthetic_flux,
)
from trainperf.data.prepare import DataPaths
from trainperf.models.flux.model import get_flux_config

TRAIN_ROWS, EVAL_ROWS = 96, 40
SIZES = dict(text_tokens=8, text_dim=48, clip_dim=32, latent_channels=4, latent_size=8)  # debug


@pytest.fixture(scope="module")
def flux_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux") / "data"
    write_synthetic_flux(
        root, train_rows=TRAIN_ROWS, eval_rows=EVAL_ROWS, seed=0, rows_per_file=25, **SIZES
    )
    return root


def paths_of(root: Path) -> DataPaths:
    return DataPaths(
        root, root / "cc12m_preprocessed", root / "coco_preprocessed", root / "empty_encodings"
    )


def config(seed: int = 7, eval_samples: int = 32) -> Config:
    train = TrainConfig(seq_len=24, seed=seed, eval_samples=eval_samples, warmup_steps=0)
    return Config("flux1", "tiny", train=train, data=DataConfig(source="builtin"))


def reader(root: Path, seed: int = 7, eval_samples: int = 32) -> FluxData:
    return read_flux(config(seed, eval_samples), paths_of(root), get_flux_config("debug"))


def test_bf16_npy_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((5, 7)).astype(np.float32) * 100
    bits = np.load(io.BytesIO(encode_bf16_npy(values)))
    assert bits.dtype == np.uint16 and bits.shape == (5, 7)
    decoded = bf16_bits_to_float32(bits)
    expected = torch.from_numpy(values).to(torch.bfloat16)  # torch's rounding
    np.testing.assert_array_equal(decoded, expected.float().numpy())
    assert (bits == expected.view(torch.int16).numpy().view(np.uint16)).all()
    again = np.load(io.BytesIO(encode_bf16_npy(decoded)))
    np.testing.assert_array_equal(bf16_bits_to_float32(again), decoded)


def test_synthetic_set_is_the_mlperf_layout(flux_root: Path) -> None:
    train = flux_root / "cc12m_preprocessed"
    assert sorted(p.name for p in train.glob("*.arrow")) == [
        f"data-{i:05d}-of-00004.arrow" for i in range(4)
    ]
    state = json.loads((train / "state.json").read_text())
    names = [f"data-{i:05d}-of-00004.arrow" for i in range(4)]
    assert [d["filename"] for d in state["_data_files"]] == names
    info = json.loads((flux_root / "coco_preprocessed" / "dataset_info.json").read_text())
    assert info["features"]["timestep"] == {"dtype": "int32", "_type": "Value"}
    with pa.memory_map(str(train / "data-00000-of-00004.arrow")) as f:
        schema = pa.ipc.open_stream(f).schema
    assert schema.names == ["__key__", "t5_encodings", "clip_encodings", "mean", "logvar"]
    assert schema.field("mean").type == pa.binary()
    empty = np.load(flux_root / "empty_encodings" / "t5_empty.npy")
    assert empty.dtype == np.float16 and empty.shape == (1, 8, 48)
    assert len(ArrowRows(train, columns=["mean"])) == TRAIN_ROWS


def test_synthetic_set_loads_with_hf_datasets(flux_root: Path) -> None:
    datasets = pytest.importorskip("datasets")
    coco = datasets.load_from_disk(str(flux_root / "coco_preprocessed"))
    assert len(coco) == EVAL_ROWS and coco[11]["timestep"] == 3
    bits = np.load(io.BytesIO(coco[0]["mean"]))
    np.testing.assert_array_equal(
        bf16_bits_to_float32(bits), reader(flux_root).eval_batch([0])["mean"][0].numpy()
    )


def test_synthetic_set_is_deterministic_and_scaled_like_vae_latents(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_synthetic_flux(tmp_path / name, train_rows=20, eval_rows=8, seed=3, **SIZES)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    mean = reader(tmp_path / "a", eval_samples=8).train_batch(range(20))["mean"]
    scaled = (mean - AUTOENCODER_SHIFT) * AUTOENCODER_SCALE
    assert abs(scaled.mean()) < 0.1 and 0.9 < scaled.std() < 1.1


def test_batches_have_the_contract_shapes_and_stored_order(flux_root: Path) -> None:
    data = reader(flux_root)
    assert data.train_samples == TRAIN_ROWS and data.eval_size == 32
    batch = data.train_batch([0, 1, TRAIN_ROWS + 2])
    shapes = {k: tuple(v.shape) for k, v in batch.items()}
    assert shapes == {
        "mean": (3, 4, 8, 8), "logvar": (3, 4, 8, 8), "eps": (3, 4, 8, 8),
        "noise": (3, 4, 8, 8), "t5": (3, 8, 48), "clip": (3, 32), "t": (3,),
    }  # fmt: skip
    assert all(v.dtype == torch.float32 for v in batch.values())
    rows = ArrowRows(flux_root / "cc12m_preprocessed", columns=["mean"])
    for i, row in enumerate([0, 1, 2]):  # index TRAIN_ROWS + 2 is row 2 again (next epoch)
        bits = np.load(io.BytesIO(rows.cell("mean", row).to_pybytes()))
        np.testing.assert_array_equal(batch["mean"][i].numpy(), bf16_bits_to_float32(bits))
    assert torch.allclose(batch["logvar"], torch.tensor(math.log(0.01)), atol=0.02)
    assert ((batch["t"] >= 0) & (batch["t"] < 1)).all()
    assert not torch.equal(batch["noise"][0], batch["noise"][2])  # another epoch, other noise


def test_eval_reads_rows_in_order_with_timestep_over_8(flux_root: Path) -> None:
    data = reader(flux_root)
    data.begin_eval()
    batch = data.eval_batch(range(16))
    assert batch["t"].tolist() == [(i % 8) / 8 for i in range(16)]
    full = data.eval_batch(range(32))
    torch.testing.assert_close(full["t5"][:16], batch["t5"], rtol=0, atol=0)  # no dropout
    empty = data.sets.empty_t5
    assert not any(torch.equal(full["t5"][i], empty) for i in range(32))


def test_caption_dropout_rate_is_ten_percent(flux_root: Path) -> None:
    data, n = reader(flux_root), 4000
    batch = data.train_batch(range(n))
    t5_dropped = (batch["t5"] == data.sets.empty_t5).flatten(1).all(1)
    clip_dropped = (batch["clip"] == data.sets.empty_clip).all(1)
    assert torch.equal(t5_dropped, clip_dropped)  # both or neither
    bound = 5 * math.sqrt(n * CAPTION_DROPOUT_PROB * (1 - CAPTION_DROPOUT_PROB))  # 5 sigma
    assert abs(int(t5_dropped.sum()) - n * CAPTION_DROPOUT_PROB) < bound
    assert abs(batch["t"].mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(batch["noise"].mean()) < 0.01 and abs(batch["eps"].std() - 1) < 0.01


def test_randomness_is_per_sample_whatever_the_batching(flux_root: Path) -> None:
    whole = reader(flux_root).train_batch(range(8))
    other = reader(flux_root)
    parts = [other.train_batch(idx) for idx in ([5, 6, 7], [0], [1, 2, 3, 4])]
    for key, value in whole.items():
        joined = torch.cat([parts[1][key], parts[2][key], parts[0][key]])
        assert torch.equal(value, joined), key
    assert not torch.equal(reader(flux_root, seed=8).train_batch(range(8))["noise"], whole["noise"])


def test_eval_noise_is_fresh_each_pass_and_reproducible(flux_root: Path) -> None:
    a, b = reader(flux_root), reader(flux_root)
    a.begin_eval()
    b.begin_eval()
    first = a.eval_batch(range(8))
    assert torch.equal(first["noise"], b.eval_batch(range(8))["noise"])
    assert torch.equal(first["eps"][4:], a.eval_batch(range(4, 8))["eps"])
    a.begin_eval()
    second = a.eval_batch(range(8))
    assert not torch.equal(first["noise"], second["noise"])
    assert not torch.equal(first["eps"], second["eps"])
    assert torch.equal(first["mean"], second["mean"]) and torch.equal(first["t"], second["t"])


# ------------------------------------------------------------------------- bad inputs


@pytest.fixture
def copy(flux_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(flux_root, tmp_path / "data")
    return tmp_path / "data"


def test_missing_folder_and_no_arrow_files(copy: Path) -> None:
    shutil.rmtree(copy / "coco_preprocessed")
    with pytest.raises(
        ValueError, match=r"coco_preprocessed does not exist; re-run `trainperf prepare"
    ):
        reader(copy)
    (copy / "coco_preprocessed").mkdir()
    with pytest.raises(ValueError, match=r"coco_preprocessed holds no \.arrow file; re-run"):
        reader(copy)


def test_file_listed_in_state_json_but_absent(copy: Path) -> None:
    (copy / "cc12m_preprocessed" / "data-00002-of-00004.arrow").unlink()
    expected = r"data-00002-of-00004.arrow is missing \(1 of the 4 files state.json lists\)"
    with pytest.raises(ValueError, match=expected):
        reader(copy)


def test_truncated_arrow_file(copy: Path) -> None:
    path = copy / "cc12m_preprocessed" / "data-00001-of-00004.arrow"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expected = r"data-00001-of-00004.arrow is truncated or corrupt \(.*\); re-run"
    with pytest.raises(ValueError, match=expected):
        reader(copy)


def _rewrite(folder: Path, change: dict[str, list]) -> None:
    """Replace `folder`'s set by one file whose columns are `change`d (binary/int32 values)."""
    tables = ArrowRows(folder, columns=[]).tables
    columns = {
        name: pa.concat_arrays([t.column(name).combine_chunks() for t in tables])
        for name in tables[0].column_names
    }
    for name, values in change.items():
        if values is None:
            del columns[name]
        else:
            columns[name] = pa.array(values, columns[name].type)
    shutil.rmtree(folder)
    write_arrow_dataset(folder, columns, rows_per_file=1000)


def test_missing_column(copy: Path) -> None:
    _rewrite(copy / "coco_preprocessed", {"timestep": None})
    expected = r"data-00000-of-00001.arrow has no column 'timestep' \(it has __key__, t5_enc"
    with pytest.raises(ValueError, match=expected + r"odings, clip_encodings, mean, logvar\)"):
        reader(copy)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (b"not a numpy file", r"row 5: mean is not a valid \.npy"),
        (
            encode_bf16_npy(np.zeros((4, 8, 8))).replace(b"<u2", b"<f2"),
            r"row 5: mean holds float16, expected uint16 \(bfloat16 bits\)",
        ),
        (
            encode_bf16_npy(np.zeros((4, 4, 16))),
            r"row 5: mean has shape \(4, 4, 16\) .*, other rows \(4, 8, 8\)",
        ),
    ],
)
def test_bad_cells(copy: Path, cell: bytes, expected: str) -> None:
    folder = copy / "cc12m_preprocessed"
    means = [ArrowRows(folder, columns=[]).cell("mean", i).to_pybytes() for i in range(TRAIN_ROWS)]
    means[5] = cell
    _rewrite(folder, {"mean": means})
    data = reader(copy)
    data.train_batch([4])
    with pytest.raises(ValueError, match=expected + r".*; re-run `trainperf prepare flux1`"):
        data.train_batch([4, 5])


def test_sets_of_other_shapes_are_refused(copy: Path, tmp_path: Path) -> None:
    sizes = dict(SIZES, text_tokens=16)
    write_synthetic_flux(tmp_path / "other", train_rows=4, eval_rows=4, seed=0, **sizes)
    shutil.rmtree(copy / "coco_preprocessed")
    shutil.copytree(tmp_path / "other" / "coco_preprocessed", copy / "coco_preprocessed")
    expected = r"coco_preprocessed has t5 \(16, 48\), .* but .*cc12m_preprocessed has t5 \(8, 48"
    with pytest.raises(ValueError, match=expected):
        reader(copy)


def test_empty_encodings_of_another_dtype(copy: Path) -> None:
    np.save(copy / "empty_encodings" / "clip_empty.npy", np.zeros((1, 32), np.float32))
    expected = r"clip_empty.npy holds float32 \(1, 32\), expected float16 \(1, 32\)"
    with pytest.raises(ValueError, match=expected):
        reader(copy)


def test_model_mismatch_names_both_shapes(flux_root: Path) -> None:
    expected = (
        r"the data has t5 \(8, 48\), clip \(32,\), latent \(4, 8, 8\) but the model wants "
        r"t5 \(256, 4096\), clip \(768,\), latent \(16, H, W\) with H/2 x W/2 = 256 tokens"
    )
    with pytest.raises(ValueError, match=expected):
        read_flux(config(), paths_of(flux_root), get_flux_config("flux-schnell"))


def test_too_many_eval_samples(flux_root: Path) -> None:
    expected = rf"has {EVAL_ROWS} validation rows but train.eval_samples is 64"
    with pytest.raises(ValueError, match=expected):
        reader(flux_root, eval_samples=64)


def test_verify_counts_rows(flux_root: Path) -> None:
    lines = verify_flux(paths_of(flux_root), train_rows=TRAIN_ROWS, eval_rows=EVAL_ROWS)
    assert lines[0].startswith(f"training: {TRAIN_ROWS} rows in 4 files")
    assert "per timestep 0..7: 5 5 5 5 5 5 5 5" in lines[1]
    expected = r"holds 96 rows in 4 files, expected 1,099,776: the download is incomplete"
    with pytest.raises(ValueError, match=expected):
        verify_flux(paths_of(flux_root), train_rows=1_099_776)
