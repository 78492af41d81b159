from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from geotag.errors import WorkspaceError
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.workspace import Workspace
from tests.conftest import snapshot


def test_sample_writes_points_and_records_settings(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    run_grid(ws, country="Fiji", cell_km=50)
    result = run_sample(ws, per_cell=4, seed=9)
    points = pd.read_parquet(ws.points_parquet)
    assert list(points.columns) == ["point_id", "cell_id", "lat", "lon"]
    assert len(points) == 4 * result.cells
    assert points["lon"].between(-180, 180).all()
    with Image.open(ws.points_png) as image:
        assert image.format == "PNG"
    settings = ws.stage_settings("sample")
    assert settings == {
        "per_cell": 4,
        "seed": 9,
        "points": len(points),
        "grid_id": ws.stage_settings("grid")["grid_id"],
    }


def test_default_is_ten_per_cell_and_total_is_recorded(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    run_grid(ws, bbox="10,40,12,42", cell_km=50)
    result = run_sample(ws)
    assert len(result.points) == 10 * result.cells
    assert ws.stage_settings("sample")["per_cell"] == 10
    run_sample(ws, total=123)
    assert len(pd.read_parquet(ws.points_parquet)) == 123
    assert ws.stage_settings("sample")["total"] == 123
    assert "per_cell" not in ws.stage_settings("sample")


def test_sample_without_a_grid_says_what_to_run(workspace_dir: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"grid.parquet not found .*run `geotag grid` first"):
        run_sample(Workspace(workspace_dir), per_cell=3)
    assert not workspace_dir.exists()


def test_bad_quota_keeps_earlier_points(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    run_grid(ws, bbox="10,40,12,42", cell_km=50)
    run_sample(ws, per_cell=2)
    before = snapshot(workspace_dir)
    with pytest.raises(Exception, match="--per-cell must be a positive whole number"):
        run_sample(ws, per_cell=0)
    assert snapshot(workspace_dir) == before
