"""Confidence scores, and how well each one ranks photos for selective prediction.

Selective prediction answers only the photos it is surest of: ranked by a confidence score,
the top share is answered and the rest get "not sure". Three scores are tried on each
fold's inner validation split (calibrated probabilities):

- ``top_probability``: the most probable cell's probability;
- ``entropy``: minus the entropy of the probabilities over cells (nats);
- ``spread_km``: minus the expected distance, under the probabilities, between the most
  probable cell's point and the photo's cell: a doubt between two neighbouring cells costs
  little, one between two ends of the country a lot.

The run keeps the one whose accuracy, averaged over the shares answered (10%, 20% ...
100%), is highest on the inner splits (:func:`selective_score`). A photo's confidence is
then its rank among the inner split's photos: the share of them less confident than it,
so ``--min-confidence 0.2`` refuses roughly the least sure fifth of photos like those the
run was calibrated on.
"""

from __future__ import annotations

import numpy as np

from geotag.doubt.temperature import check_probabilities
from geotag.errors import InputError

CONFIDENCE_SCORES = ("top_probability", "entropy", "spread_km")
#: The shares answered that the choice averages accuracy over.
CHOICE_SHARES = tuple(np.round(np.arange(0.1, 1.01, 0.1), 2))
#: The shares eval reports the figures at (metrics.json).
REPORTED_SHARES = (0.5, 0.8, 1.0)
_ROWS = 2_048


def confidence_values(
    kind: str, probs: np.ndarray, point_lat: np.ndarray, point_lon: np.ndarray
) -> np.ndarray:
    """Per photo, the confidence score ``kind`` (higher: surer). ``point_lat/lon`` are the
    classes' points (used by ``spread_km``)."""
    p = check_probabilities(probs)
    if kind == "top_probability":
        return p.max(axis=1)
    if kind == "entropy":
        safe = np.where(p > 0, p, 1.0)
        return (p * np.log(safe)).sum(axis=1)
    if kind == "spread_km":
        from geotag.geo.distance import haversine_km

        lat, lon = np.asarray(point_lat, float), np.asarray(point_lon, float)
        if lat.shape != (p.shape[1],) or lon.shape != lat.shape:
            raise InputError(f"spread_km needs one point per class ({p.shape[1]})")
        top = p.argmax(axis=1)
        out = np.empty(len(p))
        for s in range(0, len(p), _ROWS):  # (rows, K) distances at a time, not (N, K)
            rows = slice(s, s + _ROWS)
            apart = haversine_km(
                lat[top[rows], None], lon[top[rows], None], lat[None, :], lon[None, :]
            )
            out[rows] = -(p[rows] * apart).sum(axis=1)
        return out
    raise InputError(f"unknown confidence score {kind!r}; one of {', '.join(CONFIDENCE_SCORES)}")


def answered_first(confidence: np.ndarray) -> np.ndarray:
    """Photo indices, surest first (ties keep their order)."""
    return np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")


def answered_count(n: int, share: float) -> int:
    """How many of ``n`` photos a share answers: at least one."""
    return max(1, min(n, round(share * n)))


def selective_curve(
    confidence: np.ndarray, correct: np.ndarray, errors_km: np.ndarray, shares: np.ndarray
) -> dict[str, np.ndarray]:
    """Accuracy and median km of the photos answered, for each share answered (surest
    first): ``{"share", "top1", "median_km"}``."""
    right = np.asarray(correct, dtype=float)
    km = np.asarray(errors_km, dtype=float)
    if not (len(right) == len(km) == len(confidence)) or len(right) == 0:
        raise InputError("selective_curve needs one confidence, answer and error per photo")
    order = answered_first(confidence)
    top1, median = [], []
    for share in shares:
        chosen = order[: answered_count(len(order), float(share))]
        top1.append(right[chosen].mean())
        median.append(float(np.median(km[chosen])))
    return {
        "share": np.asarray(shares, dtype=float),
        "top1": np.asarray(top1),
        "median_km": np.asarray(median),
    }


def selective_score(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Mean accuracy of the answered photos over :data:`CHOICE_SHARES`: what the choice of
    score maximises (the area under the accuracy-coverage curve, sampled)."""
    right = np.asarray(correct, dtype=float)
    order = answered_first(confidence)
    return float(
        np.mean([right[order[: answered_count(len(order), s)]].mean() for s in CHOICE_SHARES])
    )


def choose_score(per_fold: list[dict[str, float]]) -> str:
    """The score with the highest mean :func:`selective_score` over folds (ties: the
    simpler, in :data:`CONFIDENCE_SCORES` order)."""
    if not per_fold:
        raise InputError("no fold's selective scores to choose a confidence score from")
    means = {k: float(np.mean([fold[k] for fold in per_fold])) for k in CONFIDENCE_SCORES}
    return max(CONFIDENCE_SCORES, key=lambda k: (round(means[k], 12), -CONFIDENCE_SCORES.index(k)))


def rank(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each value's confidence: the share of ``reference`` (the inner split's values,
    sorted) strictly below it, in [0, 1]."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    if len(ref) == 0:
        return np.full(len(np.atleast_1d(values)), np.nan)
    return np.searchsorted(ref, np.asarray(values, dtype=np.float64), side="left") / len(ref)
