"""How far apart must two simulated street views be before they look different?

Issue 16 asks the retrieval predictor to put twice as many photos within 25 km as the
top-cell one. That needs a world whose views 5-25 km apart look more alike than views
200 km apart. This script measures the scale of the simulator's spatial signal on the
demo's ground: India, its sample points snapped to panoramas within the scrape's 20 km,
64 px views at headings 0 and 180, 80% user photospheres with the bottom 12% cut away as
the masked run blanks it.

1. Pairs of views at a ground distance d. Anchors are the demo's places (400 km cells,
   ``--per-cell`` points each, seed ``--seed``, snapped, deduplicated). A partner is the
   panorama nearest a point d km from an anchor in a random direction (inside India,
   searched within a quarter of d, at most 20 km; kept when within a factor 1.5 of d;
   the table gives the median distance obtained). Three more rows: "same spot" (one
   panorama, heading 0 against 180: the demo's two images of a place), "next on the
   road" (the panorama one ~180 m step along the same road) and "far" (two anchors drawn
   at random: the level of unrelated places). Both views of a pair share the heading (0
   or 180 at random), except at the same spot.

   Dissimilarity of the two views: ``pixels``, the mean absolute difference (0-255) of
   16 x 14 thumbnails; ``shapes``, the same on thumbnails standardised per channel, which
   takes out the per-shot exposure and colour cast; ``read-out``, the mean absolute
   difference of the five geography fields as a ridge regression reads them from one view
   (fitted on views of other places: the demo's points drawn with seed + 1): a lower
   bound on what a model can read. The read-out's features: both thumbnails, the mean
   colour, a colour histogram, per band of 4 rows the spread across columns and the mean
   step between neighbouring columns (what stands along the horizon, wherever it
   stands), and the log thumbnail less its mean (colour with the shot's exposure and cast
   divided out). Of the renderer's inputs (what ``World.render`` hands ``render_view``):
   ``fields``, the mean absolute difference of the true fields (greenness, soil, relief,
   haze, urban; each 0-1); ``zone``, the share of pairs in two zones (road paint, driving
   side, roofs, palette, signs); ``district``, the share of pairs in two districts (~25
   km: walls, heights, trees, landmarks, street grid); ``road``, the median angle between
   the two roads (degrees, 0-90; 45 for unrelated roads).

   Per row: the median (a share for ``zone`` and ``district``), its ratio to the far
   pairs', and for views the AUC, the chance that a pair of the row is less alike than a
   far pair (0.5: no more alike than two places across India). A measure's resolution is
   the distance from which its excess over the next-on-the-road level (the nearest other
   place, seen with the same heading) stays at least 50% (90%) of the far pairs' excess,
   interpolated on log km between rows. One line more asks the question retrieval inside
   a 400 km cell faces: is a pair 25 km apart more alike than one 200 km apart?

2. What the demo's sampling allows, whatever the world shows: the demo's places labelled
   by grid cell and dealt into folds as ``geotag train`` deals them (places as groups,
   stratified by cell). For every held-out place: the distance to the nearest training
   place on the ground, and the share within 25 km of it (the ceiling of any predictor
   that answers a training location, as ``knn`` and ``refined`` do), of a training place
   of its own cell drawn at random (retrieval with no signal below the cell, cell right),
   and of its cell's point, the mean of the cell's training places (top cell, cell right).

Run it with::

    .venv/bin/python benchmarks/bench_sim_signal.py [--pairs 200] [--per-cell 40] [--seed 0]
    .venv/bin/python benchmarks/bench_sim_signal.py --quick    # seconds: a smoke run

About 30 s on 2 cores. Prints machine facts, the tables and a one-line conclusion; always
exits 0.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from machine import machine_line  # benchmarks/machine.py
from PIL import Image

from geotag.demo import COUNTRY, FULL, IMAGE_SIZE, MASK_BOTTOM, PHOTOSPHERES
from geotag.geo.distance import EARTH_RADIUS_M, haversine_km
from geotag.geo.grid import Grid, make_grid
from geotag.geo.locate import OUTSIDE, CellLocator
from geotag.geo.regions import country_region
from geotag.geo.sample import Quota, cell_pieces, sample_points
from geotag.sim.geography import FIELD_NAMES
from geotag.sim.world import SPACING_M, Panorama, World

DISTANCES_KM = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 500.0)
HEADINGS = (0.0, 180.0)  # the demo's
SCRAPE_RADIUS_KM = 20.0  # the demo's --radius
SNAP_SHARE = 0.25  # a partner is searched within this share of d ...
TOLERANCE = 1.5  # ... and kept when its real distance is within this factor of d
ATTEMPTS = 25
THUMB = (16, 14)  # 64 x 56 once the bottom strip is cut, downscaled 4x
HIST_BINS = 4
BAND_ROWS = 4  # the read-out's row texture: bands of 4 rows, as the thumbnail's
RIDGE = 1000.0  # on standardised features; the held-out fit is flat from 100 to 3000
TARGET_KM = 25.0
WITHIN_CELL_KM = 200.0  # a typical distance between two places of one 400 km cell
FOLDS = (3, 5)  # bench_refine's default, the demo's
LEVELS = (0.5, 0.9)
DEFAULT_PAIRS = 200
QUICK_PAIRS = 12
QUICK_PER_CELL = 8

VIEW_MEASURES = ("pixels", "shapes", "read-out")
INPUT_MEASURES = ("fields", "zone", "district", "road")
FORMATS = {
    "pixels": ".1f",
    "shapes": ".3f",
    "read-out": ".3f",
    "fields": ".3f",
    "zone": ".1%",
    "district": ".1%",
    "road": ".0f",
}


@dataclass(frozen=True)
class Pair:
    a: Panorama
    b: Panorama
    heading_a: float
    heading_b: float

    @property
    def km(self) -> float:
        return float(haversine_km(self.a.lat, self.a.lon, self.b.lat, self.b.lon))


@dataclass(frozen=True)
class Row:
    label: str
    km: float | None  # None: far pairs
    pairs: list[Pair]


@dataclass(frozen=True)
class Places:
    """The demo's places: its sample points snapped to panoramas, in a cell, deduplicated."""

    grid: Grid
    inside: Callable[[float, float], bool]
    panoramas: list[Panorama]
    cells: np.ndarray

    @property
    def lat(self) -> np.ndarray:
        return np.array([p.lat for p in self.panoramas])

    @property
    def lon(self) -> np.ndarray:
        return np.array([p.lon for p in self.panoramas])


@dataclass(frozen=True)
class Sampling:
    folds: int
    nearest_km: float  # median over held-out places
    nearest: float  # shares within TARGET_KM ...
    random_same_cell: float
    cell_point: float


# -- the demo's ground ---------------------------------------------------------------------
def demo_places(world: World, per_cell: int, seed: int) -> Places:
    """The demo's grid, and its sample points snapped to panoramas as the scrape does."""
    region = country_region(COUNTRY)
    shapely.prepare(region.geometry)
    grid = make_grid(region, FULL.cell_km)
    pieces = cell_pieces(
        grid.cells_in_plane(), grid.cells["region_fraction"].to_numpy(), grid.region_projected
    )
    points = sample_points(
        grid.cells["cell_id"].to_numpy(), pieces, grid.projection, Quota(per_cell=per_cell), seed
    )
    found: dict[str, Panorama] = {}
    for lat, lon in zip(points["lat"], points["lon"], strict=True):
        pano = world.nearest(float(lat), float(lon), radius_m=SCRAPE_RADIUS_KM * 1000)
        if pano is not None:
            found.setdefault(pano.pano_id, pano)
    panoramas = list(found.values())
    cells = CellLocator(grid).cells(
        np.array([p.lat for p in panoramas]), np.array([p.lon for p in panoramas])
    )
    keep = cells != OUTSIDE
    return Places(
        grid=grid,
        inside=lambda lat, lon: bool(shapely.contains_xy(region.geometry, lon, lat)),
        panoramas=[p for p, k in zip(panoramas, keep, strict=True) if k],
        cells=cells[keep],
    )


def destination(lat: float, lon: float, km: float, bearing: float) -> tuple[float, float]:
    """The point ``km`` along the great circle leaving (lat, lon) at ``bearing`` degrees."""
    delta = km * 1000.0 / EARTH_RADIUS_M
    phi, lam, theta = math.radians(lat), math.radians(lon), math.radians(bearing)
    phi2 = math.asin(
        math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi),
        math.cos(delta) - math.sin(phi) * math.sin(phi2),
    )
    return math.degrees(phi2), (math.degrees(lam2) + 540.0) % 360.0 - 180.0


def partner_at(
    world: World, places: Places, anchor: Panorama, km: float, rng: np.random.Generator
) -> Panorama | None:
    """A panorama about ``km`` from ``anchor`` in a random direction, inside the region."""
    radius_m = min(SNAP_SHARE * km, SCRAPE_RADIUS_KM) * 1000
    for _ in range(ATTEMPTS):
        lat, lon = destination(anchor.lat, anchor.lon, km, rng.uniform(0, 360))
        if not places.inside(lat, lon):
            continue
        pano = world.nearest(lat, lon, radius_m=radius_m)
        if pano is None or pano.pano_id == anchor.pano_id:
            continue
        real = float(haversine_km(anchor.lat, anchor.lon, pano.lat, pano.lon))
        if abs(math.log(real / km)) <= math.log(TOLERANCE):
            return pano
    return None


def next_on_road(world: World, anchor: Panorama) -> Panorama | None:
    """The panorama one step along the anchor's road, either way."""
    for bearing in (anchor.road_bearing, anchor.road_bearing + 180.0):
        lat, lon = destination(anchor.lat, anchor.lon, SPACING_M / 1000, bearing)
        pano = world.nearest(lat, lon, radius_m=0.5 * SPACING_M)
        if pano is not None and pano.pano_id != anchor.pano_id:
            return pano
    return None


def make_rows(world: World, places: Places, pairs: int, seed: int) -> list[Row]:
    anchors = places.panoramas
    specs: list[tuple[str, float | None]] = [
        ("same spot, heading 0 vs 180", 0.0),
        ("next on the road", SPACING_M / 1000),
        *((f"{d:g} km", d) for d in DISTANCES_KM),
        ("far (random places)", None),
    ]
    rows = []
    for index, (label, km) in enumerate(specs):
        rng = np.random.default_rng([seed, 0x516, index])
        found: list[Pair] = []
        for k in rng.permutation(len(anchors)):
            if len(found) == pairs:
                break
            a, heading = anchors[k], float(rng.choice(HEADINGS))
            if km == 0.0:
                found.append(Pair(a, a, HEADINGS[0], HEADINGS[1]))
                continue
            if km is None:
                b: Panorama | None = anchors[int(rng.integers(len(anchors)))]
            elif km < DISTANCES_KM[0]:
                b = next_on_road(world, a)
            else:
                b = partner_at(world, places, a, km, rng)
            if b is not None and b.pano_id != a.pano_id:
                found.append(Pair(a, b, heading, heading))
        rows.append(Row(label, km, found))
    return rows


# -- measures ------------------------------------------------------------------------------
class Views:
    """Views rendered as the demo scrapes them and cut as its masked run trains on them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._cache: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def thumb_and_features(self, pano: Panorama, heading: float) -> tuple[np.ndarray, np.ndarray]:
        """(16 x 14 x 3 thumbnail, the read-out's feature vector) of one view."""
        key = (pano.pano_id, heading)
        if key not in self._cache:
            jpeg = self.world.render(pano.pano_id, heading, 0.0, 90.0, IMAGE_SIZE, IMAGE_SIZE)
            with Image.open(io.BytesIO(jpeg)) as im:
                kept = IMAGE_SIZE - round(IMAGE_SIZE * MASK_BOTTOM)
                image = im.convert("RGB").crop((0, 0, IMAGE_SIZE, kept))
            pixels = np.asarray(image, dtype=np.int64)
            bins = (pixels * HIST_BINS // 256).reshape(-1, 3)
            codes = (bins[:, 0] * HIST_BINS + bins[:, 1]) * HIST_BINS + bins[:, 2]
            hist = np.bincount(codes, minlength=HIST_BINS**3) / len(codes)
            thumb = np.asarray(image.resize(THUMB, Image.Resampling.BOX), dtype=np.float32)
            features = np.concatenate(
                [
                    standardised(thumb).ravel(),
                    thumb.ravel() / 255,
                    thumb.mean((0, 1)) / 255,
                    hist,
                    row_texture(pixels),
                    constant_colour(thumb).ravel(),
                ]
            )
            self._cache[key] = (thumb, features)
        return self._cache[key]


def row_texture(pixels: np.ndarray) -> np.ndarray:
    """What stands along each band of rows wherever it stands: per band of ``BAND_ROWS`` rows
    and channel, the spread across columns and the mean step between neighbouring columns,
    on the view standardised per channel."""
    z = standardised(pixels.astype(np.float32))
    bands = z[: len(z) // BAND_ROWS * BAND_ROWS].reshape(-1, BAND_ROWS, *z.shape[1:])
    spread = bands.std(axis=(1, 2))
    steps = np.abs(np.diff(bands, axis=2)).mean(axis=(1, 2))
    return np.concatenate([spread.ravel(), steps.ravel()])


def constant_colour(thumb: np.ndarray) -> np.ndarray:
    """Log colour less its mean over the view, per channel: a shot's exposure and colour
    cast multiply every pixel alike, so they drop out, and the ground's colour against the
    sky's remains."""
    logs = np.log(thumb + 8.0)
    return logs - logs.mean(axis=(0, 1), keepdims=True)


def standardised(thumb: np.ndarray) -> np.ndarray:
    mean = thumb.mean(axis=(0, 1), keepdims=True)
    return (thumb - mean) / (thumb.std(axis=(0, 1), keepdims=True) + 1.0)


class ReadOut:
    """A ridge regression from one view's features to the five fields at its place."""

    def __init__(self, views: Views, places: Places) -> None:
        x = np.array(
            [views.thumb_and_features(p, h)[1] for p in places.panoramas for h in HEADINGS]
        )
        y = np.repeat(views.world.geography.fields(places.lat, places.lon), len(HEADINGS), 0)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-6
        self.y_mean = y.mean(0)
        z = (x - self.mean) / self.scale
        gram = z.T @ z + RIDGE * np.eye(z.shape[1])
        self.weights = np.linalg.solve(gram, z.T @ (y - self.y_mean))
        self.views = views

    def __call__(self, pano: Panorama, heading: float) -> np.ndarray:
        features = self.views.thumb_and_features(pano, heading)[1]
        return ((features - self.mean) / self.scale) @ self.weights + self.y_mean


def measure(views: Views, read: ReadOut, pair: Pair) -> dict[str, float]:
    thumb_a = views.thumb_and_features(pair.a, pair.heading_a)[0]
    thumb_b = views.thumb_and_features(pair.b, pair.heading_b)[0]
    lat, lon = np.array([pair.a.lat, pair.b.lat]), np.array([pair.a.lon, pair.b.lon])
    fields = views.world.geography.fields(lat, lon)
    zones = views.world.geography.zones(lat, lon)
    districts = views.world.geography.districts.lookup(lat, lon)
    turn = abs(pair.a.road_bearing - pair.b.road_bearing) % 180.0
    return {
        "pixels": float(np.abs(thumb_a - thumb_b).mean()),
        "shapes": float(np.abs(standardised(thumb_a) - standardised(thumb_b)).mean()),
        "read-out": float(
            np.abs(read(pair.a, pair.heading_a) - read(pair.b, pair.heading_b)).mean()
        ),
        "fields": float(np.abs(fields[0] - fields[1]).mean()),
        "zone": float(zones[0] != zones[1]),
        "district": float(districts[0] != districts[1]),
        "road": min(turn, 180.0 - turn),
    }


def read_out_error(read: ReadOut, rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute error of the read-out per field over the far pairs' first views, and
    that of a constant guess (the training mean): a field no better than its guess is not
    read at all, however alike the read-outs of near views are."""
    pairs = rows[-1].pairs
    lat, lon = np.array([p.a.lat for p in pairs]), np.array([p.a.lon for p in pairs])
    truth = read.views.world.geography.fields(lat, lon)
    guess = np.array([read(p.a, p.heading_a) for p in pairs])
    return np.abs(guess - truth).mean(0), np.abs(read.y_mean - truth).mean(0)


def level(values: np.ndarray, name: str) -> float:
    """A row's figure: the share of pairs for the binary ``zone``/``district``, else the
    median."""
    if len(values) == 0:
        return float("nan")
    return float(values.mean() if name in ("zone", "district") else np.median(values))


def less_alike(near: np.ndarray, far: np.ndarray) -> float:
    """P(a pair from ``near`` is less alike than one from ``far``); ties count half."""
    if len(near) == 0 or len(far) == 0:
        return float("nan")
    above = (near[:, None] > far[None, :]).mean()
    ties = (near[:, None] == far[None, :]).mean()
    return float(above + 0.5 * ties)


def resolution(km: Sequence[float], levels: Sequence[float], share: float) -> float | None:
    """The km from which the excess over ``levels[0]`` (the nearest row) stays >= ``share``
    of the far excess (``levels[-1]``), interpolated on log km; None where no row does."""
    base, far = levels[0], levels[-1]
    if not far > base:
        return None
    excess = [(v - base) / (far - base) for v in levels[:-1]]
    for k in range(len(excess)):
        if all(e >= share for e in excess[k:]):
            if k == 0 or km[k - 1] <= 0:
                return km[k]
            t = (share - excess[k - 1]) / (excess[k] - excess[k - 1])
            return float(math.exp(math.log(km[k - 1]) + t * math.log(km[k] / km[k - 1])))
    return None


# -- the demo's sampling -------------------------------------------------------------------
def sampling(places: Places, n_folds: int, seed: int) -> Sampling:
    """Held-out places against their fold's training places (see the module's part 2)."""
    from geotag.geo.points import data_points
    from geotag.train.folds import assign_folds

    ids = np.array([p.pano_id for p in places.panoramas])
    lat, lon, cells = places.lat, places.lon, places.cells
    folds = assign_folds(ids, n_folds, seed=seed, labels=cells)
    cell_ids = np.unique(cells)
    nearest, same_cell, to_point = [], [], []
    for fold in range(n_folds):
        test, train = folds == fold, folds != fold
        km = haversine_km(lat[test, None], lon[test, None], lat[None, train], lon[None, train])
        nearest.append(km.min(axis=1))
        mine = cells[test, None] == cells[None, train]
        same_cell += [
            float((r[m] <= TARGET_KM).mean()) for r, m in zip(km, mine, strict=True) if m.any()
        ]
        # The point a top-cell answer stands for: the mean of the cell's training places.
        point_lat, point_lon = data_points(
            places.grid, tuple(map(int, cell_ids)), cells[train], lat[train], lon[train]
        )
        where = np.searchsorted(cell_ids, cells[test])
        to_point.append(haversine_km(lat[test], lon[test], point_lat[where], point_lon[where]))
    ground, point = np.concatenate(nearest), np.concatenate(to_point)
    return Sampling(
        folds=n_folds,
        nearest_km=float(np.median(ground)),
        nearest=float((ground <= TARGET_KM).mean()),
        random_same_cell=float(np.mean(same_cell)),
        cell_point=float((point <= TARGET_KM).mean()),
    )


# -- output --------------------------------------------------------------------------------
def machine_facts() -> str:
    return f"{machine_line()}, numpy {np.__version__}"


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def print_pairs(
    rows: list[Row], values: dict[str, dict[str, np.ndarray]]
) -> dict[str, list[float | None]]:
    """Print the pair tables; return each measure's resolutions (see ``LEVELS``)."""
    far = values[rows[-1].label]
    levels = {m: [level(values[r.label][m], m) for r in rows] for m in far}

    def cells(k: int, measures: Sequence[str], auc: bool) -> str:
        text = ""
        for m in measures:
            ratio = levels[m][k] / levels[m][-1] if levels[m][-1] else float("nan")
            text += f"{fmt(levels[m][k], FORMATS[m]):>10}{fmt(ratio, '.2f'):>7}"
            if auc:
                text += f"{fmt(less_alike(values[rows[k].label][m], far[m]), '.2f'):>6}"
        return text

    head = "".join(f"{m:>10}{'x far':>7}{'AUC':>6}" for m in VIEW_MEASURES)
    print(f"\n{'views':<30}{'pairs':>6}{'km':>8}{head}")
    for k, row in enumerate(rows):
        km = np.median([p.km for p in row.pairs]) if row.pairs else float("nan")
        print(
            f"{row.label:<30}{len(row.pairs):>6}{fmt(km, ',.1f'):>8}{cells(k, VIEW_MEASURES, True)}"
        )
    head = "".join(f"{m:>10}{'x far':>7}" for m in INPUT_MEASURES)
    print(f"\n{'renderer inputs':<30}{head}")
    for k, row in enumerate(rows):
        print(f"{row.label:<30}{cells(k, INPUT_MEASURES, False)}")

    # From the next panorama on the road: the same spot is seen with two headings.
    km = [r.km or 0.0 for r in rows[1:-1]]
    found = {m: [resolution(km, levels[m][1:], s) for s in LEVELS] for m in levels}
    shares = " / ".join(f"{s:.0%}" for s in LEVELS)
    print(f"\nresolution: km from which a measure's excess over the next panorama on the road "
          f"stays >= {shares} of the far pairs'")  # fmt: skip
    for m in (*VIEW_MEASURES, *INPUT_MEASURES):
        print(f"  {m:<10}" + " / ".join(fmt_km(r) for r in found[m]))
    by_km = {r.km: values[r.label] for r in rows}
    if TARGET_KM in by_km and WITHIN_CELL_KM in by_km:
        near, cell = by_km[TARGET_KM], by_km[WITHIN_CELL_KM]
        odds = ", ".join(
            f"{m} {1 - less_alike(near[m], cell[m]):.2f}" for m in (*VIEW_MEASURES, *INPUT_MEASURES)
        )
        print(f"P(a {TARGET_KM:g} km pair is more alike than a {WITHIN_CELL_KM:g} km pair; "
              f"0.5: no signal): {odds}")  # fmt: skip
    return found


def fmt_km(value: float | None) -> str:
    return f"beyond {DISTANCES_KM[-1]:g} km" if value is None else f"{value:,.0f} km"


def at_km(value: float | None) -> str:
    return f"beyond {DISTANCES_KM[-1]:g} km" if value is None else f"from {value:,.0f} km"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="pairs per distance")
    parser.add_argument("--per-cell", type=int, default=FULL.per_cell, help="the demo's points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few pairs: a smoke run")
    args = parser.parse_args(argv)
    if args.pairs < 2 or args.per_cell < 1:
        parser.error("--pairs must be at least 2 and --per-cell at least 1")
    if args.quick:
        args.pairs, args.per_cell = QUICK_PAIRS, QUICK_PER_CELL
    print(machine_facts())
    started = time.perf_counter()
    world = World(seed=args.seed, user_fraction=PHOTOSPHERES)
    places = demo_places(world, args.per_cell, args.seed)
    views = Views(world)
    read = ReadOut(views, demo_places(world, args.per_cell, args.seed + 1))
    rows = make_rows(world, places, args.pairs, args.seed)
    values: dict[str, dict[str, np.ndarray]] = {}
    for row in rows:
        measured = [measure(views, read, pair) for pair in row.pairs]
        values[row.label] = {
            m: np.array([v[m] for v in measured]) for m in (*VIEW_MEASURES, *INPUT_MEASURES)
        }
    print(
        f"{COUNTRY}, seed {args.seed}: {len(places.panoramas):,} places from {args.per_cell} "
        f"points per {FULL.cell_km:g} km cell; up to {args.pairs} pairs per row; {len(views):,} "
        f"views of {IMAGE_SIZE} px, the bottom {MASK_BOTTOM:.0%} cut"
    )
    error, constant = read_out_error(read, rows)
    print("read-out error per view (mean absolute, fields 0-1; a constant guess's in brackets): "
          + ", ".join(f"{name} {e:.3f} ({c:.3f})" for name, e, c in zip(
              FIELD_NAMES, error, constant, strict=True)))  # fmt: skip
    found = print_pairs(rows, values)

    print(f"\nwhat the demo's sampling allows ({len(places.panoramas):,} places; held-out "
          f"places within {TARGET_KM:g} km of ...)")  # fmt: skip
    print(f"{'split':<10}{'nearest train km':>18}{'nearest train':>15}"
          f"{'random same cell':>18}{'cell point':>12}")  # fmt: skip
    table = [sampling(places, n, args.seed) for n in FOLDS]
    for s in table:
        print(f"{f'{s.folds} folds':<10}{s.nearest_km:>18,.1f}{s.nearest:>15.1%}"
              f"{s.random_same_cell:>18.1%}{s.cell_point:>12.1%}")  # fmt: skip
    print(f"({time.perf_counter() - started:.0f} s)")

    signal = found["read-out"][0]
    fields = found["fields"][0]
    ceiling, chance = table[0].nearest, table[0].random_same_cell
    if (signal is None or signal > TARGET_KM) and ceiling >= 4 * chance:
        verdict = "the 25 km goal is bounded by the world's signal, not by sampling"
    elif ceiling < 4 * chance:
        verdict = "the 25 km goal is bounded by sampling density"
    else:
        verdict = f"the world has signal at {TARGET_KM:g} km"
    print(
        f"\nconclusion: half the far contrast is reached by the fields read from a view "
        f"{at_km(signal)} and by the renderer's fields {at_km(fields)}; a training place "
        f"lies within {TARGET_KM:g} km of {ceiling:.0%} of held-out places (a random one "
        f"of the cell: {chance:.1%}): {verdict}"
    )


if __name__ == "__main__":
    main()
