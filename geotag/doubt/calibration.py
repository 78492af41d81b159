"""A fold's calibration: fitted on its inner validation split, stored, applied.

``fold-<k>/calibration.json`` holds, for single photos and for fused places (the headings
of one place averaged) separately: the temperature, the calibration error before and after
it, the sorted conformal scores (so any target coverage can be had later without
retraining: ``predict --coverage``), and the sorted values of every confidence score (a
new photo's confidence is its rank among them) with how well each ranked the split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geotag import contracts
from geotag.doubt import confidence, conformal, temperature
from geotag.errors import DataError

#: Decimals kept of a stored score: far finer than any coverage can use.
_DECIMALS = 9
#: Training says how far regions may stray when a 90% region's coverage, with the fewest
#: places a fold calibrated on, spans more than SPREAD_WIDTH (95 times in 100): fewer than
#: about 280 places (300 give 0.864-0.932).
SPREAD_TARGET = 0.9
SPREAD_WIDTH = 0.07


@contracts.contract
@dataclass(frozen=True)
class CalibrationSplit:
    """What one kind of answer (single photos, or fused places) was calibrated on."""

    n: int  # photos (or places) of the inner split, all with a class
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    #: Sorted APS scores of the true cells under the calibrated probabilities.
    scores: tuple[float, ...]
    #: Per confidence score, its sorted values over the split.
    confidence: dict[str, tuple[float, ...]]
    #: Per confidence score, the mean accuracy over the shares answered (the choice's measure).
    selective: dict[str, float]

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        return temperature.scale(probs, self.temperature)

    def threshold(self, coverage: float) -> float:
        """The conformal threshold for a target ``coverage`` (+inf: every cell)."""
        return conformal.threshold(np.asarray(self.scores), coverage)

    def confidence_of(self, kind: str, values: np.ndarray) -> np.ndarray:
        """Confidence in [0, 1]: the share of the split's photos less sure than each one."""
        return confidence.rank(values, np.asarray(self.confidence[kind]))

    def problem(self) -> tuple[str, str] | None:
        """(field, why) of the first value no calibration can have, or None."""
        if self.n < 1 or len(self.scores) != self.n:
            return "scores", f"holds {len(self.scores)} score(s) for n = {self.n}"
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            return "temperature", f"must be a positive number; got {self.temperature}"
        s = np.asarray(self.scores)
        if not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1 + 1e-6).all()):
            return "scores", "must lie in [0, 1]"
        if (np.diff(s) < 0).any():
            return "scores", "must be sorted"
        for kind in confidence.CONFIDENCE_SCORES:
            values = self.confidence.get(kind)
            if values is None or len(values) != self.n:
                return f"confidence.{kind}", f"needs {self.n} values"
            if kind not in self.selective:
                return f"selective.{kind}", "is missing"
        return None


@contracts.contract
@dataclass(frozen=True)
class FoldCalibration:
    """``fold-<k>/calibration.json``."""

    per_image: CalibrationSplit
    per_location: CalibrationSplit

    def split(self, fused: bool) -> CalibrationSplit:
        return self.per_location if fused else self.per_image


def fit(
    probs: np.ndarray, labels: np.ndarray, point_lat: np.ndarray, point_lon: np.ndarray
) -> CalibrationSplit:
    """Calibrate on an inner split's photos (or places): ``probs`` as the model gives them,
    ``labels`` their classes (rows without one are left out), the classes' points."""
    y = np.asarray(labels).astype(np.int64)
    known = y >= 0
    raw, y = np.asarray(probs, dtype=np.float64)[known], y[known]
    if len(y) == 0:
        raise DataError("the inner split has no photo with a class to calibrate on")
    t = temperature.fit_temperature(raw, y)
    calibrated = temperature.scale(raw, t)
    correct = calibrated.argmax(axis=1) == y
    values = {
        kind: confidence.confidence_values(kind, calibrated, point_lat, point_lon)
        for kind in confidence.CONFIDENCE_SCORES
    }
    return CalibrationSplit(
        n=len(y),
        temperature=t,
        ece_before=temperature.expected_calibration_error(raw, y),
        ece_after=temperature.expected_calibration_error(calibrated, y),
        nll_before=temperature.negative_log_likelihood(raw, y),
        nll_after=temperature.negative_log_likelihood(calibrated, y),
        scores=_sorted(conformal.scores(calibrated, y)),
        confidence={kind: _sorted(v) for kind, v in values.items()},
        selective={kind: confidence.selective_score(v, correct) for kind, v in values.items()},
    )


def _sorted(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.sort(np.asarray(values, np.float64)), _DECIMALS))


def write(path: Path, calibration: FoldCalibration) -> None:
    from geotag.atomic import write_text

    write_text(path, contracts.dumps(calibration))


def read(path: Path) -> FoldCalibration | None:
    """The fold's calibration, None for a run from before calibration; a damaged file is
    one line naming the field."""
    if not path.is_file():
        return None
    found = contracts.read(FoldCalibration, path)
    for name, split in (("per_image", found.per_image), ("per_location", found.per_location)):
        problem = split.problem()
        if problem is not None:
            raise DataError(f"{path}: field '{name}.{problem[0]}': {problem[1]}")
    return found


def spread_notice(places: int) -> str | None:
    """How far a 90% region's coverage may stray when a fold calibrated on as few as
    ``places`` places (split conformal prediction's finite-sample law: the guarantee holds
    on average over calibration splits, and one small split can land well off the
    target); None when that is tight enough, or nothing was calibrated."""
    if places < 1:
        return None
    fewest = f"calibrated on as few as {places:,} place{'' if places == 1 else 's'} a fold"
    advice = "a larger --val-fraction, or more places, narrows it"
    low, high = conformal.coverage_range(places, math.inf, SPREAD_TARGET)
    if low == high == 1.0:
        return f"{fewest}: too few for a {SPREAD_TARGET:.0%} region, which is every cell; {advice}"
    if high - low <= SPREAD_WIDTH:
        return None
    return (
        f"{fewest}: a {SPREAD_TARGET:.0%} region covers between {low:.0%} and {high:.0%} of "
        f"new places (95 times in 100) at this size; {advice}"
    )
