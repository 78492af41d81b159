"""Split conformal prediction sets of cells, with adaptive prediction sets' score.

Score (APS, Romano, Sesia and Candès 2020, without randomisation): the probability mass of
the cells ranked above the true one. On a calibration split of n photos the threshold is
the ceil((n+1)q)-th smallest score, and a new photo's set is every cell whose mass ranked
above it is at most that threshold: the most probable cell, then the next ones until that
much mass is spent. If calibration and new photos are exchangeable, the true cell is in the
set with probability at least q (Vovk et al. 2005); over calibration splits, the coverage
of one split follows Beta(k, n + 1 - k), k = ceil((n+1)q), when scores do not tie
(:func:`coverage_distribution`).

Why this score and not the smallest-sets one (LAC: 1 - p(true cell), Sadinle et al. 2019):
LAC gives the smallest sets on average by spending its coverage on the easy photos, so a
photo the model is unsure of is covered less often than the target. APS sets grow with the
photo's own doubt, so its coverage is more even across photos and across cells, which
``eval`` reports (the worst tenth of cells). Without randomisation a photo's region is the
same on every run, and the guarantee holds as it does for any score; the most probable
cell is always in the set, so no set is empty. The price is a set a little larger than a
randomised one's.
"""

from __future__ import annotations

import math

import numpy as np

from geotag.doubt.temperature import check_probabilities
from geotag.errors import InputError

#: Scores are sums of probabilities (not exact in float64) and are stored to 9 decimals:
#: a score this close to the threshold counts as at it.
SLACK = 1e-9


def check_coverage(coverage: float, option: str = "coverage") -> float:
    """A target coverage in (0, 1), or one line naming ``option``."""
    if isinstance(coverage, bool) or not isinstance(coverage, int | float):
        raise InputError(f"{option} must be a number between 0 and 1; got {coverage!r}")
    if not (math.isfinite(coverage) and 0.0 < coverage < 1.0):
        raise InputError(f"{option} must lie strictly between 0 and 1; got {coverage:g}")
    return float(coverage)


def _order(p: np.ndarray) -> np.ndarray:
    """Each row's classes, most probable first (ties: the lower class first)."""
    return np.argsort(-p, axis=1, kind="stable")


def mass_above(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, above): each row's classes best first, and per position the probability
    mass of the classes ranked above it (0 for the first)."""
    p = check_probabilities(probs)
    order = _order(p)
    ranked = np.take_along_axis(p, order, axis=1)
    above = np.cumsum(ranked, axis=1) - ranked
    above[:, 0] = 0.0
    return order, above


def scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The APS score of each photo's true class; +inf for a photo whose cell is no class
    (label -1): no set covers it."""
    p = check_probabilities(probs)
    y = np.asarray(labels).astype(np.int64)
    if y.shape != (len(p),) or ((y < -1) | (y >= p.shape[1])).any():
        raise InputError(f"need one label in -1..{p.shape[1] - 1} per row")
    order, above = mass_above(p)
    out = np.full(len(p), np.inf)
    known = np.flatnonzero(y >= 0)
    if len(known):
        position = np.argmax(order[known] == y[known, None], axis=1)
        out[known] = above[known, position]
    return out


def threshold(calibration_scores: np.ndarray, coverage: float) -> float:
    """The conformal threshold for ``coverage``: the ceil((n+1)q)-th smallest calibration
    score; +inf (every cell) when the split is too small for the target."""
    check_coverage(coverage)
    s = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    s = s[np.isfinite(s)]
    rank = math.ceil((len(s) + 1) * coverage)
    if len(s) == 0 or rank > len(s):
        return math.inf
    return float(s[rank - 1])


def prediction_sets(probs: np.ndarray, cutoff: float) -> np.ndarray:
    """(N, K) bool: the cells in each photo's set at threshold ``cutoff``."""
    order, above = mass_above(probs)
    inside = above <= cutoff + SLACK
    out = np.zeros(order.shape, dtype=bool)
    np.put_along_axis(out, order, inside, axis=1)
    return out


def covered(probs: np.ndarray, labels: np.ndarray, cutoff: float) -> np.ndarray:
    """Whether each photo's true cell is in its set (never, for a cell that is no class)."""
    s = scores(probs, labels)
    return np.isfinite(s) & (s <= cutoff + SLACK)


def coverage_distribution(n: int, coverage: float) -> tuple[float, float]:
    """(a, b) of the Beta law the coverage of one calibration split of ``n`` follows
    (scores without ties): mean a / (a + b) >= ``coverage``. (0, 0) when n is too small."""
    check_coverage(coverage)
    rank = math.ceil((n + 1) * coverage)
    if n < 1 or rank > n:
        return 0.0, 0.0
    return float(rank), float(n + 1 - rank)
