"""Shared fixtures. Tests touch no network and no model hub."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from geotag.scrape.providers.base import ImageOptions
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.workspace import Workspace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def square_geojson(tmp_path: Path) -> Path:
    """A 2 x 2 degree square near Bangalore as a one-feature GeoJSON file."""
    path = tmp_path / "square.geojson"
    ring = [[77, 12], [79, 12], [79, 14], [77, 14], [77, 12]]
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "square"},
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                    }
                ],
            }
        )
    )
    return path


def modules_loaded_by(code: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has imported after running ``code``."""
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint(sorted(m for m in {candidates!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a failed command wrote nothing."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- a small street-view dataset scraped once from the simulator over loopback HTTP --------
@pytest.fixture(scope="session")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """India in 500 km cells (two dozen classes), two 64 px headings per panorama,
    photospheres included."""
    root = tmp_path_factory.mktemp("scraped") / "ws"
    ws = Workspace(root)
    run_grid(ws, country="India", cell_km=500)
    run_sample(ws, per_cell=16, seed=0)
    run_scrape(
        ws,
        ScrapeOptions(
            provider="sim",
            image=ImageOptions(headings=(0.0, 180.0), size=64, radius_m=20000, source="default"),
            concurrency=8,
            rate=5000,
        ),
    )
    return root


@pytest.fixture
def train_ws(scraped: Path, tmp_path: Path) -> Workspace:
    """A private copy of the scraped workspace: a test may damage or extend it."""
    shutil.copytree(scraped, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def trained(scraped: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scraped workspace with run "tiny": resnet10t at 32 px, 3 folds, all trained."""
    from geotag.stages.train import TrainOptions, run_train

    root = tmp_path_factory.mktemp("trained") / "ws"
    shutil.copytree(scraped, root)
    options = TrainOptions(
        model="resnet10t", pretrained=False, image_size=32, epochs=2, batch_size=32,
        lr=2e-3, folds=3, fold="all", workers=0, device="cpu", name="tiny",
    )  # fmt: skip
    run_train(Workspace(root), options)
    return root


@pytest.fixture
def trained_ws(trained: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(trained, tmp_path / "ws")
    return Workspace(tmp_path / "ws")
