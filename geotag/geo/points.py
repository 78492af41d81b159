"""Where a class answers: the point a predicted cell stands for, taken from the data.

A cell's unclipped centroid can lie in the sea or across a border (8 of the 29 demo
centres lay outside India), and every top-cell answer then lands there. A class's point
is instead the spherical mean of its training images' true locations; where that mean
falls outside the region (a cell whose images sit on two coasts) it is snapped to the
nearest of those locations; a cell with no training image answers with the centroid of
its part of the region (a point on that part, should the centroid fall outside it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.geo.distance import haversine_km, spherical_mean
from geotag.geo.grid import Grid, cells_in_plane

if TYPE_CHECKING:
    from geotag.geo.partition import Partition


def data_points(
    grid: Grid, cell_ids: tuple[int, ...], cells: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``cell_ids``' point (lat, lon in degrees), from the locations of the
    training images (``cells``, ``lat``, ``lon``: one entry per image)."""

    def empty(cell: int) -> tuple[float, float]:
        index = int(np.flatnonzero(grid.cells["cell_id"].to_numpy() == cell)[0])
        return _clipped_centroid(grid, grid.cells_in_plane()[index])

    return _points(grid, cell_ids, cells, lat, lon, empty)


def partition_points(
    grid: Grid, partition: Partition, cells: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`data_points` for every cell of ``partition`` (cells made over ``grid``)."""
    ids = tuple(int(c) for c in partition.cells["cell_id"])
    plane = cells_in_plane(np.asarray(partition.cells.geometry.values), grid.projection)

    def empty(cell: int) -> tuple[float, float]:
        return _clipped_centroid(grid, plane[ids.index(cell)])

    return _points(grid, ids, cells, lat, lon, empty)


def _points(
    grid: Grid,
    cell_ids: tuple[int, ...],
    cells: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    empty: Callable[[int], tuple[float, float]],
) -> tuple[np.ndarray, np.ndarray]:
    cells, lat, lon = np.asarray(cells), np.asarray(lat, float), np.asarray(lon, float)
    region = grid.region.geometry
    shapely.prepare(region)
    out_lat = np.empty(len(cell_ids))
    out_lon = np.empty(len(cell_ids))
    for i, cell in enumerate(cell_ids):
        mine = cells == cell
        if not mine.any():
            out_lat[i], out_lon[i] = empty(int(cell))
            continue
        m_lat, m_lon = spherical_mean(lat[mine], lon[mine], np.ones(int(mine.sum())))
        if not shapely.intersects_xy(region, float(m_lon), float(m_lat)):
            nearest = np.argmin(haversine_km(m_lat, m_lon, lat[mine], lon[mine]))
            m_lat, m_lon = lat[mine][nearest], lon[mine][nearest]
        out_lat[i], out_lon[i] = float(m_lat), float(m_lon)
    return out_lat, out_lon


def _clipped_centroid(grid: Grid, plane: BaseGeometry) -> tuple[float, float]:
    """The centroid of a cell's part of the region (``plane``: the cell in the grid's
    equal-area plane; right across the antimeridian), or a point on that part if the
    centroid is not."""
    piece = shapely.intersection(plane, grid.region_projected)
    if piece.is_empty:
        piece = plane
    point = piece.centroid
    if not piece.intersects(point):
        point = piece.point_on_surface()
    lon, lat = grid.projection.inverse(np.array([point.x]), np.array([point.y]))
    return float(lat[0]), float(lon[0])
