from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from geotag.doubt.answer import FoldPart, photo_regions
from geotag.doubt.calibration import CalibrationSplit
from geotag.doubt.confidence import CONFIDENCE_SCORES
from geotag.doubt.regions import CellShapes, area_km2, geojson, to_lonlat
from geotag.geo.grid import make_grid
from geotag.geo.regions import country_region


@pytest.fixture(scope="module")
def fiji() -> CellShapes:
    grid = make_grid(country_region("Fiji"), 50, min_region_fraction=0.0)
    return CellShapes.from_cells(
        grid.cells, grid.cells["cell_id"].tolist(), grid.projection, grid.region_projected
    )


def _crossing(cells: CellShapes) -> np.ndarray:
    """Class indices of the cells that cross the antimeridian."""
    lonlat = np.asarray(cells.projection.unproject(cells.plane))
    x_min, _, x_max, _ = shapely.bounds(lonlat).T
    return np.flatnonzero(x_max - x_min > 180)


def test_a_region_across_the_antimeridian_is_valid_geojson_split_at_180(fiji: CellShapes) -> None:
    crossing = _crossing(fiji)
    assert len(crossing), "Fiji's grid has cells over the antimeridian"
    # The crossing cells and their neighbours on both sides, as one region.
    members = np.zeros(len(fiji), dtype=bool)
    members[crossing] = True
    members |= shapely.intersects(fiji.plane, fiji.union(members).buffer(1_000))
    region = to_lonlat(fiji.union(members), fiji.projection)
    document = json.loads(json.dumps(geojson(region)))
    assert document["type"] == "MultiPolygon"
    back = shape(document)
    assert back.is_valid
    lons = np.array([xy[0] for poly in document["coordinates"] for ring in poly for xy in ring])
    assert lons.min() >= -180 and lons.max() <= 180
    assert lons.max() == pytest.approx(180) and lons.min() < -179  # both sides of the cut
    west, _, east, _ = back.bounds
    assert east - west > 300  # parts on both sides, none drawn across the globe
    for polygon in back.geoms:  # no part is wider than the region really is
        x0, _, x1, _ = polygon.bounds
        assert x1 - x0 < 10
        assert shapely.Polygon(polygon.exterior).exterior.is_ccw  # RFC 7946 right-hand rule


def test_a_regions_area_is_the_sum_of_its_cells_areas(fiji: CellShapes) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        members = rng.random(len(fiji)) < 0.4
        members[_crossing(fiji)[0]] = True
        summed, inside = fiji.areas(members[None, :])
        assert area_km2(fiji.union(members)) == pytest.approx(summed[0], rel=1e-3)
        assert 0 < inside[0] <= summed[0]
        # Back on the globe, split at 180, the geodesic area agrees too.
        from pyproj import Geod

        lonlat = to_lonlat(fiji.union(members), fiji.projection)
        geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(lonlat)[0]) / 1e6
        assert geodesic == pytest.approx(summed[0], rel=1e-2)


def _split(n: int = 99) -> CalibrationSplit:
    """A calibration whose threshold is 0.5 at any target up to 0.99."""
    return CalibrationSplit(
        n=n, temperature=1.0, ece_before=0.0, ece_after=0.0, nll_before=0.0, nll_after=0.0,
        scores=(0.5,) * n,
        confidence={k: tuple(np.linspace(0, 1, n)) for k in CONFIDENCE_SCORES},
        selective=dict.fromkeys(CONFIDENCE_SCORES, 0.5),
    )  # fmt: skip


def _part(cells: CellShapes, classes: list[int], probs: list[float]) -> FoldPart:
    shapes = CellShapes(
        cells.cell_ids[classes], cells.plane[classes], cells.area_km2[classes],
        cells.in_region_km2[classes], cells.projection,
    )  # fmt: skip
    lat = np.zeros(len(classes))
    return FoldPart(np.array([probs]), _split(), shapes, lat, lat)


def test_the_answer_is_the_union_of_the_folds_regions(fiji: CellShapes) -> None:
    # Each fold's set at threshold 0.5: its two most probable cells (0 and 0.4 above).
    a = _part(fiji, [0, 1, 2, 3], [0.4, 0.3, 0.3, 0.0])
    b = _part(fiji, [1, 2, 3, 4], [0.0, 0.4, 0.3, 0.3])  # other cells: no shared classes
    (own,) = photo_regions([a, b], 0.9, "top_probability")
    assert own.cells is None  # folds of their own cells: the union of their shapes
    expected = fiji.area_km2[[0, 1, 2, 3]].sum()  # {0, 1} and {2, 3}
    assert own.area_km2 == pytest.approx(expected, rel=1e-3)
    overlapping = _part(fiji, [1, 2, 3, 4], [0.4, 0.3, 0.3, 0.0])  # {1, 2}: shares cell 1
    (joined,) = photo_regions([a, overlapping], 0.9, "top_probability")
    assert joined.area_km2 == pytest.approx(fiji.area_km2[[0, 1, 2]].sum(), rel=1e-3)
    shared = _part(fiji, [0, 1, 2, 3], [0.3, 0.0, 0.4, 0.3])  # {2, 0}
    (grid_run,) = photo_regions([a, shared], 0.9, "top_probability")
    assert grid_run.cells == tuple(int(c) for c in fiji.cell_ids[[0, 1, 2]])
    assert grid_run.area_km2 == pytest.approx(fiji.area_km2[[0, 1, 2]].sum())
    assert grid_run.confidence == pytest.approx(np.mean([0.4, 0.4]), abs=0.02)
    lon, lat = shapely.get_coordinates(
        shapely.point_on_surface(to_lonlat(fiji.plane[0], fiji.projection))
    )[0]
    assert grid_run.contains(lat, lon) and not grid_run.contains(0.0, 0.0)
