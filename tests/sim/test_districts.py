from __future__ import annotations

import math

import numpy as np
import pytest

from geotag.geo.distance import haversine_km
from geotag.sim import districts as module
from geotag.sim.districts import (
    CROWNS,
    DISTRICT_DEG,
    HEIGHT_RANGE,
    LANDMARK_SITES,
    LANDMARKS,
    Districts,
    Lattice,
    bearings,
)
from geotag.sim.shapes import LANDMARKS as LANDMARK_SHAPES
from geotag.sim.shapes import TREES


@pytest.fixture(scope="module")
def districts() -> Districts:
    return Districts(seed=0)


def points(n: int, lat: tuple[float, float], lon: tuple[float, float], seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return rng.uniform(*lat, n), rng.uniform(*lon, n)


def brute_force(lattice: Lattice, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The nearest centre among every lattice cell of a wide window, the slow way."""
    rows = np.arange(lattice.rows)
    row_lo = max(int(np.floor((lat.min() + 90) / lattice.step)) - 4, 0)
    row_hi = min(int(np.floor((lat.max() + 90) / lattice.step)) + 5, lattice.rows)
    col_lo = int(np.floor((lon.min() + 180) / lattice.step)) - 4
    col_hi = int(np.floor((lon.max() + 180) / lattice.step)) + 5
    row, column = np.meshgrid(rows[row_lo:row_hi], np.arange(col_lo, col_hi), indexing="ij")
    row, column = row.ravel(), column.ravel()
    centre_lat, centre_lon = lattice.centres(row, column)
    d_lon = (centre_lon[None, :] - lon[:, None] + 180.0) % 360.0 - 180.0
    distance = (centre_lat[None, :] - lat[:, None]) ** 2 + d_lon**2
    best = np.argmin(distance, axis=1)
    return row[best] * lattice.columns + column[best] % lattice.columns


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        ((10.0, 13.0), (76.0, 79.0)),  # India
        ((-30.0, -28.0), (178.5, 181.5)),  # across the antimeridian
        ((87.5, 90.0), (-20.0, 20.0)),  # up to the north pole
        ((-90.0, -87.5), (100.0, 110.0)),  # down to the south pole
    ],
)
def test_the_3x3_lookup_is_the_nearest_centre_of_all(
    districts: Districts, lat: tuple[float, float], lon: tuple[float, float]
) -> None:
    la, lo = points(3000, lat, lon)
    lo = (lo + 180.0) % 360.0 - 180.0
    truth = brute_force(districts.cells, la, lo)
    assert (districts.lookup(la, lo) == truth).all()
    # The one-point path is the same partition.
    assert [districts.cells.locate(a, b) for a, b in zip(la[:300], lo[:300], strict=True)] == (
        truth[:300].tolist()
    )


def test_a_lookup_sees_nine_centres_however_many_points() -> None:
    """Constant cost: the work per point is 3 x 3 candidates, not a search of all centres."""
    lattice = Lattice(DISTRICT_DEG, key=1)
    calls: list[int] = []
    real = lattice.centres

    def counting(row: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(np.asarray(row).size)
        return real(row, column)

    lattice.centres = counting  # type: ignore[method-assign]
    for n in (1, 1000):
        calls.clear()
        lattice.lookup(*points(n, (0.0, 40.0), (0.0, 90.0)))
        assert sum(calls) == 9 * n


def test_same_seed_same_districts_and_styles_other_seed_others() -> None:
    lat, lon = points(2000, (8.0, 30.0), (70.0, 90.0))
    one, again, other = Districts(0), Districts(0), Districts(1)
    ids = one.lookup(lat, lon)
    assert (again.lookup(lat, lon) == ids).all()
    # Ids name lattice cells; another seed moves every centre, so borders move.
    assert (other.lookup(lat, lon) != ids).mean() > 0.15
    assert all(other.cells.centre(int(d)) != one.cells.centre(int(d)) for d in ids[:100])
    for district in np.unique(ids)[:50]:
        assert one.style(int(district)) == again.style(int(district))
    differ = [one.style(int(d)) != other.style(int(d)) for d in np.unique(ids)[:50]]
    assert all(differ)


def test_districts_are_about_25_km_across(districts: Districts) -> None:
    lat, lon = points(60_000, (15.0, 25.0), (75.0, 85.0), seed=1)
    ids = districts.lookup(lat, lon)
    cells = len(np.unique(ids))
    # One centre per lattice cell: the box holds 1,600 of them.
    assert abs(cells - (10 / DISTRICT_DEG) ** 2) < 100
    area_km2 = 10 * 111.2 * 10 * 111.2 * math.cos(math.radians(20)) / cells
    diameter = math.sqrt(4 * area_km2 / math.pi)
    assert 25 < diameter < 32
    # No district sprawls: every point lies within ~30 km of its own centre, and every
    # centre lies in its own district.
    centres = np.array([districts.cells.centre(int(d)) for d in ids[:3000]])
    far = haversine_km(lat[:3000], lon[:3000], centres[:, 0], centres[:, 1])
    assert far.max() < 30 and np.median(far) < 14
    for district in np.unique(ids)[:200]:
        assert districts.cells.locate(*districts.cells.centre(int(district))) == district


def test_styles_vary_within_their_ranges(districts: Districts) -> None:
    lat, lon = points(3000, (8.0, 30.0), (70.0, 90.0), seed=2)
    styles = [districts.style(int(d)) for d in np.unique(districts.lookup(lat, lon))]
    assert {s.landmark for s in styles} == set(LANDMARKS)
    assert {s.crown for s in styles} == set(CROWNS)
    heights = np.array([s.height for s in styles])
    assert HEIGHT_RANGE[0] <= heights.min() and heights.max() <= HEIGHT_RANGE[1]
    assert np.ptp(heights) > 0.5
    grids = np.array([s.grid_bearing for s in styles])
    assert grids.min() >= 0 and grids.max() < 180
    for style in styles[:50]:
        assert len(style.sites) == LANDMARK_SITES
        assert districts.cells.locate(*style.centre) == style.district


def test_neighbouring_districts_look_more_alike_than_far_ones(districts: Districts) -> None:
    """Regions and the grain of the land: likeness falls off past the district's border."""
    lat, lon = points(1500, (12.0, 26.0), (74.0, 86.0), seed=3)
    rng = np.random.default_rng(3)
    bearing = rng.uniform(0, 2 * np.pi, len(lat))

    def at(km: float) -> tuple[list, float]:
        d_lat = km / 111.2 * np.cos(bearing)
        d_lon = km / 111.2 * np.sin(bearing) / np.cos(np.radians(lat))
        a = [districts.at(x, y) for x, y in zip(lat, lon, strict=True)]
        b = [districts.at(x, y) for x, y in zip(lat + d_lat, lon + d_lon, strict=True)]
        other = [(s, t) for s, t in zip(a, b, strict=True) if s.district != t.district]
        same_kind = np.mean([s.landmark == t.landmark for s, t in other])
        turn = np.array([abs(s.grid_bearing - t.grid_bearing) % 180 for s, t in other])
        return other, float(same_kind), float(np.median(np.minimum(turn, 180 - turn)))

    near, near_kind, near_turn = at(25.0)
    _, far_kind, far_turn = at(300.0)
    assert len(near) > 0.8 * len(lat), "25 km apart is mostly another district"
    assert near_kind > far_kind + 0.25
    assert near_turn < 25 < 35 < far_turn


def test_skyline_changes_smoothly(districts: Districts) -> None:
    lat, lon = points(400, (12.0, 26.0), (74.0, 86.0), seed=4)

    def change(d_deg: float) -> float:
        return float(
            np.median(
                [
                    np.abs(districts.skyline(a, b) - districts.skyline(a + d_deg, b)).sum()
                    for a, b in zip(lat, lon, strict=True)
                ]
            )
        )

    one_km, twenty_km, far = change(0.009), change(0.18), change(3.0)
    assert one_km < 0.05 * far
    assert one_km < twenty_km < 0.8 * far
    assert districts.skyline(10.0, 179.999).shape == (module.SKYLINE_ORDERS, 2)
    np.testing.assert_allclose(districts.skyline(10.0, 180.0), districts.skyline(10.0, -180.0))


def test_bearings_to_landmark_sites() -> None:
    north, east, south, west = bearings(
        20.0, 80.0, ((20.1, 80.0), (20.0, 80.1), (19.9, 80.0), (20.0, 79.9))
    )
    assert north == pytest.approx(0.0, abs=1e-9)
    assert east == pytest.approx(90.0)
    assert south == pytest.approx(180.0)
    assert west == pytest.approx(270.0)
    # Across the antimeridian a site just east is still east.
    assert bearings(0.0, 179.99, ((0.0, -179.99),))[0] == pytest.approx(90.0)


def test_every_kind_a_district_can_get_has_a_shape() -> None:
    assert set(TREES) == set(CROWNS)
    assert set(LANDMARK_SHAPES) == set(LANDMARKS)
