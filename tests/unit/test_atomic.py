"""Files and folders written under a temporary name and renamed when complete."""

from pathlib import Path

import pytest

from trainperf.atomic import atomic_path, temporary_sibling, write_text_atomic


def test_a_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "score.json"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            assert path.read_text() == "old"  # not replaced while being written
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert not temporary_sibling(path).exists()
    assert write_text_atomic(path, "new") == path and path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["score.json"]


def test_a_folder_replaces_the_old_one_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "model"
    with atomic_path(out, directory=True) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(out, directory=True) as tmp:
            (tmp / "b").write_text("2")
            raise KeyboardInterrupt
    assert [p.name for p in out.iterdir()] == ["a"]  # the old folder, untouched
    with atomic_path(out, directory=True) as tmp:
        (tmp / "b").write_text("2")
    assert [p.name for p in out.iterdir()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no leftovers
