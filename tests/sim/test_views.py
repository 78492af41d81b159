from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from geotag.gridfile import load_grid
from geotag.sim import World
from geotag.sim.views import check_camera, contact_sheet, view_near
from geotag.stages.grid import run_grid
from geotag.workspace import Workspace

runner = CliRunner()


def test_view_near_renders_the_nearest_panorama(tmp_path: Path) -> None:
    world = World(0)
    view = view_near(world, 12.97, 77.59, heading=90, size=128, radius_m=5000)
    assert view.panorama == world.nearest(12.97, 77.59, 5000)
    assert 0 < view.distance_m <= 5000
    assert view.jpeg == world.render(view.panorama.pano_id, 90, 0, 90, 128, 128)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lat": 0.0, "lon": -30.0}, "no panorama within 5000 m of 0,-30; try a larger --radius"),
        ({"lat": 95.0}, "--lat/--lon must be a location in degrees"),
        ({"fov": 150.0}, r"--fov must lie in \(0, 120\]"),
        ({"pitch": -100.0}, r"--pitch must lie in \[-90, 90\]"),
        ({"size": 641}, r"--size width must lie in \[1, 640\]"),
        ({"radius_m": 0.0}, "--radius must be a positive number of metres"),
        ({"source": "indoor"}, "--source must be one of default, outdoor"),
    ],
)
def test_view_near_refuses_bad_input(kwargs: dict, message: str) -> None:
    args = {"lat": 12.97, "lon": 77.59, **kwargs}
    lat, lon = args.pop("lat"), args.pop("lon")
    with pytest.raises(InputError, match=message):
        view_near(World(0), lat, lon, **args)


def test_check_camera_accepts_googles_limits() -> None:
    check_camera(359.9, 90, 120, 640, 1)


def test_contact_sheet_spreads_views_over_the_grid(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    run_grid(ws, country="India", cell_km=300)
    path, photospheres = contact_sheet(
        World(0), load_grid(ws), tmp_path / "sheet.png", cells=12, size=64, columns=4
    )
    with Image.open(path) as sheet:
        assert sheet.size == (4 * 64, 3 * (64 + 18))
    assert 0 <= photospheres <= 12


def test_sim_cli_render_and_preview(tmp_path: Path) -> None:
    out = tmp_path / "view.jpg"
    result = runner.invoke(
        app,
        [
            "sim",
            "render",
            "--lat",
            "12.97",
            "--lon",
            "77.59",
            "--heading",
            "90",
            "--size",
            "96",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "panorama" in result.stdout and "© " in result.stdout
    with Image.open(out) as image:
        assert image.size == (96, 96) and image.format == "JPEG"

    result = runner.invoke(app, ["sim", "render", "--lat", "0", "--lon", "-30", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: no panorama within 5000 m of 0,-30; try a larger --radius"
    )

    ws = tmp_path / "ws"
    assert runner.invoke(app, ["grid", "-w", str(ws), "--cell-km", "400"]).exit_code == 0
    result = runner.invoke(app, ["sim", "preview", "-w", str(ws), "--cells", "6", "--size", "48"])
    assert result.exit_code == 0, result.output
    assert (ws / "sim.png").is_file()
    result = runner.invoke(app, ["sim", "preview", "-w", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "run `geotag grid` first" in result.stderr


def test_sim_serve_prints_its_url_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "geotag", "sim", "serve", "--port", "0", "--key", "k1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and not base_url.endswith(":0")
        reply = httpx.get(
            f"{base_url}/maps/api/streetview/metadata",
            params={"location": "12.97,77.59", "radius": 5000, "key": "k1"},
            timeout=30,
        )
        assert reply.json()["status"] == "OK"
        denied = httpx.get(
            f"{base_url}/maps/api/streetview/metadata",
            params={"location": "12.97,77.59", "key": "wrong"},
            timeout=30,
        )
        assert denied.json()["status"] == "REQUEST_DENIED"
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
