"""The simulated world's geography: what a place looks like, as a function of where it is.

Three kinds of signal, as in real street view:

- smooth fields over the sphere (greenness, soil colour, terrain relief, haze, urban
  density), each a seeded sum of plane waves in 3-D, so they have no seams at the
  antimeridian or the poles, in three bands: 700-5,000 km (what a country's regions look
  like), 60-250 km and 20-100 km (a plain, a range of hills, a town's sprawl), so that
  likeness falls off gradually with distance instead of only beyond hundreds of km;
- discrete zones ("states"): a seeded Voronoi partition of the sphere, each zone with its
  own road markings, building style and palette, and sign shape, changing abruptly at a
  border the way road paint does between real states;
- districts some 25 km across (``geotag.sim.districts``), each with its own wall colours,
  building heights, trees, street grid and landmarks: the town-to-town differences that
  let a model place a view within a state.

Everything is a pure function of (seed, lat, lon).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from geotag.sim.districts import Districts, DistrictStyle, bearings

FIELD_NAMES = ("greenness", "soil", "relief", "haze", "urban")
#: Plane waves per field and their spatial frequencies (radians^-1 of arc): wavelengths of
#: roughly 700 to 5,000 km, so a country shows several distinct looks.
WAVES_PER_FIELD = 8
FREQUENCY_RANGE = (8.0, 55.0)
#: Two more banks, so that likeness falls off gradually with distance: 60-250 km waves as
#: strong as the first bank, and 20-100 km ones at half its amplitude, each as (frequency
#: range 2 pi R / wavelength, amplitude relative to the first bank). The sum is scaled
#: back so that field values spread as they did with the first bank alone.
EXTRA_WAVES_PER_FIELD = 8
MID_BAND = ((160.0, 670.0), 1.0)
SHORT_BAND = ((400.0, 2000.0), 0.5)
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
    """What the geography says about one location: field values in [0, 1], a zone, a
    district, the bearings (degrees) from here to the district's landmarks, and the
    distant skyline seen from here."""

    greenness: float
    soil: float
    relief: float
    haze: float
    urban: float
    style: ZoneStyle
    district: DistrictStyle
    landmarks: tuple[float, ...]
    #: The distant horizon: cosine and sine coefficients of harmonics 1.. of azimuth.
    skyline: tuple[tuple[float, float], ...]


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
        # The extra banks come from a generator of their own: the first bank and the zones
        # stay what they were before the extra banks existed.
        extra = np.random.default_rng([seed, 0x5A0])
        waves, amplitudes = [], []
        for frequencies, amplitude in (MID_BAND, SHORT_BAND):
            count = len(FIELD_NAMES) * EXTRA_WAVES_PER_FIELD
            directions = extra.normal(size=(count, 3))
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            low, high = np.log(frequencies)
            frequency = np.exp(extra.uniform(low, high, size=count))
            waves.append((directions * frequency[:, None]).reshape(len(FIELD_NAMES), -1, 3))
            amplitudes.append(
                amplitude * extra.uniform(0.5, 1.0, size=(len(FIELD_NAMES), EXTRA_WAVES_PER_FIELD))
            )
        self._extra_waves = np.concatenate(waves, axis=1)
        self._extra_amplitudes = np.concatenate(amplitudes, axis=1)
        self._extra_phases = extra.uniform(0, 2 * np.pi, size=self._extra_amplitudes.shape)
        self._spread = math.sqrt(1.0 + MID_BAND[1] ** 2 + SHORT_BAND[1] ** 2)
        self.districts = Districts(seed)
        self._seed = seed

    def fields(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """(n, len(FIELD_NAMES)) values in [0, 1]."""
        xyz = unit_vectors(np.atleast_1d(lat), np.atleast_1d(lon))
        waves = np.sin(np.einsum("fwk,nk->nfw", self._waves, xyz) + self._phases)
        total = (waves * self._amplitudes).sum(-1) / np.sqrt(WAVES_PER_FIELD / 2)
        extra = np.sin(np.einsum("fwk,nk->nfw", self._extra_waves, xyz) + self._extra_phases)
        total += (extra * self._extra_amplitudes).sum(-1) / np.sqrt(EXTRA_WAVES_PER_FIELD / 2)
        return 0.5 + 0.5 * np.tanh(total / self._spread)

    def zones(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Zone index of each location (nearest zone centre on the sphere)."""
        xyz = unit_vectors(np.atleast_1d(lat), np.atleast_1d(lon))
        return np.argmax(xyz @ self._zone_points.T, axis=1)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a panorama is drawn at several headings
    def place(self, lat: float, lon: float) -> Place:
        """Everything the geography says about one location (see :class:`Place`)."""
        values = self.fields(np.array([lat]), np.array([lon]))[0]
        zone = int(self.zones(np.array([lat]), np.array([lon]))[0])
        district = self.district_style(lat, lon)
        greenness, soil, relief, haze, urban = (float(v) for v in values)
        return Place(
            greenness,
            soil,
            relief,
            haze,
            urban,
            style=self.style(zone),
            district=district,
            landmarks=bearings(lat, lon, district.sites),
            skyline=tuple((float(c), float(s)) for c, s in self.districts.skyline(lat, lon)),
        )

    def district_style(self, lat: float, lon: float) -> DistrictStyle:
        """The style of the district that (lat, lon) lies in."""
        return self.districts.at(lat, lon)

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
