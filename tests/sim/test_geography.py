from __future__ import annotations

import numpy as np
import pytest

from geotag.sim.geography import FIELD_NAMES, Geography


@pytest.fixture(scope="module")
def geography() -> Geography:
    return Geography(seed=0)


def pairs_at(km: float, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``n`` pairs of points ``km`` apart over India, in random directions."""
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(10, 28, n), rng.uniform(72, 88, n)
    bearing = rng.uniform(0, 2 * np.pi, n)
    d_lat = km / 111.2 * np.cos(bearing)
    d_lon = km / 111.2 * np.sin(bearing) / np.cos(np.radians(lat))
    return lat, lon, lat + d_lat, lon + d_lon


def test_fields_lie_in_0_1_and_spread(geography: Geography) -> None:
    lat, lon, _, _ = pairs_at(0.0)
    values = geography.fields(lat, lon)
    assert values.shape == (len(lat), len(FIELD_NAMES))
    assert values.min() >= 0 and values.max() <= 1
    assert (values.std(axis=0) > 0.18).all() and (values.std(axis=0) < 0.35).all()


def test_likeness_of_fields_falls_off_gradually_with_distance(geography: Geography) -> None:
    """Sub-cell signal: places 25 km apart differ, but less than places 200 km apart."""

    def change(km: float) -> np.ndarray:
        lat, lon, lat2, lon2 = pairs_at(km, seed=int(km))
        return np.abs(geography.fields(lat, lon) - geography.fields(lat2, lon2)).mean(axis=1)

    levels = {km: change(km) for km in (1.0, 10.0, 25.0, 200.0, 3000.0)}
    medians = [float(np.median(v)) for v in levels.values()]
    assert medians == sorted(medians)
    far = medians[-1]
    assert medians[0] < 0.1 * far  # one km: nearly the same place
    assert 0.3 * far < medians[2] < 0.7 * far  # 25 km: a different place, of the same region
    # The question retrieval inside a 400 km cell asks, on the true fields.
    assert (levels[25.0][:, None] < levels[200.0][None, :]).mean() > 0.7


def test_a_place_carries_its_district_and_skyline(geography: Geography) -> None:
    place = geography.place(21.5, 79.25)
    assert place is geography.place(21.5, 79.25), "cached: a panorama is drawn many times"
    assert place.district == geography.district_style(21.5, 79.25)
    assert len(place.landmarks) == len(place.district.sites)
    assert all(0 <= b < 360 for b in place.landmarks)
    assert np.array(place.skyline).shape == (7, 2)
    other = Geography(seed=1).place(21.5, 79.25)
    assert other.district != place.district and other.skyline != place.skyline
