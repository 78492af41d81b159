"""How honest a fold's statement of doubt is on its held-out photos.

The fold's calibration (fitted on its inner validation split at training time, see
:mod:`geotag.doubt`) is applied to the photos eval scores, and measured there: calibration
error before and after temperature scaling, empirical coverage of the prediction regions
against the target, their area, coverage per cell (the worst tenth of cells), area against
coverage for a range of targets, and selective prediction (accuracy and median km when only
the surest share of photos is answered).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.doubt import confidence, conformal, temperature

if TYPE_CHECKING:
    from geotag.doubt.calibration import CalibrationSplit
    from geotag.doubt.regions import CellShapes

#: Targets of the area-vs-coverage curve.
CURVE_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
#: Shares answered drawn on the selective curve.
CURVE_SHARES = tuple(np.round(np.linspace(0.05, 1.0, 20), 2))
#: A cell needs this many scored photos for its coverage to be ranked among the worst.
MIN_CELL_PHOTOS = 5
WORST_SHARE = 0.1


@dataclass(frozen=True)
class FoldDoubt:
    """One fold's figures (``metrics``, metrics.json's ``doubt``) and what the plots and
    predictions.parquet need, row by row."""

    metrics: dict[str, Any]
    region_cells: list[list[int]]  # per photo, its region's cell ids
    region_km2: np.ndarray
    covered: np.ndarray
    confidence: np.ndarray  # rank among the inner split's photos, in [0, 1]
    reliability_before: temperature.Reliability
    reliability_after: temperature.Reliability
    top_after: np.ndarray  # each photo's calibrated top probability
    curve: dict[str, np.ndarray]  # target, coverage, region_share (area-vs-coverage)
    selective: dict[str, np.ndarray]  # share, top1, median_km


def fold_doubt(
    probs: np.ndarray,
    labels: np.ndarray,
    split: CalibrationSplit,
    errors_km: np.ndarray,
    cell_of_photo: np.ndarray,
    *,
    cells: CellShapes,
    region_area_km2: float,
    coverage: float,
    kind: str,
    point_lat: np.ndarray,
    point_lon: np.ndarray,
    places: np.ndarray | None = None,
) -> FoldDoubt:
    """Measure a fold's calibration on photos it never saw. ``probs`` as the model gives
    them, ``labels`` their classes (-1: a cell that is no class, never covered),
    ``errors_km`` the headline point's, ``cell_of_photo`` the cell coverage is reported by,
    ``kind`` the run's confidence score, ``places`` each photo's place when several photos
    show one (their outcomes are not independent; see :func:`coverage_range`)."""
    y = np.asarray(labels).astype(np.int64)
    calibrated = split.calibrate(probs)
    top = calibrated.max(axis=1)
    cutoff = split.threshold(coverage)
    sets = conformal.prediction_sets(calibrated, cutoff)
    inside = conformal.covered(calibrated, y, cutoff)
    area, in_region = cells.areas(sets)
    share = in_region / region_area_km2
    values = confidence.confidence_values(kind, calibrated, point_lat, point_lon)
    correct = calibrated.argmax(axis=1) == y
    selective = confidence.selective_curve(values, correct, errors_km, np.asarray(CURVE_SHARES))
    at_share = confidence.selective_curve(
        values, correct, errors_km, np.asarray(confidence.REPORTED_SHARES)
    )
    curve = _coverage_curve(calibrated, y, split, cells, region_area_km2)
    before = temperature.reliability(probs, y)
    after = temperature.reliability(calibrated, y)
    worst, scored_cells = _worst_cells(inside, cell_of_photo)
    clustered = 1.0 if places is None else conformal.design_effect(inside, places)
    low, high = conformal.coverage_range(split.n / clustered, len(y) / clustered, coverage)
    metrics = {
        "target": coverage,
        "calibration_n": split.n,
        "temperature": split.temperature,
        "ece_before": before.ece,
        "ece_after": after.ece,
        "ece_floor": temperature.top_ece_floor(top),
        "coverage": float(inside.mean()),
        "coverage_low": low,
        "coverage_high": high,
        "design_effect": clustered,
        "region_cells_mean": float(sets.sum(axis=1).mean()),
        "region_km2_mean": float(area.mean()),
        "region_km2_median": float(np.median(area)),
        "region_share_mean": float(share.mean()),
        "region_share_median": float(np.median(share)),
        "worst_cells_coverage": worst,
        "cells_scored": scored_cells,
        "curve": {
            f"{t:g}": {"coverage": float(c), "region_share_mean": float(s)}
            for t, c, s in zip(
                curve["target"], curve["coverage"], curve["region_share"], strict=True
            )
        },
        "selective": {
            f"{round(share_answered * 100)}": {"top1": float(a), "median_km": float(k)}
            for share_answered, a, k in zip(
                at_share["share"], at_share["top1"], at_share["median_km"], strict=True
            )
        },
    }
    return FoldDoubt(
        metrics=metrics,
        region_cells=[cells.cell_ids[row].tolist() for row in sets],
        region_km2=area,
        covered=inside,
        confidence=split.confidence_of(kind, values),
        reliability_before=before,
        reliability_after=after,
        top_after=top,
        curve=curve,
        selective=selective,
    )


def _coverage_curve(
    calibrated: np.ndarray, labels: np.ndarray, split: CalibrationSplit, cells: CellShapes,
    region_area_km2: float,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Empirical coverage and mean region share for each target of :data:`CURVE_TARGETS`
    (a target the calibration split is too small for gives every cell)."""
    coverage, share = [], []
    for target in CURVE_TARGETS:
        cutoff = split.threshold(target)
        coverage.append(float(conformal.covered(calibrated, labels, cutoff).mean()))
        _, in_region = cells.areas(conformal.prediction_sets(calibrated, cutoff))
        share.append(float(in_region.mean() / region_area_km2))
    return {
        "target": np.asarray(CURVE_TARGETS),
        "coverage": np.asarray(coverage),
        "region_share": np.asarray(share),
    }


def _worst_cells(inside: np.ndarray, cell_of_photo: np.ndarray) -> tuple[float, int]:
    """Mean coverage of the worst tenth of cells (those with :data:`MIN_CELL_PHOTOS`
    photos or more; every cell when none has), and how many cells were ranked."""
    import pandas as pd

    per_cell = pd.DataFrame({"cell": cell_of_photo, "covered": inside}).groupby("cell")["covered"]
    table = pd.DataFrame({"n": per_cell.size(), "coverage": per_cell.mean()})
    ranked = table[table["n"] >= MIN_CELL_PHOTOS]
    if ranked.empty:
        ranked = table
    worst = max(1, math.ceil(WORST_SHARE * len(ranked)))
    return float(ranked["coverage"].nsmallest(worst).mean()), len(ranked)


def pooled_calibration(folds: list[FoldDoubt]) -> dict[str, float]:
    """ECE before and after over every fold's photos together (each calibrated by its own
    fold), and the floor a perfectly calibrated model would show on that many."""
    return {
        "photos": int(sum(len(d.top_after) for d in folds)),
        "ece_before": temperature.Reliability.pooled([d.reliability_before for d in folds]).ece,
        "ece_after": temperature.Reliability.pooled([d.reliability_after for d in folds]).ece,
        "ece_floor": temperature.top_ece_floor(np.concatenate([d.top_after for d in folds])),
    }
