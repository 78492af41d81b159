from __future__ import annotations

import numpy as np
import pytest

from geotag.errors import InputError
from geotag.evaluate.baselines import baselines
from geotag.geo.distance import haversine_km


def test_baselines_against_hand_computed_cases() -> None:
    # Training: class 2 three times, class 0 once; all on the equator at lon 0 and 2.
    train_class = [2, 2, 0, 2]
    train_lat = [0.0, 0.0, 0.0, 0.0]
    train_lon = [0.0, 2.0, 0.0, 2.0]
    # Scored: two of class 2, one of class 1, one of a cell that is no class (-1).
    true_class = [2, 1, 2, -1]
    true_lat = [0.0, 0.0, 0.0, 0.0]
    true_lon = [1.0, 1.0, 3.0, 5.0]
    out = baselines(train_class, train_lat, train_lon, true_class, true_lat, true_lon)
    assert out["majority_top1"] == pytest.approx(2 / 4)
    # The training images' mean location is (0, 1): errors 0, 0, 2 and 4 degrees of arc.
    degree = float(haversine_km(0.0, 0.0, 0.0, 1.0))
    assert out["mean_location_median_km"] == pytest.approx(1 * degree, rel=1e-9)
    assert out["mean_location_mean_km"] == pytest.approx(6 / 4 * degree, rel=1e-9)
    # A random training image is at lon 0 or 2: never closer than 1 degree from lon 1.
    assert out["random_image_median_km"] >= degree * (1 - 1e-9)
    assert baselines(train_class, train_lat, train_lon, true_class, true_lat, true_lon) == out


def test_majority_ties_go_to_the_lower_class_and_unknowns_never_match() -> None:
    out = baselines([3, 1, 3, 1], [0.0] * 4, [0.0] * 4, [1, 3, -1], [0.0] * 3, [0.0] * 3)
    assert out["majority_top1"] == pytest.approx(1 / 3)
    unknown = baselines([-1, -1], [0.0] * 2, [0.0] * 2, [-1], [0.0], [0.0])
    assert unknown["majority_top1"] == 0.0


def test_baselines_refuse_empty_or_ragged_input() -> None:
    with pytest.raises(InputError, match="at least one training"):
        baselines([], [], [], [1], [0.0], [0.0])
    with pytest.raises(InputError, match="one class and one location"):
        baselines([1, 2], [0.0], [0.0, 0.0], [1], [0.0], [0.0])
    assert np.isfinite(baselines([1], [10.0], [20.0], [1], [10.0], [20.0])["random_image_mean_km"])
