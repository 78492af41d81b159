from __future__ import annotations

import math

import numpy as np
import pytest

from geotag.doubt import conformal
from geotag.errors import InputError

K = 20


def _photos(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic photos: a true class, and an over-confident model's probabilities (logits
    with a signal for the true class, scaled up 3x): right about half the time."""
    labels = rng.integers(0, K, n)
    logits = rng.normal(0.0, 1.0, (n, K))
    logits[np.arange(n), labels] += 1.5
    z = 3.0 * logits
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True), labels


def test_coverage_holds_over_200_random_calibration_splits_and_spreads_as_the_bound_says() -> None:
    """Split conformal's promise, checked statistically: over 200 calibration/test draws
    the mean coverage is at least the target (less 0.01), it sits on the finite-sample law's
    mean k/(n+1), and its spread is the Beta(k, n+1-k) law's plus the test set's own noise.
    A threshold one rank too low (floor instead of ceil) loses 0.02 and fails the first."""
    rng = np.random.default_rng(7)
    target, n_cal, n_test, draws = 0.9, 50, 5_000, 200
    coverages = []
    for _ in range(draws):
        p_cal, y_cal = _photos(rng, n_cal)
        p_test, y_test = _photos(rng, n_test)
        cutoff = conformal.threshold(conformal.scores(p_cal, y_cal), target)
        coverages.append(conformal.covered(p_test, y_test, cutoff).mean())
    coverages_a = np.asarray(coverages)
    a, b = conformal.coverage_distribution(n_cal, target)
    beta_mean = a / (a + b)
    beta_var = a * b / ((a + b) ** 2 * (a + b + 1))
    expected_std = math.sqrt(beta_var + beta_mean * (1 - beta_mean) / n_test)
    assert a == math.ceil(51 * 0.9) == 46
    assert coverages_a.mean() >= target - 0.01
    standard_error = coverages_a.std(ddof=1) / math.sqrt(draws)
    assert abs(coverages_a.mean() - beta_mean) < 4 * standard_error
    assert 0.75 < coverages_a.std(ddof=1) / expected_std < 1.25


def test_sets_are_the_most_probable_cells_until_the_threshold_and_agree_with_scores() -> None:
    p = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
    # Mass above: row 0's classes 0, .5, .8, .95; row 1's (best last) .9, .7, .4, 0.
    assert conformal.scores(p, np.array([2, 0])) == pytest.approx([0.8, 0.9])
    sets = conformal.prediction_sets(p, 0.5)
    assert sets.tolist() == [[True, True, False, False], [False, False, True, True]]
    # A photo is covered exactly when its class is in its set.
    for label in range(4):
        y = np.array([label, label])
        assert conformal.covered(p, y, 0.5).tolist() == sets[:, label].tolist()
    # The most probable cell is always in, so no set is empty.
    assert conformal.prediction_sets(p, 0.0).sum(axis=1).tolist() == [1, 1]


def test_threshold_is_the_ceil_n_plus_one_q_th_score_or_every_cell() -> None:
    scores = np.arange(1, 11) / 10.0  # 0.1 .. 1.0, n = 10
    assert conformal.threshold(scores[::-1], 0.5) == pytest.approx(0.6)  # ceil(5.5) = 6th
    assert conformal.threshold(scores, 0.9) == pytest.approx(1.0)  # ceil(9.9) = 10th
    assert conformal.threshold(scores, 0.95) == math.inf  # ceil(10.45) = 11 > 10
    assert conformal.threshold(np.array([]), 0.5) == math.inf
    assert conformal.coverage_distribution(5, 0.9) == (0.0, 0.0)


def test_a_photo_whose_cell_is_no_class_is_never_covered() -> None:
    p = np.full((2, 3), 1 / 3)
    assert conformal.covered(p, np.array([-1, 0]), math.inf).tolist() == [False, True]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan"), True, "0.9"])
def test_a_target_outside_0_1_is_one_line(bad: object) -> None:
    with pytest.raises(InputError, match="coverage"):
        conformal.check_coverage(bad, "--coverage")  # type: ignore[arg-type]


def _places(
    rng: np.random.Generator, n: int, shared: float = 0.9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two photos of each of ``n`` places whose logits share ``shared`` of their variance,
    as a panorama's headings do: their coverage succeeds or fails together."""
    labels = rng.integers(0, K, n)
    base = rng.normal(0.0, 1.0, (n, K))
    base[np.arange(n), labels] += 1.5
    own = rng.normal(0.0, 1.0, (2 * n, K))
    z = 3.0 * (np.repeat(base, 2, axis=0) * math.sqrt(shared) + own * math.sqrt(1 - shared))
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True), np.repeat(labels, 2), np.repeat(np.arange(n), 2)


def test_coverage_range_holds_about_95_in_100_valid_folds_of_clustered_photos() -> None:
    """400 valid calibrations of 60 places (120 photos), each scored on 200 new places: the
    range from the photos' design effect holds the empirical coverage about 95 times in
    100; counting the photos as independent (design effect 1) holds it far less often."""
    rng = np.random.default_rng(3)
    with_effect, as_independent, effects = [], [], []
    for _ in range(400):
        p_cal, y_cal, _ = _places(rng, 60)
        p_test, y_test, places = _places(rng, 200)
        cutoff = conformal.threshold(conformal.scores(p_cal, y_cal), 0.9)
        inside = conformal.covered(p_test, y_test, cutoff)
        effect = conformal.design_effect(inside, places)
        effects.append(effect)
        for ranges, d in ((with_effect, effect), (as_independent, 1.0)):
            low, high = conformal.coverage_range(len(y_cal) / d, len(y_test) / d, 0.9)
            ranges.append(low <= inside.mean() <= high)
    assert 1.3 < np.mean(effects) < 1.9
    assert 0.91 <= np.mean(with_effect) <= 0.99
    assert np.mean(as_independent) <= np.mean(with_effect) - 0.05


def test_coverage_range_narrows_with_more_photos_and_centres_on_the_law() -> None:
    small = conformal.coverage_range(77, 381, 0.9)
    large = conformal.coverage_range(770, 3810, 0.9)
    assert small[0] < large[0] <= 0.9 <= large[1] < small[1]
    assert (small[0] + small[1]) / 2 == pytest.approx(71 / 78, abs=0.02)  # k / (n + 1)
    assert conformal.coverage_range(5, 100, 0.9) == (1.0, 1.0)  # every cell: always covered
    with pytest.raises(InputError, match="level"):
        conformal.coverage_range(77, 381, 0.9, level=1.0)


def test_design_effect_is_the_photos_a_place_when_they_agree_and_one_when_independent() -> None:
    rng = np.random.default_rng(0)
    places = np.repeat(np.arange(500), 3)
    agreeing = np.repeat(rng.random(500) < 0.9, 3)
    assert conformal.design_effect(agreeing, places) == pytest.approx(3.0)
    assert conformal.design_effect(rng.random(1500) < 0.9, places) == pytest.approx(1.0, abs=0.1)
    assert conformal.design_effect(np.ones(1500, bool), places) == 1.0  # no variance at all
    assert conformal.design_effect(agreeing[::3], np.arange(500)) == 1.0  # one photo a place
    # Unequal places: a pair and a single photo of each outcome.
    uneven = conformal.design_effect(
        np.array([1, 1, 0, 0, 1, 0] * 50, bool), np.repeat(np.arange(200), [2, 2, 1, 1] * 50)
    )
    assert 1.4 < uneven <= 1.5  # rho 1, a place holds 1.5 photos on average
