"""What a model must beat: answers that use the training labels but not the photo.

A top-1 of 30% means little until it is set beside always answering the most common
cell; a median of 300 km means little beside always answering the middle of the
training data. Every report shows these next to the model (per fold, from that fold's
own training images, never from the images it is scored on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geotag.errors import InputError
from geotag.geo.distance import haversine_km, spherical_mean

#: Seed of the random-training-image baseline: the same draws on every run.
SEED = 0


def baselines(
    train_class: Any,
    train_lat: Any,
    train_lon: Any,
    true_class: Any,
    true_lat: Any,
    true_lon: Any,
    seed: int = SEED,
) -> dict[str, float]:
    """The baselines' figures on the scored samples (``true_*``), built from the training
    samples (``train_*``).

    ``majority_top1``: top-1 of always answering the most frequent training class (ties
    to the lower class index); ``mean_location_*_km``: errors of always answering the
    spherical mean of the training locations; ``random_image_*_km``: errors of answering
    the location of a training sample drawn at random (seeded) for each scored sample.
    Classes are indices; -1 (a cell that is no class of the run) never matches.
    """
    t_class = np.asarray(train_class, dtype=np.int64)
    t_lat, t_lon = np.asarray(train_lat, float), np.asarray(train_lon, float)
    s_class = np.asarray(true_class, dtype=np.int64)
    s_lat, s_lon = np.asarray(true_lat, float), np.asarray(true_lon, float)
    if len(t_class) == 0 or len(s_class) == 0:
        raise InputError("baselines need at least one training and one scored sample")
    if not (len(t_class) == len(t_lat) == len(t_lon) and len(s_class) == len(s_lat) == len(s_lon)):
        raise InputError("baselines need one class and one location per sample")
    known = t_class[t_class >= 0]
    majority_hits = 0.0
    if len(known):
        values, counts = np.unique(known, return_counts=True)
        majority = values[np.argmax(counts)]  # np.unique sorts: ties go to the lower index
        majority_hits = float((s_class == majority).mean())
    centre_lat, centre_lon = spherical_mean(t_lat, t_lon, np.ones(len(t_lat)))
    to_centre = np.asarray(haversine_km(s_lat, s_lon, centre_lat, centre_lon))
    draws = np.random.default_rng(seed).integers(0, len(t_lat), size=len(s_lat))
    to_random = np.asarray(haversine_km(s_lat, s_lon, t_lat[draws], t_lon[draws]))
    return {
        "majority_top1": majority_hits,
        "mean_location_median_km": float(np.median(to_centre)),
        "mean_location_mean_km": float(to_centre.mean()),
        "random_image_median_km": float(np.median(to_random)),
        "random_image_mean_km": float(to_random.mean()),
    }
