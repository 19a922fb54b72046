"""llama31_8b full-scale data through the CLI: MLCommons-style storage on 127.0.0.1 -> prepare ->
verify -> run (with a tiny model, the real data path), and the bad-input messages."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from trainperf.data import c4
from trainperf.data.indexed import IndexedDataset, write_indexed_dataset

SEQ = 64
DATA = "llama-3-1-8b-preprocessed-c4-dataset"
TOKENIZER = "llama-3-1-8b-tokenizer"


def _publish(root: Path, name: str, files: dict[str, bytes], base: str) -> None:
    """An MLCommons R2 layout: metadata/<name>.uri -> base URL, metadata/<name>.md5 listing."""
    folder = root / "datasets" / name
    lines = []
    for rel, payload in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(payload)
        lines.append(f"{hashlib.md5(payload).hexdigest()}  ./{rel}")
    (root / "metadata").mkdir(exist_ok=True)
    (root / "metadata" / f"{name}.uri").write_text(f"{base}/datasets/{name}\n")
    (root / "metadata" / f"{name}.md5").write_text("\n".join(lines) + "\n")


def _c4_files(tmp: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 2048, size=int(n)) for n in rng.integers(1, 300, size=400)]
    # the rules' evaluation set must fit: 1024 windows of 8192 tokens (+1)
    valid = [rng.integers(0, 2048, size=int(n)) for n in rng.integers(1, 20_000, size=900)]
    write_indexed_dataset(tmp / c4.TRAIN_PREFIX, train, dtype=np.dtype(np.int32))
    write_indexed_dataset(tmp / c4.VALID_PREFIX, valid, dtype=np.dtype(np.int32))
    return {p.name: p.read_bytes() for p in sorted(tmp.iterdir())}


def _tokenizer_files() -> dict[str, bytes]:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return {
        "llama3_1_8b_tokenizer/tokenizer.json": tokenizer.to_str().encode(),
        "llama3_1_8b_tokenizer/tokenizer_config.json": b"{}",
        "llama3_1_8b_tokenizer/model-00001-of-00004.safetensors": b"weights not needed" * 100,
    }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        type(self).requested.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("r2")
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _publish(root, DATA, _c4_files(tmp_path_factory.mktemp("c4")), base)
    _publish(root, TOKENIZER, _tokenizer_files(), base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, root
    server.shutdown()


def _uris(base: str) -> list[str]:
    return [
        f"--dataset-uri={base}/metadata/{DATA}.uri",
        f"--tokenizer-uri={base}/metadata/{TOKENIZER}.uri",
    ]


def test_prepare_verify_and_run(storage, tmp_path: Path, trainperf, mllog) -> None:
    base, _ = storage
    folder = tmp_path / "c4 data"  # a space in the path
    args = ["prepare", "llama31_8b", "--scale", "full", "--data-dir", str(folder), *_uris(base)]
    proc = trainperf(*args, check=True)
    assert "data ready" in proc.stdout and "MD5 verified" in proc.stdout
    data = folder / "data"
    assert IndexedDataset(data / c4.TRAIN_PREFIX).num_tokens > 0
    assert (folder / "tokenizer" / "llama3_1_8b_tokenizer" / "tokenizer.json").is_file()
    assert not list((folder / "tokenizer").rglob("*.safetensors"))  # weights are not needed
    assert "validation: c4-validation-91205-samples.en_text_document" in proc.stdout

    _Quiet.requested.clear()
    again = trainperf(*args, check=True)  # a rerun downloads nothing
    assert not [p for p in _Quiet.requested if "/datasets/" in p], _Quiet.requested
    assert "0 file(s) downloaded" in again.stdout

    # --data-dir without --scale means the real data (full scale)
    verify = trainperf("prepare", "llama31_8b", "--data-dir", str(folder), "--verify", check=True)
    assert "MD5 verified" in verify.stdout

    results = tmp_path / "results"
    run = trainperf(
        "run",
        "llama31_8b",
        "--data-dir",
        str(folder),
        "--seed",
        "3",
        "--results",
        str(results),
        "--no-progress",
        "model.flavor=tiny",
        f"train.seq_len={SEQ}",
        "train.global_batch_size=8",
        "train.micro_batch_size=8",
        "train.max_steps=20",
        "train.warmup_steps=2",
        "train.eval_every_samples=64",
        "train.eval_samples=8",
        "train.target=100",
        "train.dtype=float32",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    events = mllog(results / "result_0.txt")
    keys = [e["key"] for e in events]
    assert "eval_accuracy" in keys and events[-1]["key"] == "run_stop"
    assert events[-1]["metadata"]["status"] == "success"
    cache = list((data / "index_cache").glob("*-shuffle_index.npy"))
    assert len(cache) == 1  # the run's sample order, cached beside the data


def test_corrupted_file_fails_verify(storage, tmp_path: Path, trainperf) -> None:
    base, _ = storage
    folder = tmp_path / "d"
    args = ["prepare", "llama31_8b", "--scale", "full", "--data-dir", str(folder)]
    trainperf(*args, *_uris(base), check=True)
    bin_file = folder / "data" / f"{c4.VALID_PREFIX}.bin"
    payload = bytearray(bin_file.read_bytes())
    payload[100] ^= 0xFF
    bin_file.write_bytes(bytes(payload))
    proc = trainperf(*args, "--verify")
    assert proc.returncode == 2
    assert "c4-validation-91205-samples.en_text_document.bin" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_input(storage, tmp_path: Path, trainperf, monkeypatch) -> None:
    base, _ = storage
    monkeypatch.setenv("TRAINPERF_SKIP_MEMORY_CHECK", "1")  # the data check, on any machine
    full = ["llama31_8b", "--scale", "full", "--data-dir", str(tmp_path / "x")]
    missing = trainperf("run", *full, "--no-progress")
    assert missing.returncode == 2 and "trainperf prepare llama31_8b --scale full" in missing.stderr
    not_uri = trainperf("download", f"{base}/metadata/{DATA}.md5", "-d", str(tmp_path / "y"))
    assert not_uri.returncode == 2 and ".uri" in not_uri.stderr
    nothing = trainperf("download", f"{base}/metadata/nope.uri", "-d", str(tmp_path / "y"))
    assert nothing.returncode == 2 and "nope.uri" in nothing.stderr
    for proc in (missing, not_uri, nothing):
        assert "Traceback" not in proc.stderr
    raw = trainperf(
        "prepare", *full, "--raw-c4", str(tmp_path / "no raw"), "--tokenizer", str(tmp_path)
    )
    assert raw.returncode == 2 and "raw C4 folder" in raw.stderr


def test_download_command(storage, tmp_path: Path, trainperf) -> None:
    base, _ = storage
    dest = tmp_path / "tok"
    proc = trainperf(
        "download",
        f"{base}/metadata/{TOKENIZER}.uri",
        "-d",
        str(dest),
        "--include",
        "*.json",
        check=True,
    )
    assert (dest / "llama3_1_8b_tokenizer" / "tokenizer_config.json").is_file()
    assert not list(dest.rglob("*.safetensors"))
    assert "2 file(s) downloaded" in proc.stdout
    check = trainperf(
        "download",
        f"{base}/metadata/{TOKENIZER}.uri",
        "-d",
        str(dest),
        "--verify",
        "--include",
        "*.json",
        check=True,
    )
    assert "2 file(s) verified" in check.stdout


def test_prepare_405b_says_what_is_not_public(
    storage, tmp_path: Path, trainperf, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = storage
    with socket.socket() as s:  # a Hub endpoint where nothing listens
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    folder = tmp_path / "405b"
    uri = f"--dataset-uri={base}/metadata/{DATA}.uri"
    proc = trainperf("prepare", "llama31_405b", "--data-dir", str(folder), uri)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "members only" in proc.stderr  # the checkpoint: said first, clearly
    assert "mistralai/Mixtral-8x22B-v0.1" in proc.stderr  # the gated tokenizer could not come
    assert (folder / "data" / f"{c4.VALID_PREFIX}.idx").is_file()  # the public data did
    verify = trainperf("prepare", "llama31_405b", "--data-dir", str(folder), "--verify")
    assert verify.returncode == 2
    assert "c4-train.en_7_text_document" in verify.stderr  # 405B trains on en_6 and en_7
