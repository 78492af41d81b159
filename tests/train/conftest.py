"""A small street-view dataset scraped once from the simulator, over real loopback HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geotag.scrape.providers.base import ImageOptions
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.workspace import Workspace


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
