"""Districts: the simulated world's town-scale signal, some 25 km across.

Real street views change from one town to the next, not only from one state to the next:
the local builders' wall colours and heights, the trees people plant, the street grid,
the temple or water tank on the skyline. A district is that unit here: a cell of a
jittered-lattice Voronoi partition, one centre per ``DISTRICT_DEG`` lattice cell, each
with its own :class:`DistrictStyle`.

Likeness should fall off with distance rather than stop at a district's border, so three
things reach further than one district:

- regions, a coarser partition of the same kind (``REGION_DEG``, ~110 km): a district
  takes each of its traits from its region's tendency ``REGIONAL_SHARE`` of the time,
  else draws its own, so neighbouring districts look related and far ones do not;
- the grain of the land, a smooth orientation field (100-300 km) that most districts lay
  their street grid along;
- the skyline: distant hills stand where they stand, so a place sees a blend of the
  horizon profiles of the regions around it, weighted by distance, which changes
  smoothly as one moves.

Looking a district up is constant work: the nearest centre among the 3 x 3 lattice cells
around a point, vectorised over arrays (``Lattice.lookup``) or for one point without
numpy (``Lattice.locate``). Distances are taken in degrees (longitude as is), so a
district is ``DISTRICT_DEG`` tall and ``DISTRICT_DEG * cos(lat)`` wide: ~28 x 23-28 km
over India; districts narrow toward the poles. Each centre lies in the middle
``DISTRICT_JITTER`` of its lattice cell, which makes the 3 x 3 search exact: a point's own
centre is at most ``sqrt(2) * (1 + J) / 2`` cells away, any centre two cells off at least
``(3 - J) / 2``, and the first is the smaller for J < 0.65.

Everything is a pure function of (seed, lat, lon).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: The lattice step: one district centre per 0.25 x 0.25 degree cell (~28 km).
DISTRICT_DEG = 0.25
#: Each centre lies in the middle 60% of its lattice cell (see the module's docstring).
DISTRICT_JITTER = 0.6

#: Landmarks on a district's skyline; told apart by shape, not by colour (exposure and
#: colour cast vary from shot to shot far more than a hue could).
LANDMARKS = ("tower", "dome", "tank", "mast", "gopuram", "turbine")
#: How many landmark sites a district has; a view sees those within its field of view.
LANDMARK_SITES = 3
CROWNS = ("round", "cone", "palm", "umbrella", "column")
ROOF_COLOURS = ((150, 60, 45), (85, 90, 100), (60, 115, 80), (190, 185, 175), (60, 80, 140))
LANDMARK_COLOURS = ((235, 230, 215), (200, 170, 130), (150, 150, 155), (180, 90, 60))

#: The ranges a district's continuous traits are drawn from: building heights relative
#: to what the urban field alone gives; the turn of the zone's wall palette (a fraction of
#: the colour wheel, either way) and its brightness; foliage from yellow- to blue-green.
HEIGHT_RANGE = (0.7, 1.4)
HUE_SHIFT = 0.15
WALL_VALUE_RANGE = (0.75, 1.15)
FOLIAGE_WARMTH = 0.3

#: Regions: a coarser partition of the same kind, ~110 km across, whose tendency a
#: district follows for each of these traits ``REGIONAL_SHARE`` of the time.
REGION_DEG = 1.0
REGIONAL_TRAITS = ("hue", "height", "crown_colour", "landmark", "crown", "roof")
REGIONAL_SHARE = 0.75
#: The grain of the land: a smooth orientation field (half the angle of a pair of wave
#: sums with 100-300 km wavelengths) that most districts lay their street grid along, give
#: or take ``GRID_SPREAD_DEG``; the other districts pick their own.
GRAIN_WAVES = 6
GRAIN_FREQUENCY_RANGE = (133.0, 400.0)
GRID_SHARE = 0.9
GRID_SPREAD_DEG = 5.0
#: The skyline: each region centre has a horizon profile (``SKYLINE_ORDERS`` harmonics of
#: azimuth); a place sees a blend of the nearby regions' profiles, weighted by a Gaussian
#: of its distance (degrees) to their centres.
SKYLINE_ORDERS = 7
SKYLINE_SIGMA_DEG = 0.4

_NEIGHBOURHOOD = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
_OFFSETS = np.array(_NEIGHBOURHOOD)
_SALT_ROW, _SALT_COLUMN = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F


@dataclass(frozen=True)
class DistrictStyle:
    """How one district builds, plants and lays out its streets."""

    district: int
    region: int
    centre: tuple[float, float]
    #: The street grid's main axis, degrees in [0, 180): most roads run along it, the
    #: rest across it.
    grid_bearing: float
    #: Rotation of the zone's wall palette (fraction of the colour wheel) and brightness.
    hue_shift: float
    wall_value: float
    #: Building heights relative to what the urban field alone gives.
    height: float
    roof_colour: tuple[int, int, int]
    crown: str
    #: Multiplies the foliage colour (red, green, blue).
    crown_tint: tuple[float, float, float]
    landmark: str
    landmark_colour: tuple[int, int, int]
    #: Landmark sites (lat, lon): every panorama of the district sees them at their bearing.
    sites: tuple[tuple[float, float], ...]


class Lattice:
    """A jittered-lattice Voronoi partition of the globe, ``step`` degrees per lattice cell.

    Cell ids are ``row * columns + column``; see the module's docstring for why the 3 x 3
    search is exact.
    """

    def __init__(self, step: float, key: int) -> None:
        self.step = step
        self.rows, self.columns = round(180 / step), round(360 / step)
        self._key = np.array([key], dtype=np.uint64)

    def centres(self, row: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) of the centres of lattice cells; ``column`` may run past the antimeridian
        (the centre then does too, so distances across it stay short)."""
        row, column = np.asarray(row, dtype=np.int64), np.asarray(column, dtype=np.int64)
        wrapped = column % self.columns
        u, v = self.hash(row, wrapped, 1), self.hash(row, wrapped, 2)
        lat = -90.0 + (row + 0.5 + DISTRICT_JITTER * (u - 0.5)) * self.step
        lon = -180.0 + (column + 0.5 + DISTRICT_JITTER * (v - 0.5)) * self.step
        return lat, lon

    def centre(self, cell: int) -> tuple[float, float]:
        """(lat, lon) of one cell's centre."""
        return self._centre(*divmod(int(cell), self.columns))

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - a Lattice lives as long as its World
    def _centre(self, row: int, column: int) -> tuple[float, float]:
        lat, lon = self.centres(np.array([row]), np.array([column]))
        return float(lat[0]), float(lon[0])

    def neighbours(self, lat: float, lon: float) -> list[tuple[int, int, float]]:
        """(row, column, squared distance in degrees) of the centres of the 3 x 3 lattice cells
        around one location (``column`` unwrapped; rows past a pole left out)."""
        lon = (lon + 180.0) % 360.0 - 180.0
        row0 = min(math.floor((lat + 90.0) / self.step), self.rows - 1)
        column0 = math.floor((lon + 180.0) / self.step)
        out = []
        for d_row, d_column in _NEIGHBOURHOOD:
            row, column = row0 + d_row, column0 + d_column
            if 0 <= row < self.rows:
                centre_lat, centre_lon = self._centre(row, column)
                out.append((row, column, (centre_lat - lat) ** 2 + (centre_lon - lon) ** 2))
        return out

    def locate(self, lat: float, lon: float) -> int:
        """Cell id of one location: ``lookup`` for a single point, without numpy's overhead
        (the same candidates in the same order, so ties break alike)."""
        best_row, best_column, best = 0, 0, math.inf
        for row, column, distance in self.neighbours(lat, lon):
            if distance < best:
                best_row, best_column, best = row, column, distance
        return best_row * self.columns + best_column % self.columns

    def lookup(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Cell id of each location: its nearest centre among the 3 x 3 lattice cells."""
        lat = np.atleast_1d(np.asarray(lat, dtype=float))
        lon = (np.atleast_1d(np.asarray(lon, dtype=float)) + 180.0) % 360.0 - 180.0
        row0 = np.minimum(np.floor((lat + 90.0) / self.step).astype(np.int64), self.rows - 1)
        column0 = np.floor((lon + 180.0) / self.step).astype(np.int64) % self.columns
        row = row0[:, None] + _OFFSETS[:, 0]
        column = column0[:, None] + _OFFSETS[:, 1]
        centre_lat, centre_lon = self.centres(row, column)
        distance = (centre_lat - lat[:, None]) ** 2 + (centre_lon - lon[:, None]) ** 2
        distance[(row < 0) | (row >= self.rows)] = np.inf
        best = np.argmin(distance, axis=1)
        pick = np.arange(len(lat))
        return row[pick, best] * self.columns + column[pick, best] % self.columns

    def hash(self, row: np.ndarray, column: np.ndarray, salt: int | np.ndarray) -> np.ndarray:
        """Seeded uniform numbers in [0, 1), one per lattice cell and salt (broadcast): a
        splitmix64 hash of (key, row, column, salt)."""
        x = (
            self._key
            ^ (np.asarray(row).astype(np.uint64) * np.uint64(_SALT_ROW))
            ^ (np.asarray(column).astype(np.uint64) * np.uint64(_SALT_COLUMN))
            ^ np.asarray(salt).astype(np.uint64)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
        return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


class Districts:
    """The seeded districts, their regions and their styles; cheap to query, immutable."""

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        keys = np.random.default_rng([seed, 0xD15]).integers(0, 2**63, size=2)
        self.cells = Lattice(DISTRICT_DEG, int(keys[0]))
        self.regions = Lattice(REGION_DEG, int(keys[1]))
        rng = np.random.default_rng([seed, 0x62A])
        directions = rng.normal(size=(2 * GRAIN_WAVES, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        low, high = np.log(GRAIN_FREQUENCY_RANGE)
        frequency = np.exp(rng.uniform(low, high, size=2 * GRAIN_WAVES))
        self._grain_waves = (directions * frequency[:, None]).reshape(2, GRAIN_WAVES, 3)
        self._grain_phases = rng.uniform(0, 2 * np.pi, size=(2, GRAIN_WAVES))

    def lookup(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """District id of each location."""
        return self.cells.lookup(lat, lon)

    def at(self, lat: float, lon: float) -> DistrictStyle:
        """The style of the district that one location lies in."""
        return self.style(self.cells.locate(lat, lon))

    @functools.lru_cache(maxsize=16384)  # noqa: B019 - a Districts lives as long as its World
    def style(self, district: int) -> DistrictStyle:
        """One district's style: a pure function of the seed and the district id."""
        lat, lon = self.cells.centre(district)
        region = self.regions.locate(lat, lon)
        regional = self._regional(region)
        rng = np.random.default_rng([self._seed, 0xD57, district])

        def trait(name: str, share: float = REGIONAL_SHARE) -> float:
            """A value in [0, 1): the region's (``share`` of the time) or its own."""
            own = float(rng.random())
            return regional[name] if rng.random() < share else own

        def choose(options: tuple, name: str) -> object:
            return options[min(int(trait(name) * len(options)), len(options) - 1)]

        # The street grid: along the grain of the land give or take a little, or its own.
        if rng.random() < GRID_SHARE:
            grid = (self.grain(lat, lon) + rng.normal(0, GRID_SPREAD_DEG)) % 180.0
        else:
            grid = float(rng.uniform(0, 180))
        # Foliage from yellow-green to blue-green, lighter or darker.
        warmth = FOLIAGE_WARMTH * (2 * trait("crown_colour") - 1)
        light = float(rng.uniform(0.85, 1.15))
        crown_tint = (light * (1.0 + warmth), light, light * (1.0 - warmth))
        offsets = rng.uniform(-0.3, 0.3, size=(LANDMARK_SITES, 2)) * DISTRICT_DEG
        sites = tuple((lat + float(a), lon + float(b)) for a, b in offsets)
        return DistrictStyle(
            district=int(district),
            region=region,
            centre=(lat, lon),
            grid_bearing=float(grid),
            hue_shift=HUE_SHIFT * (2 * trait("hue") - 1),
            wall_value=float(rng.uniform(*WALL_VALUE_RANGE)),
            height=float(HEIGHT_RANGE[0] * (HEIGHT_RANGE[1] / HEIGHT_RANGE[0]) ** trait("height")),
            roof_colour=choose(ROOF_COLOURS, "roof"),  # type: ignore[arg-type]
            crown=str(choose(CROWNS, "crown")),
            crown_tint=crown_tint,
            landmark=str(choose(LANDMARKS, "landmark")),
            landmark_colour=LANDMARK_COLOURS[int(rng.integers(len(LANDMARK_COLOURS)))],
            sites=sites,
        )

    def grain(self, lat: float, lon: float) -> float:
        """The grain of the land at a place: an axis, degrees in [0, 180)."""
        phi, lam = math.radians(lat), math.radians(lon)
        xyz = np.array(
            [math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)]
        )
        north, east = np.sin(self._grain_waves @ xyz + self._grain_phases).sum(-1)
        return math.degrees(0.5 * math.atan2(east, north)) % 180.0

    def skyline(self, lat: float, lon: float) -> np.ndarray:
        """(SKYLINE_ORDERS, 2) cosine and sine coefficients of the horizon profile at a place,
        harmonics 1, 2, ... of azimuth, each with an amplitude that falls with its order."""
        near = self.regions.neighbours(lat, lon)
        weight = np.exp(-np.array([d for _, _, d in near]) / (2 * SKYLINE_SIGMA_DEG**2))
        # Scaled so that a blend varies as much as one region's own profile.
        weight /= math.sqrt(float((weight**2).sum()))
        profiles = np.stack(
            [self._skyline(row, column % self.regions.columns) for row, column, _ in near]
        )
        return np.tensordot(weight, profiles, axes=1)

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def _skyline(self, row: int, column: int) -> np.ndarray:
        """One region's horizon profile, as ``skyline`` gives it."""
        orders = np.arange(1, SKYLINE_ORDERS + 1)
        u = self.regions.hash(
            np.array(row), np.array(column), np.concatenate([10 + orders, 20 + orders])
        )
        amplitude = (0.3 + 0.7 * u[:SKYLINE_ORDERS]) / orders**0.7
        phase = 2 * np.pi * u[SKYLINE_ORDERS:]
        return np.stack([amplitude * np.cos(phase), amplitude * np.sin(phase)], -1)

    @functools.lru_cache(maxsize=1024)  # noqa: B019
    def _regional(self, region: int) -> dict[str, float]:
        """A region's tendency: one value in [0, 1) per trait."""
        rng = np.random.default_rng([self._seed, 0x4E6, region])
        return {
            name: float(u)
            for name, u in zip(REGIONAL_TRAITS, rng.random(len(REGIONAL_TRAITS)), strict=True)
        }


def bearings(lat: float, lon: float, sites: tuple[tuple[float, float], ...]) -> tuple[float, ...]:
    """Compass bearing (degrees) from (lat, lon) to each site, flat-earth close up."""
    cos_lat = math.cos(math.radians(lat))
    out = []
    for site_lat, site_lon in sites:
        d_lon = (site_lon - lon + 180.0) % 360.0 - 180.0
        out.append(math.degrees(math.atan2(d_lon * cos_lat, site_lat - lat)) % 360.0)
    return tuple(out)
