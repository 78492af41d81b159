from __future__ import annotations

import math

import h3
import numpy as np
import pytest
import shapely
from pyproj import Geod

from geotag.errors import InputError
from geotag.geo.grid import make_grid, split_at_antimeridian
from geotag.geo.regions import Region, country_region, region_from_bbox

GEOD = Geod(ellps="WGS84")


def geodesic_km2(geometry: shapely.Geometry) -> float:
    return abs(GEOD.geometry_area_perimeter(geometry)[0]) / 1e6


@pytest.fixture(scope="module")
def india() -> Region:
    return country_region("India")


@pytest.mark.parametrize("shape", ["hex", "square", "triangle"])
@pytest.mark.parametrize("cell_km", [100.0, 37.5])
def test_every_cell_has_the_area_of_a_k_by_k_square(
    india: Region, shape: str, cell_km: float
) -> None:
    grid = make_grid(india, cell_km, shape=shape)
    areas = np.array([geodesic_km2(g) for g in grid.cells.geometry])
    assert np.all(np.abs(areas / cell_km**2 - 1) < 0.01)
    # The equal-area construction makes it far better than the 1% asked for.
    assert np.median(np.abs(areas / cell_km**2 - 1)) < 1e-4
    assert np.allclose(grid.cells["area_km2"], cell_km**2, rtol=1e-9)
    assert grid.cell_area_km2 == pytest.approx(cell_km**2)


@pytest.mark.parametrize("shape", ["hex", "square", "triangle", "h3"])
def test_cells_cover_the_region(shape: str) -> None:
    region = country_region("Sri Lanka")
    grid = make_grid(region, 30, shape=shape, min_region_fraction=0.0)
    covered = shapely.intersection(shapely.union_all(grid.cells.geometry.values), region.geometry)
    assert geodesic_km2(covered) / geodesic_km2(region.geometry) >= 0.999
    # region_fraction agrees with the areas: the parts inside add up to the region.
    inside = (grid.cells["area_km2"] * grid.cells["region_fraction"]).sum()
    assert inside == pytest.approx(grid.region_area_km2, rel=1e-5)
    assert grid.region_area_km2 == pytest.approx(geodesic_km2(region.geometry), rel=2e-3)


def test_region_fraction_is_the_share_inside(india: Region) -> None:
    grid = make_grid(india, 100)
    fraction = grid.cells["region_fraction"].to_numpy()
    assert fraction.min() >= 0.05 and fraction.max() == 1.0
    assert grid.dropped_cells > 0
    cut = grid.cells[fraction < 0.9].head(5)
    for geometry, share in zip(cut.geometry, cut["region_fraction"], strict=True):
        inside = geodesic_km2(shapely.intersection(geometry, india.geometry))
        assert inside / geodesic_km2(geometry) == pytest.approx(share, abs=0.005)


def test_min_region_fraction_drops_fringe_cells(india: Region) -> None:
    strict = make_grid(india, 100, min_region_fraction=0.5)
    loose = make_grid(india, 100, min_region_fraction=0.0)
    assert (strict.cells["region_fraction"] >= 0.5).all()
    assert len(loose.cells) > len(strict.cells)
    assert (loose.cells["region_fraction"] > 0).all()


def test_ids_are_stable_and_row_major_from_the_north_west(india: Region) -> None:
    first = make_grid(india, 100)
    second = make_grid(india, 100)
    assert first.cells["cell_id"].tolist() == list(range(len(first.cells)))
    assert all(
        a.equals_exact(b, 0)
        for a, b in zip(first.cells.geometry, second.cells.geometry, strict=True)
    )
    # Rows run north to south, cells within a row west to east.
    x, y = first.projection.forward(
        first.cells["center_lon"].to_numpy(), first.cells["center_lat"].to_numpy()
    )
    row_height = 1.5 * math.sqrt(2 * 100**2 / (3 * math.sqrt(3))) * 1000
    row = np.round((y.max() - y) / row_height)
    assert np.all(np.diff(row) >= 0)
    same_row = np.diff(row) == 0
    assert np.all(np.diff(x)[same_row] > 0)


def test_centres_are_inside_their_cells(india: Region) -> None:
    grid = make_grid(india, 100, shape="triangle")
    centres = shapely.points(grid.cells["center_lon"], grid.cells["center_lat"])
    assert shapely.contains(grid.cells.geometry.values, centres).all()


@pytest.mark.parametrize("country", ["Fiji", "Russia"])
def test_antimeridian_cells_are_split_not_stretched(country: str) -> None:
    region = country_region(country)
    cell_km = 50 if country == "Fiji" else 250
    grid = make_grid(region, cell_km, min_region_fraction=0.0)
    parts = shapely.get_parts(grid.cells.geometry.values)
    widths = shapely.bounds(parts)[:, 2] - shapely.bounds(parts)[:, 0]
    assert widths.max() < 25, "no part may wrap around the globe"
    split = grid.cells.geometry.geom_type == "MultiPolygon"
    assert split.any(), f"some {country} cells straddle 180 degrees"
    areas = np.array([geodesic_km2(g) for g in grid.cells.geometry])
    assert np.all(np.abs(areas / cell_km**2 - 1) < 0.01)
    assert grid.cells["center_lon"].between(-180, 180).all()
    covered = shapely.intersection(shapely.union_all(grid.cells.geometry.values), region.geometry)
    assert geodesic_km2(covered) / geodesic_km2(region.geometry) > 0.98


def test_split_at_antimeridian() -> None:
    wrapped = shapely.Polygon([(179, 0), (-179, 0), (-179, 1), (179, 1)])
    split = split_at_antimeridian(wrapped)
    assert split.geom_type == "MultiPolygon"
    assert sorted(round(p.area, 9) for p in split.geoms) == [1.0, 1.0]
    assert split.bounds == (-180.0, 0.0, 180.0, 1.0)


def test_h3_picks_the_nearest_resolution_by_area(india: Region) -> None:
    grid = make_grid(india, 100, shape="h3")
    assert grid.h3_resolution == 3  # mean 12,393 km^2; resolution 4 is 1,770 km^2
    cell = h3.latlng_to_cell(grid.cells["center_lat"][0], grid.cells["center_lon"][0], 3)
    assert grid.cells["area_km2"][0] == pytest.approx(h3.cell_area(cell, "km^2"), rel=0.01)
    assert make_grid(india, 10, shape="h3").h3_resolution == 5


def test_bbox_grid_is_uniform() -> None:
    region = region_from_bbox("10,40,20,50")
    grid = make_grid(region, 50, shape="square")
    assert grid.region_area_km2 == pytest.approx(geodesic_km2(region.geometry), rel=1e-3)
    assert len(grid.cells) == pytest.approx(grid.region_area_km2 / 2500, rel=0.1)


def test_bad_cell_sizes(india: Region) -> None:
    for value in (0, -5, math.nan, math.inf):
        with pytest.raises(InputError, match="--cell-km must be a positive number"):
            make_grid(india, value)
    with pytest.raises(InputError, match="--cell-km must be at most 20000 km; got 1e"):
        make_grid(india, 1e308)  # was an unexpected OverflowError from cell_km**2
    with pytest.raises(
        InputError,
        match=r"--cell-km 1 would give about 3,1\d\d,\d{3} cells over India "
        r"\(limit 2,000,000\); try --cell-km 2 or more",
    ):
        make_grid(india, 1)
    with pytest.raises(InputError, match=r"no hex cell of 20000 km has at least 0\.05"):
        make_grid(india, 20_000)
    with pytest.raises(InputError, match="would give about"):
        make_grid(india, 1, shape="h3")


def test_bad_options(india: Region) -> None:
    with pytest.raises(InputError, match="unknown --shape 'circle'"):
        make_grid(india, 100, shape="circle")
    with pytest.raises(InputError, match=r"--min-region-fraction must lie in \[0, 1\]"):
        make_grid(india, 100, min_region_fraction=1.5)
