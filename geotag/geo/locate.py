"""Which cell is a location in? The label of every image comes from here.

Decided in the grid's equal-area plane against each cell's part of the region, so a point
is in exactly one cell, and a point outside the region (or in a cell the grid dropped) is
in none.
"""

from __future__ import annotations

import numpy as np
import shapely

from geotag.geo.grid import Grid

OUTSIDE = -1


class CellLocator:
    """Point-in-cell lookups against one grid, vectorised."""

    def __init__(self, grid: Grid, cells_projected: np.ndarray | None = None) -> None:
        """``cells_projected``: the grid's :meth:`Grid.cells_in_plane`, when already made."""
        from geotag.geo.sample import cell_pieces

        if cells_projected is None:
            cells_projected = grid.cells_in_plane()
        self.projection = grid.projection
        self.cell_ids = grid.cells["cell_id"].to_numpy()
        self.pieces = cell_pieces(
            cells_projected, grid.cells["region_fraction"].to_numpy(), grid.region_projected
        )
        shapely.prepare(self.pieces)
        self._tree = shapely.STRtree(self.pieces)

    def cells(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """``cell_id`` of each location, or ``OUTSIDE`` (-1) when it is in no cell."""
        lat, lon = np.atleast_1d(np.asarray(lat, float)), np.atleast_1d(np.asarray(lon, float))
        result = np.full(len(lat), OUTSIDE, dtype=np.int64)
        if len(lat) == 0:
            return result
        x, y = self.projection.forward(lon, lat)
        points = shapely.points(x, y)
        point_index, piece_index = self._tree.query(points, predicate="intersects")
        # A point on a shared edge touches two cells; the lower id wins, consistently.
        order = np.lexsort((self.cell_ids[piece_index], point_index))
        first = np.unique(point_index[order], return_index=True)[1]
        result[point_index[order][first]] = self.cell_ids[piece_index[order][first]]
        return result

    def cell(self, lat: float, lon: float) -> int:
        return int(self.cells(np.array([lat]), np.array([lon]))[0])
