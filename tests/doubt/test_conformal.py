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
