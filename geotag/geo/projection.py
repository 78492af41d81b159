"""The equal-area projection a grid is built in: Lambert azimuthal equal-area on WGS84.

Centred on the region, it keeps areas exact everywhere (so a K x K km cell really has
K^2 km^2) and keeps shapes close to true near the centre. It is one continuous plane
across the antimeridian, which is what lets a grid over Fiji or Russia stay whole.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

WGS84 = "EPSG:4326"


@dataclass(frozen=True)
class EqualAreaProjection:
    """Lambert azimuthal equal-area centred on (``lat_0``, ``lon_0``); units are metres."""

    lat_0: float
    lon_0: float

    @classmethod
    def centred_on(cls, lat: float, lon: float) -> EqualAreaProjection:
        # Rounded so the recorded CRS string reads well and round-trips exactly.
        return cls(round(float(lat), 6), round(float(lon), 6))

    @classmethod
    def from_proj4(cls, text: str) -> EqualAreaProjection:
        params = dict(item.lstrip("+").split("=", 1) for item in text.split() if "=" in item)
        return cls(float(params["lat_0"]), float(params["lon_0"]))

    @property
    def proj4(self) -> str:
        return (
            f"+proj=laea +lat_0={self.lat_0} +lon_0={self.lon_0} "
            "+x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
        )

    @property
    def crs(self) -> CRS:
        return CRS.from_proj4(self.proj4)

    def forward(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude (degrees) -> x/y (metres)."""
        return _transformer(self.proj4, True).transform(lon, lat)

    def inverse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x/y (metres) -> longitude/latitude (degrees), longitude in [-180, 180]."""
        lon, lat = _transformer(self.proj4, False).transform(x, y)
        return wrap_longitude(np.asarray(lon)), np.asarray(lat)

    def project(self, geometry: BaseGeometry | np.ndarray) -> BaseGeometry | np.ndarray:
        """Geometries in EPSG:4326 -> geometries in this projection."""
        return shapely.transform(geometry, lambda xy: np.column_stack(self.forward(*xy.T)))

    def unproject(self, geometry: BaseGeometry | np.ndarray) -> BaseGeometry | np.ndarray:
        """Geometries in this projection -> EPSG:4326 (may cross the antimeridian; see grid)."""
        return shapely.transform(geometry, lambda xy: np.column_stack(self.inverse(*xy.T)))


@functools.lru_cache(maxsize=16)
def _transformer(proj4: str, forward: bool) -> Transformer:
    source, target = (WGS84, proj4) if forward else (proj4, WGS84)
    return Transformer.from_crs(source, target, always_xy=True)


def wrap_longitude(lon: np.ndarray) -> np.ndarray:
    """Longitudes into [-180, 180]."""
    wrapped = (lon + 180.0) % 360.0 - 180.0
    # Keep +180 as +180 rather than flipping it to -180.
    return np.where((wrapped == -180.0) & (lon > 0), 180.0, wrapped)
