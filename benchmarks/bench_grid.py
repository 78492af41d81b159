"""Benchmark geotag's grid and sampling against a peer library and a naive shapely loop.

What it measures, side by side in one run (median wall time of ``--repeats`` runs, by
``time.perf_counter``):

1. A hexagon grid over India at 100, 25 and 10 km (cell area K^2 km^2), made by
   a. geotag: ``make_grid(region, K, "hex")`` (region lookup is outside the timed part);
   b. the peer ``geohexgrid.make_grid_from_gdf``: flat-top hexagons of the same area in the
      same equal-area plane, keeping the cells that intersect the region (its closest
      equivalent of geotag's cells); the region's ``to_crs`` is timed with it;
   c. a per-cell shapely loop: the same pointy-top lattice built cell by cell in Python,
      ``intersects`` then ``intersection(...).area / area``, keeping shares >= 0.05.
2. 1,000,000 points over India's 10 km hex grid: geotag's ``sample_points`` (the cell
   pieces are built first and timed on their own row) against a per-piece loop that
   rejection-samples each piece's largest-remainder quota in its bounding box with numpy
   and ``shapely.contains_xy``.

Targets: the India 10 km hex grid (about 32,000 cells) in under 1 s and no slower than the
peer (geotag/peer <= 1.0); sampling 1,000,000 points in under 3 s.

Run it with ``make bench`` or::

    .venv/bin/python benchmarks/bench_grid.py [--repeats N] [--quick]

``--quick`` runs everything once and skips the naive 10 km grid loop (several seconds).
The script prints machine facts, the table and one PASS/MISS line per target, and always
exits 0.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from machine import machine_line  # benchmarks/machine.py
from shapely.geometry.base import BaseGeometry

from geotag.geo.grid import DEFAULT_MIN_REGION_FRACTION, Grid, make_grid, projected_region
from geotag.geo.projection import EqualAreaProjection
from geotag.geo.regions import Region, country_region
from geotag.geo.sample import Quota, cell_pieces, sample_points

if TYPE_CHECKING:
    import pandas as pd

COUNTRY = "India"
GRID_CELL_KM = (100, 25, 10)
SAMPLE_CELL_KM = 10
SAMPLE_POINTS = 1_000_000
SAMPLE_SEED = 0
DEFAULT_REPEATS = 5
#: With --quick, the naive grid loop is skipped at this cell size and below.
QUICK_LOOP_MIN_CELL_KM = 25

GRID_TARGET_CELL_KM = 10
GRID_TARGET_SECONDS = 1.0
PEER_RATIO_TARGET = 1.0
SAMPLE_TARGET_SECONDS = 3.0

PEER_NOTE = (
    "peer: flat-top hexes over the bounds + sjoin 'intersects' (multiprocessing pool above "
    "5,000 cells); keeps any overlap, computes no region fraction, no lon/lat cells, string ids"
)
LOOP_NOTE = "loop: unprepared region, no lon/lat conversion, no ids"


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``None`` seconds print as '-'."""

    case: str
    cells: int
    geotag_s: float | None
    peer_s: float | None = None
    loop_s: float | None = None
    target: str = "-"
    verdict: str = "-"
    notes: str = ""


# -- timing -----------------------------------------------------------------------------


def median_seconds(
    run: Callable[..., Any], repeats: int, fresh_args: Callable[[], tuple[Any, ...]] = tuple
) -> tuple[float, Any]:
    """Median wall time of ``run(*fresh_args())`` over ``repeats`` runs, and the last result.

    ``fresh_args`` is called outside the timed part, so each run can get untouched inputs.
    """
    times = []
    result = None
    for _ in range(repeats):
        args = fresh_args()
        started = time.perf_counter()
        result = run(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def untouched_copy(geometries: Any) -> Any:
    """A copy with no prepared state, so a naive loop does not profit from earlier runs."""
    return shapely.from_wkb(shapely.to_wkb(geometries))


# -- grids ------------------------------------------------------------------------------


def hexagon_circumradius_m(cell_km: float) -> float:
    """Circumradius of a regular hexagon of area ``cell_km``^2 (area = 3*sqrt(3)/2 * R^2)."""
    return math.sqrt(2 * cell_km**2 * 1e6 / (3 * math.sqrt(3)))


def geotag_grid(region: Region, cell_km: float) -> Grid:
    return make_grid(region, cell_km, shape="hex")


def peer_grid(region: Region, projection: EqualAreaProjection, cell_km: float) -> int:
    """Cells of ``geohexgrid`` that intersect the region, in geotag's equal-area plane."""
    import geohexgrid
    import geopandas as gpd

    lonlat = gpd.GeoDataFrame(geometry=[region.geometry], crs="EPSG:4326")
    projected = lonlat.to_crs(projection.crs)
    cells = geohexgrid.make_grid_from_gdf(
        projected, hexagon_circumradius_m(cell_km), trim_mode="intersect"
    )
    return len(cells)


def naive_hex_centres(
    bounds: tuple[float, float, float, float], cell_km: float
) -> Iterator[tuple[float, float]]:
    """Centres of geotag's pointy-top lattice over ``bounds``, row by row from the north-west."""
    radius = hexagon_circumradius_m(cell_km)
    col_width, row_height = math.sqrt(3) * radius, 1.5 * radius
    min_x, min_y, max_x, max_y = bounds
    reach = 2 * max(row_height, col_width)
    top, left = max_y + reach, min_x - reach - col_width / 2
    row = 0
    while top - row * row_height >= min_y - reach:
        y = top - row * row_height
        x = left + (row % 2) * col_width / 2
        while x <= max_x + reach:
            yield x, y
            x += col_width
        row += 1


def naive_grid_loop(region_projected: BaseGeometry, cell_km: float) -> int:
    """The per-cell baseline: one shapely hexagon, intersects and overlay at a time."""
    radius = hexagon_circumradius_m(cell_km)
    angles = [math.radians(a) for a in (90, 150, 210, 270, 330, 30)]
    offsets = [(radius * math.cos(a), radius * math.sin(a)) for a in angles]
    kept = 0
    for cx, cy in naive_hex_centres(region_projected.bounds, cell_km):
        hexagon = shapely.Polygon([(cx + dx, cy + dy) for dx, dy in offsets])
        if not hexagon.intersects(region_projected):
            continue
        if hexagon.intersection(region_projected).area / hexagon.area >= (
            DEFAULT_MIN_REGION_FRACTION
        ):
            kept += 1
    return kept


def grid_row(region: Region, cell_km: float, repeats: int, run_loop: bool) -> Row:
    geotag_s, grid = median_seconds(lambda: geotag_grid(region, cell_km), repeats)
    peer_s, peer_cells = median_seconds(
        lambda: peer_grid(region, grid.projection, cell_km), repeats
    )
    loop_s, loop_cells = None, None
    if run_loop:
        loop_s, loop_cells = median_seconds(
            naive_grid_loop,
            repeats,
            lambda: (projected_region(region.geometry, grid.projection), cell_km),
        )
    target, verdict = "-", "-"
    if cell_km == GRID_TARGET_CELL_KM:
        target = f"<{GRID_TARGET_SECONDS:g} s, <={PEER_RATIO_TARGET:g}x peer"
        verdict = pass_or_miss(grid_targets_met(geotag_s, peer_s))
    loop_text = f"loop keeps {loop_cells:,}" if loop_cells is not None else "loop skipped"
    return Row(
        case=f"{COUNTRY} hex {cell_km:g} km",
        cells=len(grid.cells),
        geotag_s=geotag_s,
        peer_s=peer_s,
        loop_s=loop_s,
        target=target,
        verdict=verdict,
        notes=f"peer keeps {peer_cells:,} (any overlap); {loop_text}",
    )


def grid_targets_met(geotag_s: float, peer_s: float) -> tuple[bool, bool]:
    return geotag_s < GRID_TARGET_SECONDS, geotag_s / peer_s <= PEER_RATIO_TARGET


# -- sampling ---------------------------------------------------------------------------


def build_pieces(grid: Grid) -> np.ndarray:
    fractions = grid.cells["region_fraction"].to_numpy()
    return cell_pieces(grid.cells_in_plane(), fractions, grid.region_projected)


def geotag_sampling(grid: Grid, pieces: np.ndarray) -> int:
    cell_ids = grid.cells["cell_id"].to_numpy()
    quota = Quota(total=SAMPLE_POINTS)
    points = sample_points(cell_ids, pieces, grid.projection, quota, seed=SAMPLE_SEED)
    return len(points)


def rejection_sample(
    piece: BaseGeometry, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniform points in ``piece``: draw in its bounding box until enough land in."""
    min_x, min_y, max_x, max_y = piece.bounds
    xs, ys, have = [], [], 0
    while have < count:
        x = rng.uniform(min_x, max_x, count)
        y = rng.uniform(min_y, max_y, count)
        inside = shapely.contains_xy(piece, x, y)
        xs.append(x[inside])
        ys.append(y[inside])
        have += int(inside.sum())
    return np.concatenate(xs)[:count], np.concatenate(ys)[:count]


def naive_sampling_loop(
    cell_ids: np.ndarray, pieces: np.ndarray, projection: EqualAreaProjection
) -> pd.DataFrame:
    """The per-piece baseline; ends with the same lon/lat table geotag returns."""
    import pandas as pd

    counts = Quota(total=SAMPLE_POINTS).counts(shapely.area(pieces) / 1e6)
    rng = np.random.default_rng(SAMPLE_SEED)
    owners, xs, ys = [], [], []
    for cell_id, piece, count in zip(cell_ids, pieces, counts, strict=True):
        if count == 0:
            continue
        x, y = rejection_sample(piece, int(count), rng)
        owners.append(np.full(len(x), cell_id, dtype=np.int64))
        xs.append(x)
        ys.append(y)
    lon, lat = projection.inverse(np.concatenate(xs), np.concatenate(ys))
    owner = np.concatenate(owners)
    point_id = np.arange(len(owner), dtype=np.int64)
    return pd.DataFrame({"point_id": point_id, "cell_id": owner, "lat": lat, "lon": lon})


def sampling_rows(region: Region, repeats: int) -> list[Row]:
    grid = geotag_grid(region, SAMPLE_CELL_KM)
    pieces_s, pieces = median_seconds(lambda: build_pieces(grid), repeats)
    sample_s, points = median_seconds(lambda: geotag_sampling(grid, pieces), repeats)
    cell_ids = grid.cells["cell_id"].to_numpy()
    loop_s, loop_points = median_seconds(
        naive_sampling_loop, repeats, lambda: (cell_ids, untouched_copy(pieces), grid.projection)
    )
    case = f"{COUNTRY} {SAMPLE_CELL_KM:g} km"
    return [
        Row(
            case=f"pieces, {case}",
            cells=len(pieces),
            geotag_s=pieces_s,
            notes="cells_in_plane + cell_pieces (overlay of cut cells only)",
        ),
        Row(
            case=f"sample {SAMPLE_POINTS:,} pts, {case}",
            cells=len(pieces),
            geotag_s=sample_s,
            loop_s=loop_s,
            target=f"<{SAMPLE_TARGET_SECONDS:g} s",
            verdict=pass_or_miss((sample_s < SAMPLE_TARGET_SECONDS,)),
            notes=f"{points:,} vs {len(loop_points):,} pts; loop incl. lon/lat + DataFrame",
        ),
    ]


# -- report -----------------------------------------------------------------------------


def pass_or_miss(checks: Sequence[bool]) -> str:
    return "PASS" if all(checks) else "MISS"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_facts() -> list[str]:
    import pyproj

    return [
        machine_line(),
        f"shapely: {shapely.__version__}  GEOS: {shapely.geos_version_string}",
        f"pyproj: {pyproj.__version__}  PROJ: {pyproj.proj_version_str}",
        f"geopandas: {package_version('geopandas')}  numpy: {np.__version__}",
        f"geohexgrid: {package_version('geohexgrid')}",
    ]


def seconds_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def ratio_text(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:.2f}"


TABLE_HEADER = (
    "case",
    "cells",
    "geotag s",
    "peer s",
    "loop s",
    "geotag/peer",
    "geotag/loop",
    "target",
    "verdict",
    "notes",
)


def table_cells(row: Row) -> tuple[str, ...]:
    return (
        row.case,
        f"{row.cells:,}",
        seconds_text(row.geotag_s),
        seconds_text(row.peer_s),
        seconds_text(row.loop_s),
        ratio_text(row.geotag_s, row.peer_s),
        ratio_text(row.geotag_s, row.loop_s),
        row.target,
        row.verdict,
        row.notes,
    )


def format_table(rows: Sequence[Row]) -> list[str]:
    """Plain, aligned text: text columns to the left, numbers to the right."""
    body = [table_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [TABLE_HEADER, *body]) for i in range(len(TABLE_HEADER))]
    left_aligned = {0, 7, 8, 9}

    def render(line: Sequence[str]) -> str:
        parts = [
            text.ljust(width) if i in left_aligned else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [render(TABLE_HEADER), rule, *(render(line) for line in body)]


def verdict_lines(grid_rows: Sequence[Row], sample_rows: Sequence[Row]) -> list[str]:
    target_row = next(r for r in grid_rows if r.case.endswith(f" {GRID_TARGET_CELL_KM:g} km"))
    assert target_row.geotag_s is not None and target_row.peer_s is not None
    fast, no_slower = grid_targets_met(target_row.geotag_s, target_row.peer_s)
    sample_row = sample_rows[-1]
    assert sample_row.geotag_s is not None
    ratio = target_row.geotag_s / target_row.peer_s
    return [
        f"{pass_or_miss((fast,))}  {target_row.case} grid in under {GRID_TARGET_SECONDS:g} s "
        f"({target_row.geotag_s:.3f} s, {target_row.cells:,} cells)",
        f"{pass_or_miss((no_slower,))}  {target_row.case} grid geotag/peer <= "
        f"{PEER_RATIO_TARGET:g} ({ratio:.2f})",
        f"{pass_or_miss((sample_row.geotag_s < SAMPLE_TARGET_SECONDS,))}  {sample_row.case} "
        f"in under {SAMPLE_TARGET_SECONDS:g} s ({sample_row.geotag_s:.3f} s)",
    ]


def warm_up(region: Region) -> None:
    """Pay imports, data loading and transformer set-up once, outside every timing."""
    grid = geotag_grid(region, GRID_CELL_KM[0])
    peer_grid(region, grid.projection, GRID_CELL_KM[0])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"runs per measurement; the median is reported (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run per measurement, and skip the naive loop for the 10 km grid",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.repeats = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print("\n".join(machine_facts()))
    print(f"repeats: {args.repeats} (median wall time)\n")
    region = country_region(COUNTRY)
    warm_up(region)
    grid_rows = [
        grid_row(
            region,
            cell_km,
            args.repeats,
            run_loop=not args.quick or cell_km >= QUICK_LOOP_MIN_CELL_KM,
        )
        for cell_km in GRID_CELL_KM
    ]
    sample_rows = sampling_rows(region, args.repeats)
    print("\n".join(format_table([*grid_rows, *sample_rows])))
    print(f"\n{PEER_NOTE}\n{LOOP_NOTE}\n")
    print("\n".join(verdict_lines(grid_rows, sample_rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
