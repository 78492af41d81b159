"""The simulated world's geography: what a place looks like, as a function of where it is.

Two kinds of signal, as in real street view:

- smooth fields over the sphere (greenness, soil colour, terrain relief, haze, urban
  density), each a seeded sum of a few plane waves in 3-D, so they vary over hundreds to
  thousands of kilometres and have no seams at the antimeridian or the poles;
- discrete zones ("states"): a seeded Voronoi partition of the sphere, each zone with its
  own road markings, building style and palette, and sign shape, changing abruptly at a
  border the way road paint does between real states.

Everything is a pure function of (seed, lat, lon).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

FIELD_NAMES = ("greenness", "soil", "relief", "haze", "urban")
#: Plane waves per field and their spatial frequencies (radians^-1 of arc): wavelengths of
#: roughly 700 to 5,000 km, so a country shows several distinct looks.
WAVES_PER_FIELD = 8
FREQUENCY_RANGE = (8.0, 55.0)
#: Zones over the globe: about 170,000 km^2 each, some 400 km across; India has ~20.
ZONE_COUNT = 3000

MARKING_COLOURS = ((245, 245, 240), (250, 205, 40), (240, 140, 30), (120, 200, 250))
MARKING_PATTERNS = ("solid", "dashed", "double", "none", "edges")
ROOF_TYPES = ("flat", "pitched", "dome", "stepped")
SIGN_SHAPES = ("circle", "triangle", "octagon", "diamond", "square")
SIGN_COLOURS = ((200, 30, 35), (30, 80, 190), (240, 200, 20), (30, 140, 60), (235, 235, 235))


@dataclass(frozen=True)
class ZoneStyle:
    """How one zone builds its roads, houses and signs."""

    zone: int
    marking_colour: tuple[int, int, int]
    marking_pattern: str
    asphalt: tuple[int, int, int]
    roof: str
    palette: tuple[tuple[int, int, int], ...]
    sign_shape: str
    sign_colour: tuple[int, int, int]
    pole_colour: tuple[int, int, int]


@dataclass(frozen=True)
class Place:
    """What the geography says about one location: field values in [0, 1] and a zone."""

    greenness: float
    soil: float
    relief: float
    haze: float
    urban: float
    style: ZoneStyle


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) points on the unit sphere."""
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)


class Geography:
    """Seeded fields and zones; cheap to query, immutable."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, 0x6E0])
        count = len(FIELD_NAMES) * WAVES_PER_FIELD
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        low, high = np.log(FREQUENCY_RANGE)
        frequency = np.exp(rng.uniform(low, high, size=count))
        self._waves = (directions * frequency[:, None]).reshape(
            len(FIELD_NAMES), WAVES_PER_FIELD, 3
        )
        self._phases = rng.uniform(0, 2 * np.pi, size=(len(FIELD_NAMES), WAVES_PER_FIELD))
        self._amplitudes = rng.uniform(0.5, 1.0, size=(len(FIELD_NAMES), WAVES_PER_FIELD))
        zone_points = rng.normal(size=(ZONE_COUNT, 3))
        self._zone_points = zone_points / np.linalg.norm(zone_points, axis=1, keepdims=True)
        self._seed = seed

    def fields(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """(n, len(FIELD_NAMES)) values in [0, 1]."""
        xyz = unit_vectors(np.atleast_1d(lat), np.atleast_1d(lon))
        waves = np.sin(np.einsum("fwk,nk->nfw", self._waves, xyz) + self._phases)
        total = (waves * self._amplitudes).sum(-1) / np.sqrt(WAVES_PER_FIELD / 2)
        return 0.5 + 0.5 * np.tanh(total)

    def zones(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Zone index of each location (nearest zone centre on the sphere)."""
        xyz = unit_vectors(np.atleast_1d(lat), np.atleast_1d(lon))
        return np.argmax(xyz @ self._zone_points.T, axis=1)

    def place(self, lat: float, lon: float) -> Place:
        values = self.fields(np.array([lat]), np.array([lon]))[0]
        zone = int(self.zones(np.array([lat]), np.array([lon]))[0])
        greenness, soil, relief, haze, urban = (float(v) for v in values)
        return Place(greenness, soil, relief, haze, urban, style=self.style(zone))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a Geography lives as long as its World
    def style(self, zone: int) -> ZoneStyle:
        rng = np.random.default_rng([self._seed, 0x20E, zone])

        def pick(options: tuple) -> object:
            return options[int(rng.integers(len(options)))]

        grey = int(rng.integers(55, 120))
        warmth = int(rng.integers(-12, 13))
        base_hue = rng.uniform(0, 1)
        palette = tuple(
            hsv_to_rgb(
                (base_hue + k * rng.uniform(0.05, 0.2)) % 1.0,
                rng.uniform(0.15, 0.6),
                rng.uniform(0.55, 0.95),
            )
            for k in range(3)
        )
        return ZoneStyle(
            zone=zone,
            marking_colour=pick(MARKING_COLOURS),  # type: ignore[arg-type]
            marking_pattern=str(pick(MARKING_PATTERNS)),
            asphalt=(grey + warmth, grey, grey - warmth),
            roof=str(pick(ROOF_TYPES)),
            palette=palette,
            sign_shape=str(pick(SIGN_SHAPES)),
            sign_colour=pick(SIGN_COLOURS),  # type: ignore[arg-type]
            pole_colour=(int(rng.integers(60, 200)),) * 3,  # type: ignore[arg-type]
        )


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = math.floor(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(r * 255), round(g * 255), round(b * 255))
