"""Where a map's heat lies: in a band of the image (the bottom strip where photographer
names are printed), in the image's thirds, and summaries of that over a dataset.

Maps are non-negative arrays (..., H, W), as :func:`geotag.explain.cam.compute_cams` gives
them. A map with no heat at all (all zeros) has no share of anything: its band mass and
thirds are NaN, its pointing game a miss, and :func:`heat_summary` counts it apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geotag.errors import InputError
from geotag.train.bands import Band

RATIO = 2.0
"""An image "looks at" the band when its band mass exceeds this many times the band's
share of the area (what a map spread evenly would put there)."""

PEAK_TOLERANCE = 1e-6
"""Pixels within this (relative) distance of a map's maximum count as the maximum."""


def _maps(maps: np.ndarray) -> np.ndarray:
    array = np.asarray(maps, dtype=np.float64)
    if array.ndim < 2 or array.shape[-1] == 0 or array.shape[-2] == 0:
        raise InputError(f"maps must be (..., height, width); got shape {array.shape}")
    if np.any(array < 0):
        raise InputError("maps must be non-negative, as class activation maps are")
    return array


def band_area_share(band: Band, height: int, width: int) -> float:
    """The band's share of an image's pixels (as :meth:`Band.box` rounds it)."""
    if height < 1 or width < 1:
        raise InputError(f"an image has at least one pixel; got {height} x {width}")
    left, upper, right, lower = band.box(width, height)
    return (right - left) * (lower - upper) / (height * width)


def band_mass(maps: np.ndarray, band: Band) -> np.ndarray:
    """Each map's share of its heat inside ``band`` (the map normalised to sum 1): (...,).

    NaN for a map with no heat.
    """
    array = _maps(maps)
    height, width = array.shape[-2:]
    left, upper, right, lower = band.box(width, height)
    total = array.sum(axis=(-2, -1))
    inside = array[..., upper:lower, left:right].sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def pointing_game(maps: np.ndarray, band: Band) -> np.ndarray:
    """Whether each map's maximum falls inside ``band``: (...,) bool.

    A maximum spread over several pixels (a coarse map upsampled has plateaus) counts as
    inside when at least half of its pixels are. A map with no heat is a miss.
    """
    array = _maps(maps)
    height, width = array.shape[-2:]
    left, upper, right, lower = band.box(width, height)
    peak = array.max(axis=(-2, -1), keepdims=True)
    at_peak = array >= peak * (1.0 - PEAK_TOLERANCE)
    in_band = np.zeros((height, width), dtype=bool)
    in_band[upper:lower, left:right] = True
    inside = (at_peak & in_band).sum(axis=(-2, -1))
    total = at_peak.sum(axis=(-2, -1))
    hit: np.ndarray = (2 * inside >= total) & (peak[..., 0, 0] > 0)
    return hit


def thirds(maps: np.ndarray) -> np.ndarray:
    """Each map's share of heat in its top, middle and bottom thirds of rows: (..., 3).

    Rows split as evenly as they can (``np.array_split``); NaN for a map with no heat.
    """
    array = _maps(maps)
    rows = array.sum(axis=-1)  # (..., H)
    parts = np.stack([part.sum(axis=-1) for part in np.array_split(rows, 3, axis=-1)], axis=-1)
    total = parts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, parts / np.where(total > 0, total, 1.0), np.nan)


# -- over a dataset --------------------------------------------------------------------------
def heat_summary(
    masses: np.ndarray,
    area_share: float,
    classes: np.ndarray | None = None,
    *,
    hits: np.ndarray | None = None,
    ratio: float = RATIO,
) -> dict[str, Any]:
    """How much the images' maps look at the band, overall and per class: JSON-ready.

    ``masses`` (N,) from :func:`band_mass` (NaN: a map with no heat, counted in
    ``empty_maps`` and left out of every figure); ``area_share`` from
    :func:`band_area_share`; ``classes`` (N,) the class of each image (its true cell);
    ``hits`` (N,) from :func:`pointing_game`.

    An image is *above* when its band mass exceeds ``ratio`` x ``area_share``. A shortcut
    that one image in five takes barely moves the mean band mass, so besides the
    distribution (mean, median, p90) the summary gives the share of images above, and per
    class the same figures; a class is *above* when at least half of its images are,
    and the share of classes above (and of the images in them) is reported too. The
    pointing game's hit rate is set against chance, which is ``area_share``.
    """
    mass = np.asarray(masses, dtype=np.float64).reshape(-1)
    if not 0.0 < area_share < 1.0:
        raise InputError(f"the band's area share must lie in (0, 1); got {area_share:g}")
    if ratio <= 0:
        raise InputError(f"ratio must be positive; got {ratio:g}")
    labels = None if classes is None else np.asarray(classes).reshape(-1)
    hit = None if hits is None else np.asarray(hits, dtype=bool).reshape(-1)
    for name, values in (("classes", labels), ("hits", hit)):
        if values is not None and len(values) != len(mass):
            raise InputError(f"{name} has {len(values)} entries for {len(mass)} band masses")

    threshold = ratio * area_share
    measured = ~np.isnan(mass)
    summary: dict[str, Any] = {
        "area_share": float(area_share),
        "ratio": float(ratio),
        "threshold": float(threshold),
        **_figures(mass, hit, measured, threshold),
    }
    if hit is not None:
        summary["pointing_game"]["chance"] = float(area_share)
        rate = summary["pointing_game"]["hit_rate"]
        summary["pointing_game"]["lift"] = None if rate is None else rate / area_share
    if labels is None:
        return summary

    per_class: dict[str, dict[str, Any]] = {}
    above: list[str] = []
    images_in_above = 0
    for label in np.unique(labels):
        rows = labels == label
        figures = _figures(
            mass[rows], None if hit is None else hit[rows], measured[rows], threshold
        )
        key = str(label.item() if hasattr(label, "item") else label)
        per_class[key] = figures
        share = figures["share_above"]
        if share is not None and share >= 0.5:
            above.append(key)
            images_in_above += figures["measured"]
    measured_classes = sum(1 for f in per_class.values() if f["measured"])
    total_measured = int(measured.sum())
    summary["classes"] = {
        "count": len(per_class),
        "measured": measured_classes,
        "above": above,
        "share_above": len(above) / measured_classes if measured_classes else None,
        "share_images_in_above": images_in_above / total_measured if total_measured else None,
        "max_share_above": max(
            (f["share_above"] for f in per_class.values() if f["share_above"] is not None),
            default=None,
        ),
    }
    summary["per_class"] = per_class
    return summary


def _figures(
    mass: np.ndarray, hit: np.ndarray | None, measured: np.ndarray, threshold: float
) -> dict[str, Any]:
    values = mass[measured]
    figures: dict[str, Any] = {
        "images": len(mass),
        "measured": len(values),
        "empty_maps": len(mass) - len(values),
        "band_mass": {
            "mean": float(values.mean()) if len(values) else None,
            "median": float(np.median(values)) if len(values) else None,
            "p90": float(np.percentile(values, 90)) if len(values) else None,
        },
        "images_above": int((values > threshold).sum()),
        "share_above": float((values > threshold).mean()) if len(values) else None,
    }
    if hit is not None:
        hits = hit[measured]
        figures["pointing_game"] = {"hit_rate": float(hits.mean()) if len(hits) else None}
    return figures
