"""Looking at the simulated world: one view near a point, or a contact sheet over a grid.

The contact sheet lets a person check the world at a glance: cells run north to south, so
the north should look different from the south, and user-contributed photospheres show
their photographer strip.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from geotag.atomic import atomic_path
from geotag.errors import InputError
from geotag.geo.distance import haversine_m
from geotag.geo.grid import Grid
from geotag.sim.world import SOURCES, Panorama, World

MAX_SIZE = 640
MAX_FOV = 120.0
SEARCH_RADII_M = (2_000.0, 10_000.0, 50_000.0)


@dataclass(frozen=True)
class View:
    panorama: Panorama
    distance_m: float
    jpeg: bytes


def check_camera(heading: float, pitch: float, fov: float, width: int, height: int) -> None:
    """The Street View Static API's limits, with the user's option names."""
    if not math.isfinite(heading):
        raise InputError(f"--heading must be a number of degrees; got {heading}")
    if not (math.isfinite(pitch) and -90 <= pitch <= 90):
        raise InputError(f"--pitch must lie in [-90, 90]; got {pitch}")
    if not (math.isfinite(fov) and 0 < fov <= MAX_FOV):
        raise InputError(f"--fov must lie in (0, {MAX_FOV:g}]; got {fov}")
    for name, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_SIZE:
            raise InputError(f"--size {name} must lie in [1, {MAX_SIZE}]; got {value}")


def view_near(
    world: World,
    lat: float,
    lon: float,
    *,
    heading: float = 0.0,
    pitch: float = 0.0,
    fov: float = 90.0,
    size: int = 256,
    radius_m: float = 5_000.0,
    source: str = "default",
) -> View:
    """Render the nearest panorama to (lat, lon) within ``radius_m``."""
    if not (math.isfinite(lat) and -90 <= lat <= 90 and math.isfinite(lon) and -180 <= lon <= 180):
        raise InputError(f"--lat/--lon must be a location in degrees; got {lat}, {lon}")
    if source not in SOURCES:
        raise InputError(f"--source must be one of {', '.join(SOURCES)}; got {source!r}")
    if not (math.isfinite(radius_m) and radius_m > 0):
        raise InputError(f"--radius must be a positive number of metres; got {radius_m}")
    check_camera(heading, pitch, fov, size, size)
    pano = world.nearest(lat, lon, radius_m, source)
    if pano is None:
        raise InputError(
            f"no panorama within {radius_m:g} m of {lat:g},{lon:g}; try a larger --radius"
        )
    distance = float(haversine_m(lat, lon, pano.lat, pano.lon))
    return View(pano, distance, world.render(pano.pano_id, heading, pitch, fov, size, size))


def save_view(view: View, path: Path) -> Path:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(view.jpeg)
    return Path(path)


def contact_sheet(
    world: World,
    grid: Grid,
    path: Path,
    *,
    cells: int = 24,
    size: int = 160,
    columns: int = 6,
) -> tuple[Path, int]:
    """A PNG of one view per cell for up to ``cells`` cells spread from north to south.

    Returns the path and how many user-contributed photospheres it shows.
    """
    if cells < 1:
        raise InputError(f"--cells must be at least 1; got {cells}")
    if not 32 <= size <= MAX_SIZE:
        raise InputError(f"--size must lie in [32, {MAX_SIZE}]; got {size}")
    table = grid.cells.sort_values("cell_id")
    chosen = np.unique(np.linspace(0, len(table) - 1, min(cells, len(table))).round().astype(int))
    tiles: list[tuple[Image.Image, str, bool]] = []
    for row in table.iloc[chosen].itertuples():
        pano = _panorama_near(world, row.center_lat, row.center_lon)
        if pano is None:
            continue
        heading = pano.road_bearing
        with Image.open(io.BytesIO(world.render(pano.pano_id, heading, 0, 90, size, size))) as im:
            image = im.convert("RGB")
        caption = f"cell {row.cell_id}  {pano.lat:.1f}, {pano.lon:.1f}"
        tiles.append((image, caption, pano.user_contributed))
    if not tiles:
        raise InputError("no panorama near any cell centre of this grid (all water?)")
    caption_h = 18
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + caption_h)), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for k, (image, caption, user) in enumerate(tiles):
        x, y = (k % columns) * size, (k // columns) * (size + caption_h)
        sheet.paste(image, (x, y))
        colour = (200, 30, 40) if user else (30, 30, 30)
        draw.text((x + 3, y + size + 3), caption + ("  user" if user else ""), fill=colour)
    with atomic_path(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path), sum(user for _, _, user in tiles)


def _panorama_near(world: World, lat: float, lon: float) -> Panorama | None:
    for radius in SEARCH_RADII_M:
        pano = world.nearest(lat, lon, radius)
        if pano is not None:
            return pano
    return None
