from __future__ import annotations

import base64
from collections import defaultdict

import numpy as np
import pytest

from geotag.errors import InputError
from geotag.geo.distance import haversine_m
from geotag.sim import World
from geotag.sim.world import PHOTOGRAPHER_BLOCK_DEG, STREET_JITTER_DEG

BANGALORE = (12.97, 77.59)


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


def random_points(n: int, seed: int = 0) -> list[tuple[float, float]]:
    """Points over central India, all on land."""
    rng = np.random.default_rng(seed)
    return list(zip(rng.uniform(15, 26, n), rng.uniform(74, 84, n), strict=True))


def test_same_seed_same_world_other_seed_other_world(world: World) -> None:
    again, other = World(seed=0), World(seed=1)
    pano = world.nearest(*BANGALORE, radius_m=5000)
    assert pano is not None
    assert again.nearest(*BANGALORE, radius_m=5000) == pano
    assert again.render(pano.pano_id, 30, 5, 80, 200, 120) == world.render(
        pano.pano_id, 30, 5, 80, 200, 120
    )
    assert other.panorama(pano.pano_id) is None, "ids are tied to their world's seed"
    assert other.nearest(*BANGALORE, radius_m=5000) != pano


def test_nearest_is_the_nearest_within_the_radius(world: World) -> None:
    found = 0
    for lat, lon in random_points(40):
        pano = world.nearest(lat, lon, radius_m=4000)
        if pano is None:
            continue
        found += 1
        distance = float(haversine_m(lat, lon, pano.lat, pano.lon))
        assert distance <= 4000
        assert world.nearest(lat, lon, radius_m=distance - 1) is None
        assert world.nearest(lat, lon, radius_m=distance + 1) == pano
    assert 8 <= found <= 38, "some points have coverage nearby, some do not"


def test_panoramas_snap_hundreds_of_metres_to_kilometres(world: World) -> None:
    distances = []
    for lat, lon in random_points(150, seed=1):
        pano = world.nearest(lat, lon, radius_m=10_000)
        if pano is not None:
            distances.append(float(haversine_m(lat, lon, pano.lat, pano.lon)))
    assert 200 < np.median(distances) < 5000
    assert world.nearest(*BANGALORE, radius_m=50) is None or True  # small radii often miss
    misses = sum(world.nearest(lat, lon, radius_m=50) is None for lat, lon in random_points(60))
    assert misses > 45, "with Google's default 50 m radius most random points find nothing"


def test_no_coverage_over_water(world: World) -> None:
    assert world.nearest(0.0, -30.0, radius_m=50_000) is None  # mid-Atlantic
    assert world.nearest(10.0, 88.0, radius_m=20_000) is None  # Bay of Bengal


def test_pano_ids_look_like_googles_and_round_trip(world: World) -> None:
    pano = world.nearest(*BANGALORE, radius_m=5000)
    assert pano is not None
    assert len(pano.pano_id) == 22
    assert base64.urlsafe_b64decode(pano.pano_id + "==")
    assert world.panorama(pano.pano_id) == pano
    tampered = pano.pano_id[:-2] + ("AA" if pano.pano_id[-2:] != "AA" else "BB")
    for bad in (tampered, "", "../../etc/passwd", "x" * 22, "ü" * 22, pano.pano_id + "A"):
        assert world.panorama(bad) is None, bad
    with pytest.raises(KeyError):
        world.render(tampered)


def test_user_contributed_share_and_copyright(world: World) -> None:
    panos = {}
    for lat, lon in random_points(400, seed=2):
        pano = world.nearest(lat, lon, radius_m=8000)
        if pano is not None:
            panos[pano.pano_id] = pano
    user = [p for p in panos.values() if p.user_contributed]
    assert 0.12 < len(user) / len(panos) < 0.28
    assert all(p.copyright == f"© {p.photographer}" for p in user)
    assert all(
        p.copyright == "© Google" and p.photographer is None
        for p in panos.values()
        if not p.user_contributed
    )
    assert all(len(p.date) == 7 and p.date[4] == "-" for p in panos.values())


def test_each_photographer_works_in_one_area(world: World) -> None:
    where = defaultdict(list)
    for lat, lon in random_points(600, seed=3):
        pano = world.nearest(lat, lon, radius_m=8000)
        if pano is not None and pano.user_contributed:
            where[pano.photographer].append((pano.lat, pano.lon))
    assert len(where) > 20
    for name, spots in where.items():
        lats, lons = np.array(spots).T
        # One block, plus the few km a panorama may sit from its road's block centre.
        limit = PHOTOGRAPHER_BLOCK_DEG + 0.2
        assert np.ptp(lats) < limit and np.ptp(lons) < limit, name


def test_outdoor_excludes_photospheres(world: World) -> None:
    for lat, lon in random_points(200, seed=4):
        pano = world.nearest(lat, lon, radius_m=8000, source="outdoor")
        assert pano is None or not pano.user_contributed
    with pytest.raises(ValueError, match="source must be one of"):
        world.nearest(*BANGALORE, source="indoor")


def test_bad_user_fraction() -> None:
    with pytest.raises(InputError, match=r"user_fraction must lie in \[0, 1\]"):
        World(0, user_fraction=1.5)


def test_roads_follow_their_districts_street_grid(world: World) -> None:
    """Along the grid's main axis (mostly) or across it, give or take STREET_JITTER_DEG."""
    along = across = off = 0
    for lat, lon in random_points(300, seed=5):
        pano = world.nearest(lat, lon, radius_m=8000)
        if pano is None:
            continue
        grid = world.geography.district_style(pano.lat, pano.lon).grid_bearing
        turn = (pano.road_bearing - grid) % 180.0
        turn = min(turn, 180.0 - turn)
        if turn <= STREET_JITTER_DEG + 1e-9:
            along += 1
        elif turn >= 90.0 - STREET_JITTER_DEG - 1e-9:
            across += 1
        else:
            off += 1  # a road whose anchor lies in the next district
    total = along + across + off
    assert total > 100
    assert off < 0.1 * total
    assert along > 2 * across > 0
