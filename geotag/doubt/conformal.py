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


def coverage_range(
    n_calibration: float, n_scored: float, coverage: float, level: float = 0.95
) -> tuple[float, float]:
    """Where one fold's empirical coverage falls ``level`` of the time if its calibration is
    valid: the split's coverage follows :func:`coverage_distribution`, and the share of
    ``n_scored`` exchangeable photos inside its regions is then Beta-binomial (Angelopoulos
    and Bates 2021, section 3.2); ``n_scored`` infinite gives the split's own coverage of
    all new photos. Sizes may be effective ones (:func:`design_effect`); they are rounded
    down. A split too small for the target gives every cell: (1, 1).

    A coverage outside this range is evidence that the calibration photos did not resemble
    the scored ones; inside it, a coverage below the target is the calibration draw's luck.
    """
    from scipy.stats import beta, betabinom

    if not 0.0 < level < 1.0:
        raise InputError(f"level must lie strictly between 0 and 1; got {level:g}")
    a, b = coverage_distribution(max(0, math.floor(n_calibration)), coverage)
    if a == 0.0:
        return 1.0, 1.0
    tails = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    if math.isinf(n_scored):
        low, high = beta.ppf(tails, a, b)
        return float(low), float(high)
    scored = max(1, math.floor(n_scored))
    low, high = betabinom.ppf(tails, scored, a, b)
    return float(low) / scored, float(high) / scored


def design_effect(outcomes: np.ndarray, groups: np.ndarray) -> float:
    """How many times the variance of a coverage measured on clustered photos (the headings
    of one place succeed or fail together) exceeds that of as many independent ones: Kish's
    1 + (m - 1) rho, with m the mean photos a place and rho their intra-class correlation
    (one-way ANOVA estimator, clipped to [0, 1]). 1.0 when every place has one photo or
    every photo the same outcome. Divide sizes by it for :func:`coverage_range`.

    Written here because the ANOVA estimator for unequal groups is a few lines of numpy and
    no dependency of geotag's provides it for binary outcomes.
    """
    import pandas as pd

    values = np.asarray(outcomes, dtype=float)
    names = np.asarray(groups)
    if values.shape != names.shape or values.ndim != 1:
        raise ValueError(f"outcomes and groups must match, got {values.shape}, {names.shape}")
    per_group = pd.Series(values).groupby(names)
    sizes, means = per_group.size().to_numpy(dtype=float), per_group.mean().to_numpy()
    n, k = float(len(values)), float(len(sizes))
    if k < 2 or n <= k:
        return 1.0
    grand = values.mean()
    within = float(((values - per_group.transform("mean").to_numpy()) ** 2).sum()) / (n - k)
    between = float((sizes * (means - grand) ** 2).sum()) / (k - 1)
    # The "average" group size of the unbalanced one-way ANOVA (Searle et al. 1992, 3.6).
    m0 = (n - float((sizes**2).sum()) / n) / (k - 1)
    if between + (m0 - 1.0) * within <= 0.0:
        return 1.0
    rho = min(1.0, max(0.0, (between - within) / (between + (m0 - 1.0) * within)))
    return 1.0 + (n / k - 1.0) * rho
