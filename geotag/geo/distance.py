"""Great-circle distances on the mean Earth sphere."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius


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
