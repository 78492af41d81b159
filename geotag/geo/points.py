"""Where a class answers: the point a predicted cell stands for, taken from the data.

A cell's unclipped centroid can lie in the sea or across a border (8 of the 29 demo
centres lay outside India), and every top-cell answer then lands there. A class's point
is instead the spherical mean of its training images' true locations; where that mean
falls outside the region (a cell whose images sit on two coasts) it is snapped to the
nearest of those locations; a cell with no training image answers with the centroid of
its part of the region (a point on that part, should the centroid fall outside it).
"""

from __future__ import annotations

import numpy as np
import shapely

from geotag.geo.distance import haversine_km, spherical_mean
from geotag.geo.grid import Grid


def data_points(
    grid: Grid, cell_ids: tuple[int, ...], cells: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``cell_ids``' point (lat, lon in degrees), from the locations of the
    training images (``cells``, ``lat``, ``lon``: one entry per image)."""
    cells, lat, lon = np.asarray(cells), np.asarray(lat, float), np.asarray(lon, float)
    region = grid.region.geometry
    shapely.prepare(region)
    out_lat = np.empty(len(cell_ids))
    out_lon = np.empty(len(cell_ids))
    for i, cell in enumerate(cell_ids):
        mine = cells == cell
        if not mine.any():
            out_lat[i], out_lon[i] = _clipped_centroid(grid, cell)
            continue
        m_lat, m_lon = spherical_mean(lat[mine], lon[mine], np.ones(int(mine.sum())))
        if not shapely.intersects_xy(region, float(m_lon), float(m_lat)):
            nearest = np.argmin(haversine_km(m_lat, m_lon, lat[mine], lon[mine]))
            m_lat, m_lon = lat[mine][nearest], lon[mine][nearest]
        out_lat[i], out_lon[i] = float(m_lat), float(m_lon)
    return out_lat, out_lon


def _clipped_centroid(grid: Grid, cell: int) -> tuple[float, float]:
    """The centroid of the cell's part of the region, computed in the grid's equal-area
    plane (right across the antimeridian), or a point on that part if the centroid is not."""
    index = int(np.flatnonzero(grid.cells["cell_id"].to_numpy() == cell)[0])
    plane = grid.cells_in_plane()[index]
    piece = shapely.intersection(plane, grid.region_projected)
    if piece.is_empty:
        piece = plane
    point = piece.centroid
    if not piece.intersects(point):
        point = piece.point_on_surface()
    lon, lat = grid.projection.inverse(np.array([point.x]), np.array([point.y]))
    return float(lat[0]), float(lon[0])
