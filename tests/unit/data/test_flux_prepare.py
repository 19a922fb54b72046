"""flux1's data through prepare: the synthetic set of the reduced scales (cached, sized from
the model flavor) and the MLCommons download of the three preprocessed sets, served from
127.0.0.1, with an interrupted and a corrupt download. The flux1 spec is a stub here."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainperf.config import Config, DataConfig, ModelConfig, TrainConfig
from trainperf.data.flux import FluxData
from trainperf.data.flux_format import write_synthetic_flux
from trainperf.data.flux_prepare import FluxSources
from trainperf.data.prepare import (
    PrepareOptions,
    data_paths,
    missing_files,
    prepare_benchmark,
    prepare_data,
)
from trainperf.data.transfer import DownloadError
from trainperf.models.flux import FAMILY

ROWS = (60, 16)
NAMES = {
    "cc12m_preprocessed": "flux-1-cc12m-preprocessed",
    "coco_preprocessed": "flux-1-coco-preprocessed",
    "empty_encodings": "flux-1-empty-encodings",
}


def config(source: str, data_dir: Path | None = None) -> Config:
    train = TrainConfig(seq_len=24, seed=1, eval_samples=16, warmup_steps=0)
    data = DataConfig(source=source, data_dir=str(data_dir) if data_dir else None)
    return Config("flux1", "tiny", model=ModelConfig(flavor="debug"), train=train, data=data)


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """A stand-in for the flux1 spec (its family, data rules and config), registered."""
    from trainperf import benchmarks

    stub = SimpleNamespace(
        name="flux1",
        family_name="flux",
        family=FAMILY,
        data=SimpleNamespace(dataset_uri=None, train_samples=ROWS[0], train_prefixes=()),
        eval=SimpleNamespace(eval_samples=ROWS[1]),
        config=lambda scale: config("cc12m"),
        check_trainable=lambda: None,  # BenchmarkSpec's: flux1 is trainable
    )
    monkeypatch.setitem(benchmarks.BENCHMARKS, "flux1", stub)
    monkeypatch.setenv("TRAINPERF_HOME", str(tmp_path / "home"))
    return stub


def test_builtin_set_is_built_once_from_the_flavor(spec: SimpleNamespace, capsys) -> None:
    cfg = config("builtin")
    paths = data_paths(cfg)
    assert paths.root.name == "flux-synthetic-t8x48-c32-l4x8-r4096-256"
    assert (paths.train_prefix.name, paths.valid_prefix.name, paths.tokenizer.name) == (
        "cc12m_preprocessed", "coco_preprocessed", "empty_encodings"
    )  # fmt: skip
    assert missing_files(paths)
    prepare_data(cfg)
    assert "building the synthetic flux1 set (4096 + 256 rows)" in capsys.readouterr().err
    assert not missing_files(paths)
    stamp = (paths.train_prefix / "state.json").stat().st_mtime_ns
    prepare_data(cfg)  # cached: nothing rewritten
    assert (paths.train_prefix / "state.json").stat().st_mtime_ns == stamp
    data = FluxData(cfg, paths, FAMILY.model_config(cfg))
    assert (data.train_samples, len(data.sets.eval)) == (4096, 256)


def test_missing_downloaded_data_says_how_to_prepare(spec: SimpleNamespace, tmp_path) -> None:
    with pytest.raises(
        ValueError, match=r"flux1 data not found in .* run `trainperf prepare flux1"
    ):
        prepare_data(config("cc12m", tmp_path / "none"))


class _Storage(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; ``cut``: paths whose next answer stops halfway."""

    cut: set[str] = set()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path in self.cut:
            self.cut.discard(self.path)
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """MLCommons layout on 127.0.0.1: metadata/<name>.uri + .md5, datasets/<name>/<files>."""
    root = tmp_path / "r2"
    sets = tmp_path / "sets"
    write_synthetic_flux(sets, train_rows=ROWS[0], eval_rows=ROWS[1], seed=0, text_tokens=8,
                         text_dim=48, clip_dim=32, latent_channels=4, latent_size=8,
                         rows_per_file=25)  # fmt: skip
    handler = lambda *a, **k: _Storage(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (root / "metadata").mkdir(parents=True)
    for folder, name in NAMES.items():
        shutil.copytree(sets / folder, root / "datasets" / name)
        files = sorted((root / "datasets" / name).iterdir())
        lines = [f"{hashlib.md5(f.read_bytes()).hexdigest()}  ./{f.name}\n" for f in files]
        (root / "metadata" / f"{name}.md5").write_text("".join(lines))
        (root / "metadata" / f"{name}.uri").write_text(f"{base}/datasets/{name}\n")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield base, root
    server.shutdown()
    server.server_close()


def _prepare(spec: SimpleNamespace, base: str, folder: Path, **options) -> list[str]:
    lines: list[str] = []
    uri = f"{base}/metadata/flux-1-coco-preprocessed.uri"  # the other two are read beside it
    opts = PrepareOptions(dataset_uri=uri, workers=2, **options)
    prepare_benchmark(spec, config("cc12m", folder), opts, log=lines.append)
    return lines


def test_download_verify_and_read(spec, storage, tmp_path: Path) -> None:
    base, _ = storage
    folder = tmp_path / "flux data"
    _Storage.cut = {"/datasets/flux-1-cc12m-preprocessed/data-00001-of-00003.arrow"}
    lines = _prepare(spec, base, folder)
    assert not _Storage.cut  # the interrupted file was resumed
    text = "\n".join(lines)
    assert "MD5 verified: 5 file(s) of flux-1-cc12m-preprocessed.md5" in text
    assert "training: 60 rows in 3 files" in text and "validation: 16 rows in 1 files" in text
    cfg = config("cc12m", folder)
    assert not missing_files(data_paths(cfg))
    data = FluxData(cfg, data_paths(cfg), FAMILY.model_config(cfg))
    assert data.train_batch([59])["mean"].shape == (1, 4, 8, 8)
    again = _prepare(spec, base, folder, verify_only=True)
    assert "training: 60 rows in 3 files" in "\n".join(again)


def test_corrupt_download_is_refused(spec, storage, tmp_path: Path) -> None:
    base, root = storage
    arrow = root / "datasets" / "flux-1-coco-preprocessed" / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[:-100])  # served bytes no longer match the .md5
    with pytest.raises(
        DownloadError, match=r"data-00000-of-00001.arrow: MD5 .* after two downloads"
    ):
        _prepare(spec, base, tmp_path / "a")


def test_truncated_set_published_with_its_md5_is_refused(spec, storage, tmp_path: Path) -> None:
    base, root = storage
    name = "flux-1-cc12m-preprocessed"
    arrow = root / "datasets" / name / "data-00002-of-00003.arrow"
    arrow.write_bytes(arrow.read_bytes()[:300])
    lines = [f"{hashlib.md5(f.read_bytes()).hexdigest()}  ./{f.name}\n"
             for f in sorted((root / "datasets" / name).iterdir())]  # fmt: skip
    (root / "metadata" / f"{name}.md5").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"data-00002-of-00003.arrow is truncated or corrupt"):
        _prepare(spec, base, tmp_path / "b")


def test_sources_beside_one_uri() -> None:
    sources = FluxSources.beside("http://h/meta/flux-1-cc12m-preprocessed.uri")
    assert sources.eval_uri == "http://h/meta/flux-1-coco-preprocessed.uri"
    assert sources.empty_uri == "http://h/meta/flux-1-empty-encodings.uri"
    assert FluxSources().train_uri.startswith("https://training.mlcommons-storage.org/metadata/")


def test_raw_checks_its_folders_before_any_encoder_with_exit_2(spec, capsys) -> None:
    from trainperf.cli import main

    assert main(["prepare", "flux1", "--raw", "/nonexistent/images"]) == 2
    out = capsys.readouterr()
    assert "/nonexistent/images/cc12m not found" in out.out + out.err
    assert "Traceback" not in out.out + out.err
