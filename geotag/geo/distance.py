"""Great-circle distances on the mean Earth sphere, GeoScore, and means of points."""

from __future__ import annotations

from typing import Any

import numpy as np

from geotag.errors import InputError

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius

#: GeoGuessr's score for one guess, as OSV-5M reports it: 5000 * exp(-d / 1492.7 km).
GEOSCORE_MAX = 5000.0
GEOSCORE_SCALE_KM = 1492.7

#: Below this length (relative to the total weight) a weighted mean of unit vectors has no
#: meaningful direction: the points balance out (e.g. two antipodes), so the mean falls back.
_DEGENERATE_NORM = 1e-9


def haversine_m(lat1, lon1, lat2, lon2):  # type: ignore[no-untyped-def]
    """Great-circle distance in metres; takes scalars or broadcastable arrays of degrees."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlam = np.radians(np.asarray(lon2) - np.asarray(lon1)) / 2
    a = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlam) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_km(lat1, lon1, lat2, lon2):  # type: ignore[no-untyped-def]
    """Great-circle distance in km; scalars or broadcastable arrays of degrees."""
    return haversine_m(lat1, lon1, lat2, lon2) / 1000.0


def geoscore(km: Any) -> np.ndarray | float:
    """GeoGuessr's points for a guess ``km`` away: 5000 at 0 km, 5000/e at 1492.7 km.

    A scalar gives a float, an array an array of the same shape.
    """
    d = np.asarray(km, dtype=float)
    score = GEOSCORE_MAX * np.exp(-d / GEOSCORE_SCALE_KM)
    return float(score) if score.ndim == 0 else score


def spherical_mean(lat: Any, lon: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean position on the sphere, taken along the last axis.

    Each point becomes a 3-D unit vector; the weighted sum is turned back into a latitude
    and longitude. This is right across the antimeridian (179.5 and -179.5 average to
    +-180, not 0) and at the poles. Where the sum has no direction (the points balance out,
    or every weight is zero) the mean is the point with the largest weight (the first such).

    ``lat``, ``lon`` (degrees) and ``weights`` (>= 0) broadcast to one shape, e.g. (N, K)
    for N rows of K points; the result has that shape without its last axis, e.g. (N,).
    Longitudes come back in [-180, 180].
    """
    lat_a, lon_a, w = np.broadcast_arrays(
        np.asarray(lat, dtype=float), np.asarray(lon, dtype=float), np.asarray(weights, float)
    )
    if lat_a.ndim == 0 or lat_a.shape[-1] == 0:
        raise InputError("spherical_mean needs at least one point per row")
    if not (np.isfinite(lat_a).all() and np.isfinite(lon_a).all()):
        raise InputError("spherical_mean got a latitude or longitude that is not a number")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("spherical_mean needs finite, non-negative weights")

    phi, lam = np.radians(lat_a), np.radians(lon_a)
    cos_phi = np.cos(phi)
    x = (w * cos_phi * np.cos(lam)).sum(axis=-1)
    y = (w * cos_phi * np.sin(lam)).sum(axis=-1)
    z = (w * np.sin(phi)).sum(axis=-1)
    horizontal = np.hypot(x, y)
    norm = np.hypot(horizontal, z)
    # At a pole every longitude is the same point: say 0 rather than rounding noise.
    at_pole = horizontal <= _DEGENERATE_NORM * norm
    mean_lat = np.degrees(np.arctan2(z, horizontal))
    mean_lon = np.where(at_pole, 0.0, np.degrees(np.arctan2(y, x)))

    total = w.sum(axis=-1)
    degenerate = norm <= _DEGENERATE_NORM * total  # total 0 -> norm 0: degenerate
    if degenerate.any():
        top = np.argmax(w, axis=-1)[..., None]
        top_lat = np.take_along_axis(lat_a, top, axis=-1)[..., 0]
        top_lon = np.take_along_axis(lon_a, top, axis=-1)[..., 0]
        mean_lat = np.where(degenerate, top_lat, mean_lat)
        mean_lon = np.where(degenerate, top_lon, mean_lon)
    return mean_lat, _wrap(mean_lon)


def _wrap(lon: np.ndarray) -> np.ndarray:
    """Longitudes into [-180, 180], keeping +-180 as given."""
    return np.where(np.abs(lon) <= 180.0, lon, (lon + 180.0) % 360.0 - 180.0)
