"""Points drawn uniformly per unit area inside each cell's part of the region.

Sampling happens in the grid's equal-area plane, where uniform in x/y *is* uniform per
km^2 (uniform in degrees would crowd points toward the poles). Each cell's piece of the
region is cut into triangles; a point picks a triangle by area, then a spot inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.errors import InputError
from geotag.geo.defaults import DEFAULT_PER_CELL, DEFAULT_SEED
from geotag.geo.projection import EqualAreaProjection

if TYPE_CHECKING:
    import pandas as pd

MAX_POINTS = 50_000_000
POINT_COLUMNS = ("point_id", "cell_id", "lat", "lon")


@dataclass(frozen=True)
class Quota:
    """How many points to draw: ``per_cell`` in every cell, or ``total`` spread by area."""

    per_cell: int | None = None
    total: int | None = None

    def __post_init__(self) -> None:
        if self.per_cell is not None and self.total is not None:
            raise InputError("give --per-cell or --total, not both")
        for name, value in (("--per-cell", self.per_cell), ("--total", self.total)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise InputError(f"{name} must be a positive whole number; got {value}")

    def counts(self, area_in_region_km2: np.ndarray) -> np.ndarray:
        """Points for each cell, summing to ``total`` exactly when a total is asked for."""
        cells = len(area_in_region_km2)
        if self.total is None:
            per_cell = self.per_cell if self.per_cell is not None else DEFAULT_PER_CELL
            _check_size(per_cell * cells)
            return np.full(cells, per_cell, dtype=np.int64)
        _check_size(self.total)
        share = area_in_region_km2 / area_in_region_km2.sum() * self.total
        counts = np.floor(share).astype(np.int64)
        # Largest remainders get the points left over, ties broken by cell order.
        leftover = self.total - int(counts.sum())
        if leftover:
            counts[np.argsort(-(share - counts), kind="stable")[:leftover]] += 1
        return counts


def _check_size(points: int) -> None:
    if points > MAX_POINTS:
        raise InputError(f"{points:,} points is over the limit of {MAX_POINTS:,}; ask for fewer")


def cell_pieces(
    cells_projected: np.ndarray, region_fraction: np.ndarray, region_projected: BaseGeometry
) -> np.ndarray:
    """Each cell's part inside the region; cells wholly inside need no overlay."""
    pieces = np.array(cells_projected, dtype=object)
    cut = np.flatnonzero(region_fraction < 1.0)
    if len(cut):
        pieces[cut] = shapely.intersection(pieces[cut], region_projected)
    return pieces


def sample_in_polygons(
    polygons: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts[i]`` points uniform in ``polygons[i]``: (owner index, x, y), by owner."""
    triangles, owner = shapely.get_parts(
        shapely.constrained_delaunay_triangles(polygons), return_index=True
    )
    corners = shapely.get_coordinates(triangles).reshape(len(triangles), 4, 2)[:, :3]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = 0.5 * np.abs(
        (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    )
    empty = np.setdiff1d(np.flatnonzero(counts), owner)
    if len(empty):
        raise InputError(f"cell piece {int(empty[0])} has no area to sample from")

    # Triangles are grouped by owner, so one running sum serves every polygon.
    cumulative = np.concatenate([[0.0], np.cumsum(area)])
    first = np.searchsorted(owner, np.arange(len(polygons)), side="left")
    last = np.searchsorted(owner, np.arange(len(polygons)), side="right")
    start = cumulative[first]
    total = cumulative[last] - start

    point_owner = np.repeat(np.arange(len(polygons)), counts)
    target = start[point_owner] + rng.random(len(point_owner)) * total[point_owner]
    tri = np.searchsorted(cumulative, target, side="right") - 1
    # Rounding at a polygon's last triangle must not spill into the next polygon's.
    tri = np.clip(tri, first[point_owner], last[point_owner] - 1)

    u, v = rng.random(len(tri)), rng.random(len(tri))
    flip = u + v > 1  # reflect into the triangle instead of rejecting
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    xy = a[tri] + u[:, None] * (b[tri] - a[tri]) + v[:, None] * (c[tri] - a[tri])
    return point_owner, xy[:, 0], xy[:, 1]


def sample_points(
    cell_ids: np.ndarray,
    pieces: np.ndarray,
    projection: EqualAreaProjection,
    quota: Quota,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Points uniform per km^2 in each cell's piece of the region.

    ``pieces`` are the cells' parts inside the region, in ``projection``'s plane.
    Returns ``point_id, cell_id, lat, lon`` ordered by cell; the same seed gives the same
    points.
    """
    import pandas as pd

    area_km2 = shapely.area(pieces) / 1e6
    counts = quota.counts(area_km2)
    rng = np.random.default_rng(seed)
    owner, x, y = sample_in_polygons(pieces, counts, rng)
    lon, lat = projection.inverse(x, y)
    return pd.DataFrame(
        {
            "point_id": np.arange(len(owner), dtype=np.int64),
            "cell_id": np.asarray(cell_ids, dtype=np.int64)[owner],
            "lat": lat,
            "lon": lon,
        }
    )
