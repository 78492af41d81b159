"""``metrics.json``: what ``geotag eval`` measured, as one typed contract.

:func:`geotag.evaluate.metrics.score` and ``aggregate_folds`` compute the numbers;
:class:`EvalMetrics` is how they are written, read back (by ``predict`` for its
predictor, by the demo for its story) and shown. The file's layout::

    {"run": ..., "model": ..., "classes": 29, "chance_top1": 0.034, "mask": null,
     "run_mask": null, "test_set": "held-out folds", "folds": [0], "images": 344,
     "unreadable": 0, "headline": "weighted",
     "per_image":    {"folds": 1, "mean": {...}, "std": {...}, "headline": ...,
                      "per_fold": {"0": {..., "headline": ...}}},
     "per_location": {...the same, with the headings of one place fused...}}

where each ``{...}`` holds top1, top5, balanced_accuracy, counts and, per predictor,
median/mean km, the share within each radius and the GeoScore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from geotag import contracts


@contracts.contract
@dataclass(frozen=True)
class Baselines:
    """What a model must beat, from the fold's training images (see evaluate.baselines)."""

    majority_top1: float
    mean_location_median_km: float
    mean_location_mean_km: float
    random_image_median_km: float
    random_image_mean_km: float


@contracts.contract
@dataclass(frozen=True)
class CoverageAt:
    """Empirical coverage and mean region (share of the region) at one target."""

    coverage: float
    region_share_mean: float


@contracts.contract
@dataclass(frozen=True)
class Answered:
    """Selective prediction: the figures of the surest share of photos answered."""

    top1: float
    median_km: float


@contracts.contract
@dataclass(frozen=True)
class DoubtScores:
    """How honest the fold's statement of doubt was on the photos it never saw (see
    geotag.evaluate.doubt): calibration, prediction regions, selective prediction."""

    target: float  # the coverage the regions were calibrated for
    calibration_n: int | float  # inner-split photos (or places) calibrated on
    temperature: float
    ece_before: float  # expected calibration error (15 bins) without temperature scaling
    ece_after: float
    #: What a perfectly calibrated model would show on as many photos (binned ECE's bias).
    ece_floor: float
    coverage: float  # share of photos whose true cell is in their region
    region_cells_mean: float
    region_km2_mean: float
    region_km2_median: float
    #: The region's area inside the workspace's region, as a share of it.
    region_share_mean: float
    region_share_median: float
    #: Mean coverage of the worst tenth of cells (of ``cells_scored``, each with 5+ photos).
    worst_cells_coverage: float
    cells_scored: int | float
    curve: dict[str, CoverageAt]  # target -> coverage and area there
    selective: dict[str, Answered]  # percent answered ("50", "80", "100") -> figures
    #: Where ``coverage`` falls 95 times in 100 if the calibration is valid, given how many
    #: photos it was calibrated and scored on (geotag.doubt.conformal.coverage_range);
    #: None in a metrics.json written before it was reported.
    coverage_low: float | None = field(default=None, kw_only=True)
    coverage_high: float | None = field(default=None, kw_only=True)
    #: How much the photos' shared places inflate that range's width (1: independent).
    design_effect: float | None = field(default=None, kw_only=True)


@contracts.contract
@dataclass(frozen=True)
class PooledCalibration:
    """ECE over every scored fold's photos together, each calibrated by its own fold."""

    photos: int
    ece_before: float
    ece_after: float
    ece_floor: float  # what a perfectly calibrated model would show on as many photos


@contracts.contract
@dataclass(frozen=True)
class Scores:
    """One fold's figures, or their mean or standard deviation over folds."""

    n: int | float
    n_classes: int | float
    unknown_class: int | float
    cell_km: float
    top1: float
    top5: float
    balanced_accuracy: float
    chance_top1: float
    #: predictor -> median_km, mean_km, within_<d>km, within_<m>x_cell, geoscore and
    #: inside_region (the share of predicted points inside the region)
    predictors: dict[str, dict[str, float]]
    # Optional so that a metrics.json written before they existed still reads.
    baselines: Baselines | None = field(default=None, kw_only=True)
    #: Scored samples whose cell had no training image in this fold: guaranteed misses.
    unseen_cell: int | float | None = field(default=None, kw_only=True)
    #: Top-1, and the headline predictor's median km, over the other samples.
    top1_seen: float | None = field(default=None, kw_only=True)
    median_km_seen: float | None = field(default=None, kw_only=True)
    #: Per predictor, the share of points in the true workspace grid cell: comparable
    #: between runs whatever cells they classify into (``top1`` is in the run's own).
    in_grid_cell: dict[str, float] | None = field(default=None, kw_only=True)
    #: Calibration, regions and selective prediction; None for a run from before them.
    doubt: DoubtScores | None = field(default=None, kw_only=True)

    def distance(self, predictor: str, figure: str) -> float:
        """One distance figure of one predictor, e.g. ``("weighted", "median_km")``."""
        return self.predictors[predictor][figure]

    def within_km(self, predictor: str, km: float) -> float:
        """Share of images within ``km`` of the truth."""
        from geotag.evaluate.metrics import threshold_key

        return self.predictors[predictor][threshold_key(km)]


@contracts.contract
@dataclass(frozen=True)
class FoldScores(Scores):
    headline: str  # the predictor with the lower median error on this fold


@contracts.contract
@dataclass(frozen=True)
class Summary:
    """Figures per fold and their mean and std over folds, per image or per location."""

    folds: int
    mean: Scores
    std: Scores
    headline: str
    per_fold: dict[str, FoldScores]


@contracts.contract
@dataclass(frozen=True)
class EvalMetrics:
    run: str
    model: str
    classes: int
    chance_top1: float
    mask: str | None  # the band this evaluation blanked, if any
    run_mask: str | None  # the band the run was trained with blanked, if any
    test_set: str
    folds: tuple[int, ...]
    images: int
    unreadable: int
    #: The predicted point the headline figures use (see ``metrics.choose_headline``).
    headline: str
    per_image: Summary
    per_location: Summary
    #: Where the headline predictor and the checkpoints were chosen: "inner validation
    #: split", or "test folds" for a run trained before geotag had one (optimistic).
    headline_chosen_on: str = "test folds"
    checkpoint_chosen_on: str = "test folds"
    #: What the run's classes are: grid, adaptive or admin cells (``classes``: their mean
    #: count over the scored folds, whose own cells may differ).
    cells: str = "grid"
    #: The confidence score selective prediction ranked by (chosen on the inner splits).
    confidence_score: str | None = None
    #: Per "per_image" / "per_location": ECE over all folds' photos (calibrated runs).
    pooled_calibration: dict[str, PooledCalibration] | None = None

    def to_json(self) -> dict[str, object]:
        return contracts.to_json(self)

    @classmethod
    def read(cls, path: Path) -> EvalMetrics:
        return contracts.read(cls, path)
