"""Masking ablation: how much a model loses when a band is blanked, against an equal-area
control band, and what it scores from the band alone; paired bootstrap intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

from geotag.geo.distance import haversine_km

BOOTSTRAP = 1000
LEVEL = 0.95


def _interval(samples: np.ndarray) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def ablation_figures(
    correct: dict[str, np.ndarray],
    errors_km: dict[str, np.ndarray],
    chance: float,
    seed: int = 0,
    resamples: int = BOOTSTRAP,
) -> dict[str, Any]:
    """``correct`` and ``errors_km`` per condition (``full``, ``band_blanked``,
    ``control_blanked``, ``band_only``), aligned image by image. Resampling the same images
    for every condition (paired bootstrap) keeps the intervals of differences tight."""
    n = len(correct["full"])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    acc = {k: v.astype(np.float64) for k, v in correct.items()}
    boot = {k: v[draws].mean(axis=1) for k, v in acc.items()}
    drop_band = boot["full"] - boot["band_blanked"]
    drop_control = boot["full"] - boot["control_blanked"]
    figures: dict[str, Any] = {
        "images": int(n),
        "chance": float(chance),
        "conditions": {
            k: {
                "accuracy": float(acc[k].mean()),
                "accuracy_ci": _interval(boot[k]),
                "median_km": float(np.median(errors_km[k])),
            }
            for k in acc
        },
        "drop_band": float(acc["full"].mean() - acc["band_blanked"].mean()),
        "drop_band_ci": _interval(drop_band),
        "drop_control": float(acc["full"].mean() - acc["control_blanked"].mean()),
        "drop_control_ci": _interval(drop_control),
        "excess_drop": float(
            acc["control_blanked"].mean() - acc["band_blanked"].mean()
        ),  # how much more the band costs than the control
        "excess_drop_ci": _interval(drop_band - drop_control),
        "bootstrap": resamples,
        "level": LEVEL,
    }
    return figures


def correct_and_errors(
    probs: np.ndarray,
    true_class: np.ndarray,
    true_lat: np.ndarray,
    true_lon: np.ndarray,
    centre_lat: np.ndarray,
    centre_lon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 hits and the km error of the top cell's centre, per image."""
    predicted = probs.argmax(axis=1)
    errors = haversine_km(true_lat, true_lon, centre_lat[predicted], centre_lon[predicted])
    return predicted == true_class, np.asarray(errors)
