from __future__ import annotations

from pathlib import Path

import pytest

from geotag.errors import DataError, WorkspaceError
from geotag.workspace import Workspace


def test_creating_a_workspace_touches_nothing(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "new")
    assert ws.grid_parquet == tmp_path / "new" / "grid.parquet"
    assert ws.run_dir("r1") == tmp_path / "new" / "runs" / "r1"
    assert not (tmp_path / "new").exists()


def test_record_keeps_other_stages_and_drops_none(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.record("grid", {"cell_km": 100.0, "shape": "hex", "h3_resolution": None})
    ws.record("sample", {"per_cell": 5, "seed": 0, "where": Path("a/b")})
    ws.record("grid", {"cell_km": 50.0, "shape": "square"})
    assert ws.stage_settings("grid") == {"cell_km": 50.0, "shape": "square"}
    assert ws.stage_settings("sample") == {"per_cell": 5, "seed": 0, "where": "a/b"}
    assert ws.stage_settings("train") == {}
    assert not list(tmp_path.glob(".geotag.toml*")), "temporary files must not linger"


def test_corrupt_settings_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "geotag.toml").write_text("[grid\ncell_km = ")
    with pytest.raises(DataError, match=r"geotag\.toml is not valid TOML"):
        Workspace(tmp_path).settings()


def test_a_file_is_not_a_workspace(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(WorkspaceError, match="is a file, not a folder"):
        Workspace(target).prepare()
    with pytest.raises(WorkspaceError, match="is a file, not a folder"):
        Workspace(target).require(target / "grid.parquet", "run geotag grid first")


def test_require_names_the_missing_file_and_the_fix(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    with pytest.raises(WorkspaceError, match=r"grid.parquet not found .*; run `geotag grid`"):
        ws.require(ws.grid_parquet, "run `geotag grid` first")
