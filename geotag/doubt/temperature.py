"""Temperature scaling (Guo et al. 2017) and the expected calibration error.

A network trained with cross-entropy is usually over-confident: its top probability says
70% where it is right 50% of the time. Dividing the logits by one temperature T > 1,
fitted by likelihood on held-out photos, softens every answer alike and leaves the ranking
of the cells (so every predicted point) unchanged. Probabilities are taken instead of
logits: softmax(log p / T) equals softmax(logits / T), since a softmax ignores a shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geotag.errors import InputError

#: The temperatures a fit may choose from: wide enough for any sane network, and bounded so
#: that a calibration split the model fits perfectly cannot send T to zero.
T_RANGE = (0.05, 20.0)
ECE_BINS = 15
#: Probabilities are floored here before their log: a float32 softmax underflows to 0.
_FLOOR = 1e-30


def check_probabilities(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise InputError(f"probabilities must be an (N, K) array; got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InputError("probabilities must be finite and non-negative")
    return p


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs`` recalibrated: softmax(log p / T), rows summing to one."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise InputError(f"a temperature must be a positive number; got {temperature}")
    logits = np.log(np.maximum(check_probabilities(probs), _FLOOR)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class) over the rows with a known class (label >= 0)."""
    p = check_probabilities(probs)
    y = _labels(labels, p)
    known = y >= 0
    if not known.any():
        return float("nan")
    return float(-np.log(np.maximum(p[known, y[known]], _FLOOR)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (rows with label
    -1, a cell that is no class, are left out); 1.0 when nothing is known."""
    from scipy.optimize import minimize_scalar

    p = check_probabilities(probs)
    y = _labels(labels, p)
    known = y >= 0
    if not known.any() or p.shape[1] < 2:
        return 1.0
    logp = np.log(np.maximum(p[known], _FLOOR))
    rows = np.arange(int(known.sum()))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float((np.log(np.exp(z).sum(axis=1)) - z[rows, y[known]]).mean())

    low, high = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    found = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


@dataclass(frozen=True)
class Reliability:
    """Top-1 confidence against accuracy in equal-width bins of confidence."""

    edges: np.ndarray  # (bins + 1,)
    count: np.ndarray  # photos per bin
    confidence: np.ndarray  # mean top probability per bin (NaN when empty)
    accuracy: np.ndarray  # share right per bin (NaN when empty)

    @classmethod
    def pooled(cls, parts: list[Reliability]) -> Reliability:
        """The bins of several folds' photos together (same edges)."""
        if not parts:
            raise InputError("no reliability bins to pool")
        count = np.sum([p.count for p in parts], axis=0)
        conf = np.sum([np.nan_to_num(p.confidence) * p.count for p in parts], axis=0)
        acc = np.sum([np.nan_to_num(p.accuracy) * p.count for p in parts], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return cls(parts[0].edges, count, conf / count, acc / count)

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence|."""
        used = self.count > 0
        total = self.count.sum()
        if total == 0:
            return float("nan")
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float((gaps * self.count[used]).sum() / total)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability bins of the top-1 answer; a photo whose cell is no class (label -1)
    counts as a wrong answer, as it is one."""
    p = check_probabilities(probs)
    y = _labels(labels, p)
    top = p.max(axis=1)
    right = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=top, minlength=bins) / count
        accuracy = np.bincount(which, weights=right, minlength=bins) / count
    return Reliability(edges, count, confidence, accuracy)


def ece_floor(probs: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would still show on these photos: the mean ECE
    when each photo's top answer is right with exactly its top probability (``draws``
    seeded Monte Carlo draws). Binned ECE is biased upwards on a finite sample, by about
    sqrt(p(1-p)/n) per bin: below this floor no calibration can be told from another."""
    return top_ece_floor(check_probabilities(probs).max(axis=1), bins, draws, seed)


def top_ece_floor(top: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """:func:`ece_floor` from the photos' top probabilities alone."""
    top = np.asarray(top, dtype=np.float64)
    if len(top) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    used = count > 0
    confidence = np.bincount(which, weights=top, minlength=bins)[used] / count[used]
    right = np.random.default_rng(seed).random((draws, len(top))) < top
    offsets = (np.arange(draws)[:, None] * bins + which[None, :]).ravel()
    hits = np.bincount(offsets, weights=right.ravel(), minlength=draws * bins)
    accuracy = hits.reshape(draws, bins)[:, used] / count[used]
    gaps = np.abs(accuracy - confidence) * count[used]
    return float((gaps.sum(axis=1) / len(top)).mean())


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    return reliability(probs, labels, bins).ece


def _labels(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Class indices, one per row of ``probs``: -1 (no class) or 0..K-1."""
    y = np.asarray(labels)
    if y.shape != (len(probs),):
        raise InputError(f"need one label per row: {y.shape} for {len(probs)} rows")
    y = y.astype(np.int64)
    if ((y < -1) | (y >= probs.shape[1])).any():
        raise InputError(f"labels must lie in -1..{probs.shape[1] - 1}")
    return y
