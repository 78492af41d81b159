from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import typer
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from tests.conftest import modules_loaded_by, snapshot

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: {message}"] or (len(lines) == 1 and message in lines[0]), lines
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output


def test_grid_then_sample_end_to_end(workspace_dir: Path) -> None:
    result = invoke("grid", "-w", str(workspace_dir), "--country", "LK", "--cell-km", "50")
    assert result.exit_code == 0, result.output
    assert "cells" in result.stdout and "km²" in result.stdout
    result = invoke("sample", "-w", str(workspace_dir), "--per-cell", "3", "--seed", "4")
    assert result.exit_code == 0, result.output
    points = pd.read_parquet(workspace_dir / "points.parquet")
    assert len(points) > 0 and points["cell_id"].value_counts().eq(3).all()
    assert f"{len(points):,} in" in result.stdout


def test_workspace_from_environment(tmp_path: Path) -> None:
    target = tmp_path / "from-env"
    result = invoke(
        "grid", "--bbox", "-10,40,-8,42", "--cell-km", "50", env={"GEOTAG_WORKSPACE": str(target)}
    )
    assert result.exit_code == 0, result.output
    assert (target / "grid.parquet").is_file()


def test_h3_reports_the_resolution_it_chose(workspace_dir: Path) -> None:
    result = invoke(
        "grid",
        "-w",
        str(workspace_dir),
        "--country",
        "Sri Lanka",
        "--shape",
        "h3",
        "--cell-km",
        "40",
    )
    assert result.exit_code == 0, result.output
    assert "H3 resolution" in result.stdout and "asked for 40 km" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cell-km", "0"], "--cell-km must be a positive number of kilometres; got 0.0"),
        (["--cell-km", "-3"], "--cell-km must be a positive number of kilometres; got -3.0"),
        (["--cell-km", "nan"], "--cell-km must be a positive number of kilometres; got nan"),
        (["--cell-km", "0.5"], "cells over India (limit 2,000,000); try --cell-km 2 or more"),
        (["--cell-km", "15000"], "no hex cell of 15000 km has at least 0.05 of its area"),
        (["--country", "Indai"], "unknown country 'Indai'; did you mean India?"),
        (["--bbox", "10,0,5,1"], "--bbox needs W < E; got W=10.0, E=5.0"),
        (["--bbox", "0,0,200,1"], "--bbox longitudes must lie in [-180, 180]"),
        (["--region", "missing.geojson"], "region file missing.geojson does not exist"),
        (["--min-region-fraction", "2"], "--min-region-fraction must lie in [0, 1]; got 2.0"),
    ],
)
def test_bad_grid_input_is_one_line_and_writes_nothing(
    workspace_dir: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace_dir.parent)
    assert invoke("grid", "-w", str(workspace_dir), "--cell-km", "200").exit_code == 0
    before = snapshot(workspace_dir)
    result = invoke("grid", "-w", str(workspace_dir), *args)
    assert_one_line_error(result, message)
    assert snapshot(workspace_dir) == before


def test_bad_region_files_are_one_line(tmp_path: Path, workspace_dir: Path) -> None:
    not_geo = tmp_path / "table.csv"
    not_geo.write_text("a,b\n1,2\n")
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    for path, message in [(not_geo, "has no geometry column"), (empty, "has no features")]:
        result = invoke("grid", "-w", str(workspace_dir), "--region", str(path))
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert "Traceback" not in result.output
    assert not workspace_dir.exists()


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_region_file_without_crs_warns_and_works(tmp_path: Path, workspace_dir: Path) -> None:
    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame(geometry=[shapely.box(10, 10, 12, 12)]).to_file(path)
    result = invoke("grid", "-w", str(workspace_dir), "--region", str(path), "--cell-km", "50")
    assert result.exit_code == 0, result.output
    assert "Warning: nocrs.shp has no CRS; assumed EPSG:4326" in result.stderr


def test_usage_errors_exit_2(workspace_dir: Path) -> None:
    result = invoke("grid", "-w", str(workspace_dir), "--shape", "circle")
    assert result.exit_code == 2
    assert "circle" in result.output
    assert invoke("grid", "--cell-km", "ten").exit_code == 2


def test_bad_sample_input(workspace_dir: Path) -> None:
    result = invoke("sample", "-w", str(workspace_dir))
    assert_one_line_error(
        result, f"grid.parquet not found in workspace {workspace_dir}; run `geotag grid` first"
    )
    assert invoke("grid", "-w", str(workspace_dir), "--cell-km", "300").exit_code == 0
    for args, message in [
        (["--per-cell", "0"], "--per-cell must be a positive whole number; got 0"),
        (["--per-cell", "-2"], "--per-cell must be a positive whole number; got -2"),
        (["--per-cell", "2", "--total", "9"], "give --per-cell or --total, not both"),
    ]:
        assert_one_line_error(invoke("sample", "-w", str(workspace_dir), *args), message)
    assert not (workspace_dir / "points.parquet").exists()


def test_workspace_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "ws.txt"
    target.write_text("keep me")
    assert_one_line_error(
        invoke("grid", "-w", str(target)), f"workspace {target} is a file, not a folder"
    )
    assert_one_line_error(
        invoke("sample", "-w", str(target)), f"workspace {target} is a file, not a folder"
    )
    assert target.read_text() == "keep me"


def test_debug_shows_the_traceback(workspace_dir: Path) -> None:
    result = invoke("grid", "-w", str(workspace_dir), "--cell-km", "-1", env={"GEOTAG_DEBUG": "1"})
    assert result.exit_code == 1
    assert isinstance(result.exception, InputError)


def test_every_command_is_documented_with_an_example() -> None:
    # Typer vendors its own Click, so groups are recognised by their sub-commands.
    def walk(group, prefix: tuple[str, ...]):  # type: ignore[no-untyped-def]
        for name, command in group.commands.items():
            yield (*prefix, name), command
            if hasattr(command, "commands"):
                yield from walk(command, (*prefix, name))

    root = typer.main.get_command(app)
    assert root.help
    seen = []
    for path, command in walk(root, ()):
        seen.append(" ".join(path))
        assert command.help and len(command.help) > 40, path
        assert "Example:" in command.help, path
        assert invoke(*path, "--help").exit_code == 0
        for param in command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{path} --{param.name} has no help"
    assert {"grid", "sample", "sim", "sim serve", "sim render", "sim preview"} <= set(seen)


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from geotag.cli import app\n"
        "for args in (['--help'], ['grid', '--help'], ['sample', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
    )
    heavy = ("torch", "timm", "pytorch_grad_cam", "geopandas", "matplotlib", "pandas")
    assert modules_loaded_by(code, heavy) == []


def test_python_dash_m_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "geotag", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("geotag ")
