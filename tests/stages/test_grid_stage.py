from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from geotag.errors import InputError, WorkspaceError
from geotag.gridfile import load_grid
from geotag.stages.grid import run_grid
from geotag.workspace import Workspace
from tests.conftest import snapshot


def test_grid_writes_every_file_in_standard_formats(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    result = run_grid(ws, country="Sri Lanka", cell_km=40, shape="square")
    assert set(result.files) == {ws.region_parquet, ws.grid_parquet, ws.grid_geojson, ws.grid_png}

    cells = gpd.read_parquet(ws.grid_parquet)
    assert cells.crs.to_epsg() == 4326
    assert list(cells.columns) == [
        "cell_id",
        "center_lat",
        "center_lon",
        "area_km2",
        "region_fraction",
        "geometry",
    ]
    assert str(cells["cell_id"].dtype) == "int64"
    geo = json.loads(pq.read_schema(ws.grid_parquet).metadata[b"geo"])
    assert geo["primary_column"] == "geometry"  # GeoParquet metadata for QGIS/DuckDB

    from_geojson = gpd.read_file(ws.grid_geojson)
    assert len(from_geojson) == len(cells)
    assert from_geojson["cell_id"].tolist() == cells["cell_id"].tolist()
    assert from_geojson.geometry.geom_equals_exact(cells.geometry, tolerance=1e-6).all()

    with Image.open(ws.grid_png) as image:
        assert image.format == "PNG" and min(image.size) >= 800

    settings = ws.stage_settings("grid")
    assert settings["region_source"] == "country:LKA"
    assert settings["shape"] == "square" and settings["cell_km"] == 40
    assert settings["cells"] == len(cells)
    assert settings["crs"].startswith("+proj=laea")
    assert len(settings["grid_id"]) == 12


def test_load_grid_round_trips(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    made = run_grid(ws, bbox="10,40,12,42", cell_km=25).grid
    loaded = load_grid(ws)
    assert loaded.projection == made.projection
    assert loaded.cells["cell_id"].tolist() == made.cells["cell_id"].tolist()
    assert loaded.region_projected.area == pytest.approx(made.region_projected.area, rel=1e-9)
    assert loaded.cell_km == 25 and loaded.shape == "hex"


def test_rerun_with_the_same_settings_gives_the_same_grid(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    run_grid(ws, country="Fiji", cell_km=50)
    first = ws.grid_parquet.read_bytes(), ws.stage_settings("grid")["grid_id"]
    run_grid(ws, country="Fiji", cell_km=50)
    assert (ws.grid_parquet.read_bytes(), ws.stage_settings("grid")["grid_id"]) == first


def test_bad_input_writes_nothing(workspace_dir: Path) -> None:
    ws = Workspace(workspace_dir)
    run_grid(ws, country="Sri Lanka", cell_km=50)
    before = snapshot(workspace_dir)
    for kwargs in (
        {"cell_km": -1},
        {"cell_km": 0.01},
        {"country": "Narnia"},
        {"bbox": "5,5,1,1"},
        {"region_file": workspace_dir / "nope.geojson"},
        {"shape": "circle"},
    ):
        with pytest.raises(InputError):
            run_grid(ws, **{"cell_km": 50, **kwargs})
        assert snapshot(workspace_dir) == before, kwargs


def test_workspace_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "ws"
    target.write_text("precious")
    with pytest.raises(WorkspaceError, match="is a file, not a folder"):
        run_grid(Workspace(target), cell_km=100)
    assert target.read_text() == "precious"
