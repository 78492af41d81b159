from __future__ import annotations

import numpy as np
import pytest

from geotag.doubt import confidence
from geotag.errors import InputError


def test_the_three_scores_rank_a_sure_photo_above_an_unsure_one() -> None:
    lat, lon = np.array([0.0, 0.0, 0.0]), np.array([0.0, 1.0, 20.0])
    sure = [0.9, 0.1, 0.0]
    near_doubt = [0.5, 0.5, 0.0]  # between two neighbouring cells
    far_doubt = [0.5, 0.0, 0.5]  # between two ends
    p = np.array([sure, near_doubt, far_doubt])
    top = confidence.confidence_values("top_probability", p, lat, lon)
    entropy = confidence.confidence_values("entropy", p, lat, lon)
    spread = confidence.confidence_values("spread_km", p, lat, lon)
    assert top[0] > top[1] == top[2]
    assert entropy[0] > entropy[1] == pytest.approx(entropy[2])
    # Only the spread tells a doubt between neighbours from one between far ends.
    assert spread[1] == pytest.approx(-0.5 * 111.19, rel=0.01)
    assert spread[0] > spread[1] > spread[2]


def test_selective_curve_answers_the_surest_first() -> None:
    conf = np.array([0.9, 0.1, 0.8, 0.2])
    correct = np.array([True, False, True, False])
    km = np.array([10.0, 900.0, 30.0, 700.0])
    curve = confidence.selective_curve(conf, correct, km, np.array([0.5, 1.0]))
    assert curve["top1"].tolist() == [1.0, 0.5]
    assert curve["median_km"].tolist() == [20.0, 365.0]
    # A score that ranks the right answers first beats one that ranks them last.
    assert confidence.selective_score(conf, correct) > confidence.selective_score(-conf, correct)


def test_the_choice_takes_the_best_mean_over_folds() -> None:
    folds = [
        {"top_probability": 0.6, "entropy": 0.7, "spread_km": 0.5},
        {"top_probability": 0.6, "entropy": 0.4, "spread_km": 0.55},
    ]
    assert confidence.choose_score(folds) == "top_probability"  # 0.6 vs 0.55 vs 0.525
    with pytest.raises(InputError):
        confidence.choose_score([])


def test_rank_is_the_share_of_the_calibration_split_less_sure() -> None:
    reference = np.array([0.1, 0.2, 0.3, 0.4])
    assert confidence.rank(np.array([0.05, 0.25, 0.4, 0.9]), reference).tolist() == [
        0.0, 0.5, 0.75, 1.0,
    ]  # fmt: skip


def test_an_unknown_score_is_refused() -> None:
    with pytest.raises(InputError, match="unknown confidence score"):
        confidence.confidence_values("luck", np.ones((1, 2)) / 2, np.zeros(2), np.zeros(2))
