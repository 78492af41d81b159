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


def test_a_run_folder_names_every_path_of_a_run(tmp_path: Path) -> None:
    from geotag.train.bands import Band

    run = Workspace(tmp_path).run_folder("r1")
    root = tmp_path / "runs" / "r1"
    assert run.name == "r1" and run.folder == root
    assert run.config_path == root / "config.json"
    assert run.folds_path == root / "folds.csv"
    assert run.weights(2) == root / "fold-2" / "model.safetensors"
    assert run.last_checkpoint(0) == root / "fold-0" / "last.ckpt"
    assert run.history(1) == root / "fold-1" / "history.csv"
    assert run.metrics_path() == root / "eval" / "metrics.json"
    assert run.eval_dir(Band("bottom", 0.1)) == root / "eval-bottom-0.1"
    table = Path("/data/new places (v2).parquet")
    assert run.eval_dir(images=table) == root / "eval-images-new_places__v2"
    assert run.metrics_path(Band("top", 0.2), table).parent.name == (
        "eval-images-new_places__v2-top-0.2"
    )
    assert run.eval_dir(images=Path("/x/...parquet")).name == "eval-images-table"
    assert run.audit_path == root / "explain" / "audit.json"
    assert not tmp_path.joinpath("runs").exists()
