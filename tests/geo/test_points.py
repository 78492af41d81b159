from __future__ import annotations

import numpy as np
import shapely

from geotag.geo.grid import make_grid
from geotag.geo.points import data_points
from geotag.geo.regions import Region, country_region


def test_points_are_the_images_mean_inside_the_region_else_snapped_or_clipped() -> None:
    # A C-shaped region around a bay.
    land = shapely.difference(shapely.box(0, 0, 4, 4), shapely.box(1, 1, 4, 3))
    grid = make_grid(Region("bay", land, "test"), 150.0, shape="square")
    ids = grid.cells["cell_id"].to_numpy()
    # Cell a: images on both shores, whose mean (lat 2, lon 2) lies in the bay. Cell b:
    # images on land, mean kept. Cell c: no image.
    cell_a, cell_b, cell_c = (int(c) for c in ids[:3])
    lat = np.array([0.5, 3.5, 0.2, 0.3])
    lon = np.array([2.0, 2.0, 0.2, 0.4])
    cells = np.array([cell_a, cell_a, cell_b, cell_b])
    out_lat, out_lon = data_points(grid, (cell_a, cell_b, cell_c), cells, lat, lon)
    # cell_a: the mean (2.0, 2.0) is in the bay: snapped to one of its own images.
    assert (out_lat[0], out_lon[0]) in {(0.5, 2.0), (3.5, 2.0)}
    # cell_b: the mean of its two images, on land.
    assert np.isclose(out_lat[1], 0.25, atol=1e-3) and np.isclose(out_lon[1], 0.3, atol=1e-3)
    # cell_c: no image: a point of its own part of the region.
    assert land.intersects(shapely.Point(out_lon[2], out_lat[2]))
    piece = shapely.intersection(grid.projection.unproject(grid.cells_in_plane()[2]), land)
    assert piece.buffer(1e-6).intersects(shapely.Point(out_lon[2], out_lat[2]))


def test_every_point_of_a_coastal_country_lies_inside_it() -> None:
    region = country_region("Sri Lanka")
    grid = make_grid(region, 40.0)
    ids = tuple(int(c) for c in grid.cells["cell_id"])
    out_lat, out_lon = data_points(grid, ids, np.array([], dtype=np.int64), np.array([]),
                                   np.array([]))  # fmt: skip
    inside = shapely.intersects_xy(region.geometry, out_lon, out_lat)
    centroids = shapely.intersects_xy(region.geometry, grid.cells["center_lon"],
                                      grid.cells["center_lat"])  # fmt: skip
    assert inside.all()
    assert not centroids.all(), "some plain centroids fall in the sea: the case that matters"
