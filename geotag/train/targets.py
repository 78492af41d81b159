"""Training targets: PIGEON's haversine label smoothing and the soft cross-entropy it needs.

PIGEON (Haas et al., CVPR 2024) replaces one-hot labels by soft targets that give every
cell a share that decays with its centre's distance from where the photo was taken:

    target_i = exp(-(d_i - min_j d_j) / tau) / sum_k exp(-(d_k - min_j d_j) / tau)

with d_i the great-circle distance (km) from the true location to cell i's centre.
Subtracting the minimum makes the largest term exactly 1, so nothing underflows to an
all-zero row however far the photo is from every centre.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geotag.errors import DataError, InputError
from geotag.geo.distance import haversine_m

#: The default temperature is this many cell sides (``sqrt(cell area)``): at 0.32 a photo
#: taken uniformly at random inside an interior hexagon keeps on average half of its
#: target on its own cell (0.53 at 0.30, 0.46 at 0.35; measured over 20,000 points of a
#: hexagonal lattice), so the loss still says which cell, and neighbours share the rest
#: by distance. A fixed 75 km kept 0.72 at 400 km cells but 0.17 at 100 km and 0.02 at
#: 25 km, where the target was mostly noise.
TAU_PER_CELL_SIDE = 0.32
#: Above this many cell sides the true cell keeps under a fifth of the target (0.17 at
#: 0.75): a user's tau that large draws a warning.
LARGE_TAU_PER_CELL_SIDE = 0.7


def default_tau_km(cell_area_km2: float) -> float:
    """The smoothing temperature for cells of this area: :data:`TAU_PER_CELL_SIDE` sides."""
    return TAU_PER_CELL_SIDE * float(np.sqrt(cell_area_km2))


def tau_warning(tau_km: float, cell_area_km2: float) -> str | None:
    """One line when ``tau_km`` is large against the cells, else None."""
    side = float(np.sqrt(cell_area_km2))
    if tau_km <= LARGE_TAU_PER_CELL_SIDE * side:
        return None
    suggested = default_tau_km(cell_area_km2)
    return (
        f"--tau-km {tau_km:g} is large against cells of {side:,.0f} km a side: the true cell "
        f"keeps under a fifth of each target; the default here is {suggested:,.0f} km"
    )


def haversine_targets(
    true_lat: Any, true_lon: Any, centre_lat: Any, centre_lon: Any, tau_km: float
) -> torch.Tensor:
    """Soft targets (B, K), float32, rows summing to 1, for B locations and K cell centres.

    Inputs are degrees, as tensors (any device) or arrays: ``true_*`` of shape (B,),
    ``centre_*`` of shape (K,). The result is on ``true_lat``'s device when it is a
    tensor, else on the CPU. Distances are computed in float64 on the CPU; targets depend
    only on an image's location, so a caller may also compute them once per dataset.
    """
    if not tau_km > 0:
        raise InputError(f"--tau-km must be positive, got {tau_km}")
    lat, lon = _vector(true_lat, "true_lat"), _vector(true_lon, "true_lon")
    clat, clon = _vector(centre_lat, "centre_lat"), _vector(centre_lon, "centre_lon")
    if lat.shape != lon.shape or clat.shape != clon.shape:
        raise ValueError(
            f"latitudes and longitudes differ in shape: {lat.shape} vs {lon.shape}, "
            f"{clat.shape} vs {clon.shape}"
        )
    if clat.size == 0:
        raise ValueError("haversine targets need at least one cell centre")
    for values, what in ((lat, "image"), (clat, "cell centre")):
        if not np.isfinite(values).all() or np.abs(values).max(initial=0.0) > 90:
            raise DataError(f"an {what} latitude is missing or outside [-90, 90]")
    for values, what in ((lon, "image"), (clon, "cell centre")):
        if not np.isfinite(values).all():
            raise DataError(f"an {what} longitude is missing")

    km = haversine_m(lat[:, None], lon[:, None], clat[None, :], clon[None, :]) / 1000.0
    scores = np.exp(-(km - km.min(axis=1, keepdims=True)) / float(tau_km))
    targets = torch.from_numpy(scores / scores.sum(axis=1, keepdims=True)).to(torch.float32)
    if isinstance(true_lat, torch.Tensor):
        targets = targets.to(true_lat.device)
    return targets


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k targets[b, k] * log_softmax(logits)[b, k]``."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape"
        )
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def _vector(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array
