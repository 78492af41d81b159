"""The simulated street-view world: where panoramas are, who took them, what they show.

Panoramas lie along seeded roads. The globe is cut into tiles of ``TILE_DEG`` degrees; a
tile has roads with a probability that grows with the geography's urban density, and a
road carries a panorama every ~``SPACING_M`` metres. Roads run along or across their
district's street grid, as a town's streets do. Water has none (the bundled Natural
Earth land mask), and sparse regions have few, so many queries find nothing nearby, and a
panorama often sits hundreds of metres to kilometres from where it was asked for.

A share of panoramas (``user_fraction``) are user-contributed photospheres. Their images
carry a strip with the photographer's name, and each photographer works in one block of
``PHOTOGRAPHER_BLOCK_DEG`` degrees, where they take many photospheres: exactly the
shortcut that fooled the model in the study geotag grew from.

A ``pano_id`` encodes its tile and index plus a seeded checksum, so any id can be turned
back into its panorama without a database, and ids of another seed are rejected.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import struct
import threading
from dataclasses import dataclass

import numpy as np

from geotag.geo.distance import haversine_m
from geotag.sim.defaults import DEFAULT_USER_FRACTION
from geotag.sim.geography import Geography
from geotag.sim.render import Scene, render_view

TILE_DEG = 0.05
SPACING_M = 180.0
#: Roads run along their district's street grid (this share of them) or across it, give or
#: take ``STREET_JITTER_DEG``.
STREET_JITTER_DEG = 10.0
MAIN_AXIS_SHARE = 0.8
METRES_PER_DEG = 111_320.0
#: A photographer's home area: a block this many degrees on a side (~330 km).
PHOTOGRAPHER_BLOCK_DEG = 3.0
SOURCES = ("default", "outdoor")

# ASCII only: the strip is drawn with the font Pillow bundles, which lacks accents.
FIRST_NAMES = (
    "Asha",
    "Ravi",
    "Meera",
    "Arjun",
    "Priya",
    "Vikram",
    "Lena",
    "Tomas",
    "Amara",
    "Kenji",
    "Sofia",
    "Mateo",
    "Noor",
    "Omar",
    "Ines",
    "Lucas",
    "Yara",
    "Daniel",
    "Mira",
    "Jonas",
    "Anika",
    "Rahul",
    "Leila",
    "Samuel",
    "Hana",
    "Ivan",
    "Zara",
    "Felix",
    "Maya",
    "Tariq",
    "Elena",
    "Kofi",
    "Rosa",
    "Arash",
    "Nadia",
    "Pedro",
    "Aiko",
    "Bjorn",
    "Chloe",
    "Dev",
)
LAST_NAMES = (
    "Rao",
    "Mehta",
    "Iyer",
    "Singh",
    "Khan",
    "Das",
    "Novak",
    "Silva",
    "Okafor",
    "Tanaka",
    "Rossi",
    "Garcia",
    "Haddad",
    "Costa",
    "Muller",
    "Dubois",
    "Kowalski",
    "Nair",
    "Bose",
    "Reddy",
    "Patel",
    "Ahmed",
    "Larsen",
    "Moreau",
    "Fischer",
    "Kim",
    "Sato",
    "Mensah",
    "Pereira",
    "Yilmaz",
    "Ivanova",
    "Lindqvist",
    "Varga",
    "Popescu",
    "Santos",
    "Chen",
    "Ghosh",
    "Kapoor",
    "Ortiz",
    "Hughes",
)


@dataclass(frozen=True)
class Panorama:
    """One panorama: a point with imagery all round it."""

    pano_id: str
    lat: float
    lon: float
    date: str
    copyright: str
    user_contributed: bool
    photographer: str | None
    road_bearing: float


@dataclass(frozen=True)
class _Tile:
    lat: np.ndarray
    lon: np.ndarray
    bearing: np.ndarray
    user: np.ndarray
    photographer: tuple[str | None, ...]
    date: tuple[str, ...]


class World:
    """A deterministic street-view world: the same seed, the same panoramas and pixels."""

    def __init__(self, seed: int = 0, user_fraction: float = DEFAULT_USER_FRACTION) -> None:
        if not 0.0 <= user_fraction <= 1.0:
            from geotag.errors import InputError

            raise InputError(f"user_fraction must lie in [0, 1]; got {user_fraction}")
        self.seed = int(seed)
        self.user_fraction = float(user_fraction)
        self.geography = Geography(self.seed)
        self._key = hashlib.blake2b(f"geotag-sim-{self.seed}".encode(), digest_size=16).digest()

    # -- looking panoramas up ------------------------------------------------------------
    def nearest(
        self, lat: float, lon: float, radius_m: float = 50.0, source: str = "default"
    ) -> Panorama | None:
        """The nearest panorama within ``radius_m`` metres, or None.

        ``source="outdoor"`` skips user-contributed photospheres, as Google's API does.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90):
            return None
        lon = (lon + 180.0) % 360.0 - 180.0
        best: tuple[float, int, int, int] | None = None
        ti, tj = _tile_index(lat, lon)
        # Search outward ring by ring; stop once a ring is farther than the best hit.
        tile_m = TILE_DEG * METRES_PER_DEG * max(math.cos(math.radians(min(abs(lat), 89.0))), 0.01)
        max_ring = math.ceil(radius_m / tile_m) + 1
        for ring in range(max_ring + 1):
            if best is not None and (ring - 1) * tile_m > best[0]:
                break
            for i, j in _ring(ti, tj, ring):
                if not 0 <= i < round(180 / TILE_DEG):
                    continue
                tile = self._tile(i, j % round(360 / TILE_DEG))
                if len(tile.lat) == 0:
                    continue
                distance = haversine_m(lat, lon, tile.lat, tile.lon)
                if source == "outdoor":
                    distance = np.where(tile.user, np.inf, distance)
                k = int(np.argmin(distance))
                if distance[k] <= radius_m and (best is None or distance[k] < best[0]):
                    best = (float(distance[k]), i, j % round(360 / TILE_DEG), k)
        return None if best is None else self._panorama(*best[1:])

    def panorama(self, pano_id: str) -> Panorama | None:
        """The panorama with this id, or None for an id this world did not make."""
        address = self._decode(pano_id)
        if address is None:
            return None
        i, j, k = address
        if i >= round(180 / TILE_DEG) or j >= round(360 / TILE_DEG):
            return None
        return self._panorama(i, j, k) if k < len(self._tile(i, j).lat) else None

    def _decode(self, pano_id: str) -> tuple[int, int, int] | None:
        """(tile row, tile column, index) of an id this world made, else None."""
        if not isinstance(pano_id, str) or len(pano_id) != 22:
            return None
        try:
            raw = base64.urlsafe_b64decode(pano_id + "==")
        except (ValueError, TypeError):
            return None
        if len(raw) != 16 or raw[6:] != self._checksum(raw[:6]):
            return None
        i, j, k = struct.unpack(">HHH", raw[:6])
        return i, j, k

    def render(
        self,
        pano_id: str,
        heading: float = 0.0,
        pitch: float = 0.0,
        fov: float = 90.0,
        width: int = 256,
        height: int = 256,
    ) -> bytes:
        """A JPEG of the view from ``pano_id`` (KeyError for an unknown id)."""
        pano = self.panorama(pano_id)
        address = self._decode(pano_id)
        if pano is None or address is None:
            raise KeyError(pano_id)
        scene = Scene(
            place=self.geography.place(pano.lat, pano.lon),
            layout_seed=(self.seed, *address),
            road_bearing=pano.road_bearing,
            strip_text=pano.copyright if pano.user_contributed else None,
        )
        return render_view(scene, heading, pitch, fov, width, height)

    # -- generating tiles ----------------------------------------------------------------
    def _panorama(self, i: int, j: int, k: int) -> Panorama:
        tile = self._tile(i, j)
        head = struct.pack(">HHH", i, j, k)
        pano_id = base64.urlsafe_b64encode(head + self._checksum(head)).decode().rstrip("=")
        photographer = tile.photographer[k]
        return Panorama(
            pano_id=pano_id,
            lat=float(tile.lat[k]),
            lon=float(tile.lon[k]),
            date=tile.date[k],
            copyright=f"© {photographer}" if photographer else "© Google",
            user_contributed=bool(tile.user[k]),
            photographer=photographer,
            road_bearing=float(tile.bearing[k]),
        )

    def _checksum(self, head: bytes) -> bytes:
        return hashlib.blake2b(head, key=self._key, digest_size=10).digest()

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - tiles are immutable; the World owns them
    def _tile(self, i: int, j: int) -> _Tile:
        rng = np.random.default_rng([self.seed, 0x711E, i, j])
        lat0, lon0 = -90.0 + i * TILE_DEG, -180.0 + j * TILE_DEG
        centre_lat, centre_lon = lat0 + TILE_DEG / 2, lon0 + TILE_DEG / 2
        urban = float(self.geography.fields(np.array([centre_lat]), np.array([centre_lon]))[0, 4])
        coverage = 0.04 + 0.9 * urban**1.5
        if rng.random() > coverage:
            return _empty_tile()
        cos_lat = max(math.cos(math.radians(centre_lat)), 0.01)
        tile_w, tile_h = TILE_DEG * METRES_PER_DEG * cos_lat, TILE_DEG * METRES_PER_DEG
        xs, ys, bearings = [], [], []
        for _ in range(1 + rng.poisson(3.0 * urban)):
            x0, y0 = rng.uniform(0, tile_w), rng.uniform(0, tile_h)
            road_bearing = self._street_bearing(
                lat0 + y0 / METRES_PER_DEG,
                lon0 + x0 / (METRES_PER_DEG * cos_lat),
                rng.uniform(0, 180),
            )
            reach = math.hypot(tile_w, tile_h)
            steps = np.arange(-reach, reach, SPACING_M)
            steps = steps + rng.uniform(-0.3, 0.3, len(steps)) * SPACING_M
            x = x0 + steps * math.sin(math.radians(road_bearing))
            y = y0 + steps * math.cos(math.radians(road_bearing))
            inside = (x >= 0) & (x < tile_w) & (y >= 0) & (y < tile_h)
            xs.append(x[inside])
            ys.append(y[inside])
            bearings.append(np.full(inside.sum(), road_bearing))
        lat = lat0 + np.concatenate(ys) / METRES_PER_DEG
        lon = lon0 + np.concatenate(xs) / (METRES_PER_DEG * cos_lat)
        bearing = np.concatenate(bearings)
        on_land = _on_land(lat, lon)
        lat, lon, bearing = lat[on_land], lon[on_land], bearing[on_land]
        n = len(lat)
        user = rng.random(n) < self.user_fraction
        names = self._photographers(
            math.floor(centre_lat / PHOTOGRAPHER_BLOCK_DEG),
            math.floor(centre_lon / PHOTOGRAPHER_BLOCK_DEG),
        )
        chosen = rng.integers(len(names), size=n)
        photographer = tuple(names[c] if u else None for c, u in zip(chosen, user, strict=True))
        years = np.where(user, rng.integers(2012, 2026, n), rng.integers(2008, 2025, n))
        months = rng.integers(1, 13, n)
        date = tuple(f"{y}-{m:02d}" for y, m in zip(years, months, strict=True))
        return _Tile(lat, lon, bearing, user, photographer, date)

    def _street_bearing(self, lat: float, lon: float, draw: float) -> float:
        """A road's bearing in [0, 180): along or across its district's street grid, give or
        take ``STREET_JITTER_DEG``; ``draw`` (uniform in [0, 180)) picks which and how much."""
        grid = self.geography.district_style(lat, lon).grid_bearing
        u = draw / 180.0
        if u < MAIN_AXIS_SHARE:
            across, jitter = 0.0, u / MAIN_AXIS_SHARE
        else:
            across, jitter = 90.0, (u - MAIN_AXIS_SHARE) / (1.0 - MAIN_AXIS_SHARE)
        return (grid + across + STREET_JITTER_DEG * (2.0 * jitter - 1.0)) % 180.0

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def _photographers(self, block_row: int, block_col: int) -> tuple[str, ...]:
        """The one (sometimes two) photographers who work in a block."""
        rng = np.random.default_rng([self.seed, 0xF07, block_row + 90, block_col + 180])
        return tuple(
            f"{FIRST_NAMES[rng.integers(len(FIRST_NAMES))]} "
            f"{chr(ord('A') + int(rng.integers(26)))}. "
            f"{LAST_NAMES[rng.integers(len(LAST_NAMES))]}"
            for _ in range(1 + int(rng.random() < 0.25))
        )


def _empty_tile() -> _Tile:
    empty = np.empty(0)
    return _Tile(empty, empty, empty, np.empty(0, dtype=bool), (), ())


def _tile_index(lat: float, lon: float) -> tuple[int, int]:
    i = min(math.floor((lat + 90.0) / TILE_DEG), round(180 / TILE_DEG) - 1)
    j = math.floor((lon + 180.0) / TILE_DEG) % round(360 / TILE_DEG)
    return i, j


def _ring(i: int, j: int, ring: int) -> list[tuple[int, int]]:
    if ring == 0:
        return [(i, j)]
    cells = [(i + d, j + e) for d in range(-ring, ring + 1) for e in (-ring, ring)]
    cells += [(i + d, j + e) for d in (-ring, ring) for e in range(-ring + 1, ring)]
    return cells


#: GEOS builds a prepared geometry's index lazily, on its first use, and not thread-safely
#: (libgeos/geos#825): two server threads testing one country at once corrupt the heap.
_LAND_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _land() -> tuple[object, np.ndarray]:
    """An index of the bundled country outlines, each prepared for fast point tests."""
    import shapely

    from geotag.geo.regions import countries

    outlines = countries().geometry.to_numpy()
    shapely.prepare(outlines)
    return shapely.STRtree(outlines), outlines


def _on_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    import shapely

    inside = np.zeros(len(lat), dtype=bool)
    if len(lat) == 0:
        return inside
    with _LAND_LOCK:
        tree, outlines = _land()
        # Box hits from the tree, then exact tests against the prepared outlines: a
        # predicate inside the tree query would test each point against an unprepared one.
        points = shapely.points(lon, lat)
        point_index, country_index = tree.query(points)  # type: ignore[attr-defined]
        for country in np.unique(country_index):
            mine = point_index[country_index == country]
            inside[mine] |= shapely.contains_xy(outlines[country], lon[mine], lat[mine])
    return inside
