from __future__ import annotations

from pathlib import Path

import pytest

from geotag.atomic import atomic_path, write_text


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "grid.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of a new fi")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.parquet"]


def test_successful_write_replaces_and_keeps_suffix(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "map.png"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == target.parent
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    write_text(target, "again")
    assert target.read_text() == "again"


def test_written_files_get_the_umask_permissions_not_private_ones(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    os.umask(previous)
    write_text(tmp_path / "config.json", "{}")
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o666 & ~previous
