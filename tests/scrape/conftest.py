"""Shared fixtures for the scrape stage's end-to-end tests against ``SimServer``.

A small workspace (a 0.2 x 0.2 degree box in Austria, where the simulated world has many
roads, cut into 5 km squares), a few dozen points, 64 px images: each run takes about a
second. The grid and points are built once per session and copied into each test.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image

from geotag.scrape.providers.base import ImageOptions
from geotag.scrape.retry import RetryPolicy
from geotag.sim.server import LoggedRequest
from geotag.sim.world import Panorama, World
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions
from geotag.workspace import Workspace

BBOX = (14.4, 47.6, 14.6, 47.8)  # W, S, E, N
CELL_KM = 5.0
RADIUS_M = 1000.0
SIZE = 64
HEADINGS = (0.0, 90.0, 180.0, 270.0)
SIM_SEED = 0
META_PATH = "/maps/api/streetview/metadata"
IMAGE_PATH = "/maps/api/streetview"
#: Sampled points, plus one twin 15 m north of each of the first TWINS, so that some
#: panoramas are found by two points.
SAMPLED, TWINS = 24, 6
M_PER_DEG = 111_320.0


@pytest.fixture(scope="session")
def world() -> World:
    """The simulator's world; shared so its tile cache is built once."""
    return World(seed=SIM_SEED)


@pytest.fixture(scope="session")
def template_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scrape-template") / "ws"
    ws = Workspace(root)
    run_grid(ws, bbox=",".join(f"{v:g}" for v in BBOX), cell_km=CELL_KM, shape="square")
    run_sample(ws, total=SAMPLED, seed=3)
    points = pd.read_parquet(ws.points_parquet)
    twins = points.head(TWINS).copy()
    twins["point_id"] = np.arange(len(points), len(points) + TWINS)
    twins["lat"] = twins["lat"] + 15.0 / M_PER_DEG
    pd.concat([points, twins], ignore_index=True).to_parquet(ws.points_parquet, index=False)
    return root


@pytest.fixture
def ws(template_workspace: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the template workspace: grid + points, nothing scraped yet."""
    root = tmp_path / "ws"
    shutil.copytree(template_workspace, root)
    return Workspace(root)


def sim_options(base_url: str | None, **overrides: object) -> ScrapeOptions:
    """Options for a quick, deterministic scrape of the simulator."""
    image = overrides.pop("image", ImageOptions(headings=HEADINGS, size=SIZE, radius_m=RADIUS_M))
    options = ScrapeOptions(
        provider="sim",
        image=image,  # type: ignore[arg-type]
        concurrency=4,
        rate=500.0,
        max_attempts=10,
        base_url=base_url,
        retry=RetryPolicy(base_s=0.01, cap_s=0.05),
    )
    return replace(options, **overrides)  # type: ignore[arg-type]


def points_of(ws: Workspace) -> pd.DataFrame:
    return pd.read_parquet(ws.points_parquet)


def nearest_panoramas(
    world: World, points: pd.DataFrame, radius_m: float = RADIUS_M, source: str = "outdoor"
) -> dict[int, Panorama | None]:
    """point_id -> the panorama the simulator snaps it to (as the provider asks: 7 decimals)."""
    return {
        int(row.point_id): world.nearest(
            float(f"{row.lat:.7f}"), float(f"{row.lon:.7f}"), radius_m=radius_m, source=source
        )
        for row in points.itertuples(index=False)
    }


def unique_panoramas(found: Iterable[Panorama | None]) -> dict[str, Panorama]:
    return {p.pano_id: p for p in found if p is not None}


class Cells:
    """Point-in-cell from the workspace's own files (grid.parquet, region.parquet).

    Independent of the scraper's locator: plain shapely tests in EPSG:4326.
    """

    def __init__(self, ws: Workspace) -> None:
        self.cells = gpd.read_parquet(ws.grid_parquet)
        self.region = gpd.read_parquet(ws.region_parquet).geometry.iloc[0]

    def inside(self, lat: float, lon: float) -> bool:
        return bool(self.region.intersects(shapely.Point(lon, lat)))

    def __call__(self, lat: float, lon: float) -> int:
        """The cell holding the location, or -1 outside the region."""
        if not self.inside(lat, lon):
            return -1
        hits = self.cells[self.cells.geometry.intersects(shapely.Point(lon, lat))]
        return int(hits["cell_id"].min()) if len(hits) else -1


def image_answers(requests: Iterable[LoggedRequest], status: int | str = 200) -> int:
    """How many image requests the server answered with ``status`` (complete answers)."""
    return sum(1 for r in requests if r.path == IMAGE_PATH and r.status == status)


def is_valid_jpeg(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                return False
            image.load()  # decodes every pixel: a truncated file raises here
    except OSError:
        return False
    return True


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_files(ws: Workspace) -> list[Path]:
    return sorted(p for p in ws.images_dir.rglob("*") if p.is_file())
