from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod

from geotag.errors import InputError
from geotag.geo.distance import geoscore, haversine_km, spherical_mean

GEOD = Geod(ellps="WGS84")
#: The mean-radius sphere is off the WGS84 ellipsoid by at most ~0.56%, on short north-south
#: arcs: the meridian's radius of curvature runs from 6335 km (equator) to 6400 km (poles).
SPHERE_VS_ELLIPSOID = 0.006


def test_haversine_agrees_with_the_ellipsoid() -> None:
    rng = np.random.default_rng(0)
    lat1, lat2 = rng.uniform(-85, 85, (2, 2000))
    lon1, lon2 = rng.uniform(-180, 180, (2, 2000))
    _, _, metres = GEOD.inv(lon1, lat1, lon2, lat2)
    far = metres > 10_000  # relative error of near-coincident points is noise
    ratio = haversine_km(lat1, lon1, lat2, lon2)[far] / (metres[far] / 1000)
    assert np.abs(ratio - 1).max() < SPHERE_VS_ELLIPSOID
    assert np.median(np.abs(ratio - 1)) < 0.003


def test_geoscore() -> None:
    assert geoscore(0.0) == 5000.0
    assert geoscore(1492.7) == pytest.approx(5000 / math.e)
    assert isinstance(geoscore(10), float)
    scores = geoscore(np.array([0.0, 1492.7, 20_000.0]))
    assert isinstance(scores, np.ndarray)
    assert scores == pytest.approx([5000, 5000 / math.e, 5000 * math.exp(-20_000 / 1492.7)])


def test_spherical_mean_across_the_antimeridian() -> None:
    lat, lon = spherical_mean([10.0, 10.0], [179.5, -179.5], [1.0, 1.0])
    assert abs(float(lon)) == pytest.approx(180.0)
    assert float(lat) == pytest.approx(10.0, abs=1e-3)
    # Unequal weights pull towards the heavier point, still on the far side of the globe.
    _, lon = spherical_mean([0.0, 0.0], [179.0, -179.0], [3.0, 1.0])
    assert float(lon) == pytest.approx(179.5, abs=0.01)


def test_spherical_mean_is_vectorised_over_rows() -> None:
    lat = np.array([[0.0, 0.0, 0.0], [20.0, 20.0, 0.0], [-30.0, 40.0, 0.0]])
    lon = np.array([[10.0, 20.0, 30.0], [100.0, 100.0, 0.0], [5.0, 5.0, 5.0]])
    weights = np.array([[1.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    mean_lat, mean_lon = spherical_mean(lat, lon, weights)
    assert mean_lat.shape == mean_lon.shape == (3,)
    assert mean_lat == pytest.approx([0.0, 20.0, 40.0], abs=1e-9)
    assert mean_lon == pytest.approx([20.0, 100.0, 5.0], abs=1e-9)


def test_spherical_mean_at_the_poles() -> None:
    # Two points at 89 N on opposite meridians meet at the pole, not at 89 N, 90 E.
    lat, lon = spherical_mean([89.0, 89.0], [0.0, 180.0], [1.0, 1.0])
    assert float(lat) == pytest.approx(90.0)
    assert float(lon) == 0.0
    lat, _ = spherical_mean([-90.0, -90.0], [30.0, -150.0], [0.2, 0.8])
    assert float(lat) == pytest.approx(-90.0)


def test_a_balanced_mean_falls_back_to_the_top_weighted_point() -> None:
    # Antipodes with equal weight have no mean direction: the first top-weighted point wins.
    lat, lon = spherical_mean([[10.0, -10.0]], [[20.0, -160.0]], [[0.5, 0.5]])
    assert (lat[0], lon[0]) == (10.0, 20.0)
    lat, lon = spherical_mean([[10.0, 50.0]], [[20.0, 60.0]], [[0.0, 0.0]])
    assert (lat[0], lon[0]) == (10.0, 20.0)


def test_spherical_mean_refuses_bad_weights() -> None:
    with pytest.raises(InputError, match="non-negative"):
        spherical_mean([0.0, 1.0], [0.0, 1.0], [1.0, -1.0])
    with pytest.raises(InputError, match="at least one point"):
        spherical_mean(np.zeros((2, 0)), np.zeros((2, 0)), np.zeros((2, 0)))
