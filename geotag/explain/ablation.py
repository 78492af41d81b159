"""Masking ablation within a stratum: what blanking a band costs against an equal-area
control band, what the band alone scores against what the model answers with no picture
at all, and how small an effect the sample could have seen.

Intervals come from a paired bootstrap over *panoramas*: the headings of one panorama
share its place, light and photographer, so resampling images one by one would count
them as independent and draw intervals too narrow. Every condition is scored on the same
resampled panoramas, which keeps the intervals of differences tight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geotag.errors import InputError

BOOTSTRAP = 1000
LEVEL = 0.95
#: (z for a two-sided 5% test) + (z for 80% power): an effect this many standard errors
#: large is found four times in five.
POWER_Z = 1.959964 + 0.841621
#: With no change seen in n panoramas, a change affecting up to 3/n of them cannot be ruled
#: out at 95% (the "rule of three"): the smallest effect a sample can vouch against.
RULE_OF_THREE = 3.0
CONDITIONS = ("full", "band_blanked", "control_blanked", "band_only")


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _estimate(value: float, samples: np.ndarray) -> dict[str, Any]:
    return {"value": float(value), "ci": _interval(samples)}


def shortcut_effect(drop_band: Any, drop_control: Any) -> Any:
    """What blanking the band costs beyond what blanking the control costs, but never more
    than the band's own cost: a control whose blanking *helps* the model (a distracting
    sky) must not make an unused band look like a shortcut."""
    return drop_band - np.maximum(drop_control, 0.0)


def stratum_figures(
    correct: dict[str, np.ndarray],
    errors_km: dict[str, np.ndarray],
    groups: np.ndarray,
    blank_correct: np.ndarray,
    majority_correct: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    seed: int = 0,
    resamples: int = BOOTSTRAP,
) -> dict[str, Any]:
    """JSON-ready figures of one stratum (see :class:`geotag.explain.report.Stratum`).

    ``correct`` and ``errors_km`` per condition of :data:`CONDITIONS`, ``groups`` (the
    panorama of each image), ``blank_correct`` (whether the model's answer to a blank
    picture is the image's cell) and ``majority_correct`` (whether the commonest cell of
    the model's training images is) are aligned image by image. Both baselines are what
    a model reaches with no picture: one from what it does, one from its training data.

    ``weights`` (one per image) make every accuracy a weighted mean: the audit draws strip
    images first, and weighting each image by how under- or over-drawn its stratum is gives
    the figures of the held-out set as it is.
    """
    n = len(groups)
    if n == 0:
        raise InputError("a stratum needs at least one image")
    for name in CONDITIONS:
        if len(correct[name]) != n or len(errors_km[name]) != n:
            raise InputError(f"condition {name!r} has another number of images than groups")
    weight = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    codes, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    count = len(codes)
    sizes = np.bincount(inverse, weights=weight, minlength=count)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, count, size=(resamples, count))
    drawn_images = sizes[draws].sum(axis=1)
    accuracy: dict[str, float] = {}
    boot: dict[str, np.ndarray] = {}
    for name in CONDITIONS:
        hits = np.asarray(correct[name], dtype=np.float64) * weight
        accuracy[name] = float(hits.sum() / weight.sum())
        per_group = np.bincount(inverse, weights=hits, minlength=count)
        boot[name] = per_group[draws].sum(axis=1) / drawn_images
    drop_band = boot["full"] - boot["band_blanked"]
    drop_control = boot["full"] - boot["control_blanked"]
    effect = shortcut_effect(drop_band, drop_control)
    point_band = accuracy["full"] - accuracy["band_blanked"]
    point_control = accuracy["full"] - accuracy["control_blanked"]
    return {
        "images": int(n),
        "panoramas": int(count),
        "conditions": {
            name: {
                "accuracy": accuracy[name],
                "accuracy_ci": _interval(boot[name]),
                "median_km": float(np.median(errors_km[name])),
            }
            for name in CONDITIONS
        },
        "drop_band": _estimate(point_band, drop_band),
        "drop_control": _estimate(point_control, drop_control),
        "excess": _estimate(point_band - point_control, drop_band - drop_control),
        "effect": _estimate(float(shortcut_effect(point_band, point_control)), effect),
        "detectable": float(max(POWER_Z * effect.std(), RULE_OF_THREE / count)),
        "blank_accuracy": float(np.average(np.asarray(blank_correct, float), weights=weight)),
        "majority_accuracy": float(np.average(np.asarray(majority_correct, float), weights=weight)),
    }


def correct_and_errors(
    probs: np.ndarray,
    true_class: np.ndarray,
    true_lat: np.ndarray,
    true_lon: np.ndarray,
    centre_lat: np.ndarray,
    centre_lon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 hits and the km error of the top cell's centre, per image."""
    from geotag.geo.distance import haversine_km

    predicted = probs.argmax(axis=1)
    errors = haversine_km(true_lat, true_lon, centre_lat[predicted], centre_lon[predicted])
    return predicted == true_class, np.asarray(errors)
