from __future__ import annotations

import numpy as np
import pytest

from geotag.doubt import temperature
from geotag.errors import InputError


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_photos(
    rng: np.random.Generator, n: int, k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Photos whose labels are drawn from the model's own probabilities: calibrated."""
    p = _softmax(rng.normal(0.0, 1.5, (n, k)))
    labels = np.array([rng.choice(k, p=row) for row in p])
    return p, labels


def test_the_fit_finds_the_temperature_that_made_a_model_over_confident() -> None:
    rng = np.random.default_rng(0)
    p, labels = _calibrated_photos(rng, 6_000)
    sharpened = temperature.scale(p, 1 / 2.5)  # logits x 2.5: over-confident
    fitted = temperature.fit_temperature(sharpened, labels)
    assert fitted == pytest.approx(2.5, rel=0.08)
    before = temperature.expected_calibration_error(sharpened, labels)
    after = temperature.expected_calibration_error(temperature.scale(sharpened, fitted), labels)
    assert after < before / 3
    assert temperature.negative_log_likelihood(
        temperature.scale(sharpened, fitted), labels
    ) < temperature.negative_log_likelihood(sharpened, labels)


def test_scaling_keeps_each_photos_ranking_of_cells() -> None:
    rng = np.random.default_rng(1)
    p = _softmax(rng.normal(0, 2, (50, 7)))
    for t in (0.3, 1.0, 4.0):
        scaled = temperature.scale(p, t)
        assert np.allclose(scaled.sum(axis=1), 1.0)
        assert (np.argsort(-scaled, axis=1) == np.argsort(-p, axis=1)).all()


def test_ece_by_hand_with_a_photo_of_no_class_counting_as_wrong() -> None:
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = np.array([0, -1, 0, 1])
    bins = temperature.reliability(p, labels)
    # Two bins used: 0.95 (1 of 2 right) and 0.55 (1 of 2 right).
    assert bins.count.sum() == 4
    assert bins.ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def test_a_split_without_any_class_keeps_temperature_one() -> None:
    assert temperature.fit_temperature(np.full((3, 2), 0.5), np.array([-1, -1, -1])) == 1.0


@pytest.mark.parametrize(
    ("probs", "labels"),
    [(np.ones((2, 2)), np.array([0, 2])), (np.ones(3), np.array([0])), (-np.ones((1, 2)), [0])],
)
def test_bad_shapes_or_labels_are_refused(probs: np.ndarray, labels: object) -> None:
    with pytest.raises(InputError):
        temperature.reliability(probs, np.asarray(labels))


def test_the_ece_floor_is_what_a_calibrated_model_shows_on_a_small_sample() -> None:
    rng = np.random.default_rng(4)
    p, _ = _calibrated_photos(rng, 400)
    floor = temperature.ece_floor(p)
    measured = [
        temperature.expected_calibration_error(p, np.array([rng.choice(10, p=r) for r in p]))
        for _ in range(20)
    ]
    # A calibrated model's ECE on 400 photos is not 0: it sits at the floor.
    assert 0.02 < floor < 0.1
    assert np.mean(measured) == pytest.approx(floor, rel=0.25)
    # Ten times the photos, about a third of the floor: the bias shrinks as 1/sqrt(n).
    big, _ = _calibrated_photos(rng, 4_000)
    assert temperature.ece_floor(big) < floor / 2
