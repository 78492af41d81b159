"""A grid of equal-area cells over a region.

``--cell-km K`` means every cell has the area of a K x K km square, exactly: hexagons,
squares and triangles are laid out in a Lambert azimuthal equal-area plane centred on the
region, where planar area *is* area on the WGS84 ellipsoid. ``h3`` instead takes the H3
resolution whose mean cell area is nearest to K^2 and reports what it got.

Cells are numbered 0..n-1 row by row from the north-west, so the same inputs always give
the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.errors import InputError
from geotag.geo.defaults import DEFAULT_MIN_REGION_FRACTION, SHAPES
from geotag.geo.projection import EqualAreaProjection
from geotag.geo.regions import Region

if TYPE_CHECKING:
    import geopandas as gpd

MAX_CELLS = 2_000_000
#: Half the equator: no grid has use for a wider cell.
MAX_CELL_KM = 20_000.0
#: Output edges longer than this are split, so that the EPSG:4326 polygon (straight in
#: degrees between vertices) stays within metres of the true, equal-area cell.
MAX_EDGE_KM = 25.0
#: Candidate lattice positions looked at, relative to the cells that can result.
CANDIDATE_FACTOR = 8

GRID_COLUMNS = ("cell_id", "center_lat", "center_lon", "area_km2", "region_fraction")


@dataclass(frozen=True)
class Candidates:
    """Cells a shape proposes over a region, in projected metres, with their order keys."""

    polygons: np.ndarray
    row: np.ndarray
    col: np.ndarray
    nominal_area_km2: float
    h3_resolution: int | None = None


@dataclass(frozen=True)
class Grid:
    """The result of :func:`make_grid`: the cells and what it took to make them."""

    cells: gpd.GeoDataFrame
    region: Region
    region_projected: BaseGeometry
    projection: EqualAreaProjection
    shape: str
    cell_km: float
    cell_area_km2: float
    region_area_km2: float
    min_region_fraction: float
    h3_resolution: int | None
    dropped_cells: int

    @property
    def settings(self) -> dict[str, object]:
        """What the grid stage records in geotag.toml."""
        return {
            "region": self.region.name,
            "region_source": self.region.source,
            "shape": self.shape,
            "cell_km": self.cell_km,
            "cell_area_km2": round(self.cell_area_km2, 6),
            "h3_resolution": self.h3_resolution,
            "min_region_fraction": self.min_region_fraction,
            "crs": self.projection.proj4,
            "cells": len(self.cells),
            "region_area_km2": round(self.region_area_km2, 3),
        }

    @property
    def title(self) -> str:
        """One line naming the region, the cells and their size, for pictures."""
        size = (
            f"H3 resolution {self.h3_resolution}"
            if self.h3_resolution is not None
            else f"{self.cell_km:g} km"
        )
        return (
            f"{self.region.name}: {len(self.cells):,} {self.shape} cells of {size} "
            f"({self.cell_area_km2:,.0f} km²)"
        )

    def cells_in_plane(self) -> np.ndarray:
        """The cells as polygons of the grid's own equal-area plane."""
        return cells_in_plane(np.asarray(self.cells.geometry.values), self.projection)


# -- lattices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lattice:
    """A periodic tiling: rows ``row_height`` apart, columns ``col_width`` apart.

    ``templates[k]`` are the vertex offsets (counter-clockwise) of a cell whose
    ``(row + col) % len(templates) == k``; ``odd_row_shift`` shifts odd rows east.
    """

    row_height: float
    col_width: float
    odd_row_shift: float
    templates: tuple[np.ndarray, ...]


def hexagon_lattice(area_m2: float) -> Lattice:
    """Pointy-top hexagons (the "isometric" grid) of the given area."""
    radius = math.sqrt(2 * area_m2 / (3 * math.sqrt(3)))
    angles = np.radians([90, 150, 210, 270, 330, 30])
    template = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
    width = math.sqrt(3) * radius
    return Lattice(1.5 * radius, width, width / 2, (template,))


def square_lattice(area_m2: float) -> Lattice:
    half = math.sqrt(area_m2) / 2
    template = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    return Lattice(2 * half, 2 * half, 0.0, (template,))


def triangle_lattice(area_m2: float) -> Lattice:
    """Equilateral triangles, alternately pointing up and down along each row."""
    side = math.sqrt(4 * area_m2 / math.sqrt(3))
    height = math.sqrt(3) / 2 * side
    s, h = side / 2, height / 2
    up = np.array([[-s, -h], [s, -h], [0.0, h]])
    down = np.array([[0.0, -h], [s, h], [-s, h]])
    return Lattice(height, side / 2, 0.0, (up, down))


#: The planar shapes of :data:`geotag.geo.defaults.SHAPES` (all but ``h3``).
LATTICES: dict[str, Callable[[float], Lattice]] = {
    "hex": hexagon_lattice,
    "square": square_lattice,
    "triangle": triangle_lattice,
}


def lattice_candidates(
    lattice: Lattice, region_projected: BaseGeometry, nominal_area_km2: float, limit: int
) -> Candidates:
    """The lattice cells near any part of the region (one bounding box per part)."""
    min_x, _, _, max_y = region_projected.bounds
    reach = max(lattice.row_height, lattice.col_width) * 2
    top = max_y + reach
    left = min_x - reach - lattice.odd_row_shift
    max_x = region_projected.bounds[2]
    stride = math.ceil((max_x - left + 2 * reach) / lattice.col_width) + 1
    blocks: list[np.ndarray] = []
    total = 0
    for part in shapely.get_parts(region_projected):
        px0, py0, px1, py1 = part.bounds
        r0 = max(math.floor((top - py1 - reach) / lattice.row_height), 0)
        r1 = math.ceil((top - py0 + reach) / lattice.row_height)
        c0 = max(math.floor((px0 - left - reach) / lattice.col_width), 0)
        c1 = math.ceil((px1 - left + reach) / lattice.col_width)
        total += (r1 - r0 + 1) * (c1 - c0 + 1)
        if total > limit:
            raise InputError(
                f"the grid would need more than {limit:,} candidate cells; use a larger "
                "--cell-km or a smaller region"
            )
        rows, cols = np.meshgrid(np.arange(r0, r1 + 1), np.arange(c0, c1 + 1), indexing="ij")
        blocks.append((rows * stride + cols).ravel())
    # Parts' boxes overlap; one integer key per position dedupes them, sorted row-major.
    keys = np.unique(np.concatenate(blocks))
    row, col = np.divmod(keys, stride)
    centre_x = left + col * lattice.col_width + (row % 2) * lattice.odd_row_shift
    centre_y = top - row * lattice.row_height
    centres = np.column_stack([centre_x, centre_y])
    parity = (row + col) % len(lattice.templates)
    vertex_count = len(lattice.templates[0])
    coords = np.empty((len(keys), vertex_count + 1, 2))
    for k, template in enumerate(lattice.templates):
        chosen = parity == k
        ring = np.vstack([template, template[:1]])
        coords[chosen] = centres[chosen, None, :] + ring[None, :, :]
    return Candidates(shapely.polygons(coords), row, col.astype(float), nominal_area_km2)


def h3_candidates(
    region: Region, projection: EqualAreaProjection, cell_km: float, limit: int
) -> Candidates:
    """H3 cells overlapping the region at the resolution nearest in area to ``cell_km``^2."""
    import h3

    wanted = cell_km**2
    resolution = min(
        range(16), key=lambda r: abs(math.log(h3.average_hexagon_area(r, "km^2") / wanted))
    )
    mean_area = h3.average_hexagon_area(resolution, "km^2")
    region_km2 = shapely.area(projection.project(region.geometry)) / 1e6
    if region_km2 / mean_area > limit:
        raise InputError(
            f"H3 resolution {resolution} would give about {region_km2 / mean_area:,.0f} cells "
            f"(limit {limit:,}); use a larger --cell-km"
        )
    shape = h3.geo_to_h3shape(shapely.geometry.mapping(region.geometry))
    # A cell overlapping several parts of the shape can be listed more than once.
    ids = sorted(set(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap")))
    rings = []
    for cell in ids:
        lat, lon = np.array(h3.cell_to_boundary(cell)).T
        # Unwrap around the projection's meridian so a cell over the antimeridian stays whole.
        lon = (lon - projection.lon_0 + 180.0) % 360.0 - 180.0 + projection.lon_0
        rings.append(shapely.Polygon(np.column_stack([lon, lat])))
    # Vertex counts differ (cells cut by icosahedron edges have more), so build one by one.
    polygons = projection.project(np.array(rings, dtype=object))
    centres = shapely.centroid(polygons)
    edge = math.sqrt(mean_area) * 1000
    row = np.round(-shapely.get_y(centres) / edge) if len(ids) else np.array([])
    return Candidates(
        np.asarray(polygons), row, shapely.get_x(centres), mean_area, h3_resolution=resolution
    )


# -- the grid ---------------------------------------------------------------------------


def make_grid(
    region: Region,
    cell_km: float,
    shape: str = "hex",
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION,
    max_cells: int = MAX_CELLS,
) -> Grid:
    """Cells of ``shape`` and area ``cell_km``^2 covering ``region``.

    Cells whose share inside the region is below ``min_region_fraction`` are dropped.
    """
    import geopandas as gpd

    _check_options(cell_km, shape, min_region_fraction)
    lat_0, lon_0 = region.center()
    projection = EqualAreaProjection.centred_on(lat_0, lon_0)
    region_projected = projected_region(region.geometry, projection)
    region_km2 = region_projected.area / 1e6
    if region_km2 <= 0:
        raise InputError(f"region {region.name!r} has no area")

    nominal_km2 = cell_km**2
    if shape == "h3":
        candidates = h3_candidates(region, projection, cell_km, max_cells)
    else:
        expected = region_km2 / nominal_km2
        if expected > max_cells:
            suggestion = _nice_ceiling(math.sqrt(region_km2 / max_cells))
            raise InputError(
                f"--cell-km {cell_km:g} would give about {expected:,.0f} cells over "
                f"{region.name} (limit {max_cells:,}); try --cell-km {suggestion:g} or more"
            )
        lattice = LATTICES[shape](nominal_km2 * 1e6)
        limit = max(CANDIDATE_FACTOR * max_cells, 10_000)
        candidates = lattice_candidates(lattice, region_projected, nominal_km2, limit)

    fraction = region_fractions(candidates.polygons, region_projected)
    keep = (fraction > 0) & (fraction >= min_region_fraction)
    if not keep.any():
        raise InputError(
            f"no {shape} cell of {cell_km:g} km has at least {min_region_fraction:g} of its area "
            f"inside {region.name}; use a smaller --cell-km or a lower --min-region-fraction"
        )
    dropped = int(((fraction > 0) & ~keep).sum())
    order = np.lexsort((candidates.col[keep], candidates.row[keep]))
    polygons = candidates.polygons[keep][order]
    fraction = fraction[keep][order]

    centres = shapely.centroid(polygons)
    center_lon, center_lat = projection.inverse(shapely.get_x(centres), shapely.get_y(centres))
    area_km2 = _areas_km2(polygons, candidates, projection)
    max_edge_m = MAX_EDGE_KM * 1000
    geometry = to_lonlat(shapely.segmentize(polygons, max_edge_m), projection)
    cells = gpd.GeoDataFrame(
        {
            "cell_id": np.arange(len(polygons), dtype=np.int64),
            "center_lat": center_lat,
            "center_lon": center_lon,
            "area_km2": area_km2,
            "region_fraction": np.clip(fraction, 0.0, 1.0),
        },
        geometry=geometry,
        crs="EPSG:4326",
    )
    return Grid(
        cells=cells,
        region=region,
        region_projected=region_projected,
        projection=projection,
        shape=shape,
        cell_km=float(cell_km),
        cell_area_km2=float(np.median(area_km2)),
        region_area_km2=float(region_km2),
        min_region_fraction=float(min_region_fraction),
        h3_resolution=candidates.h3_resolution,
        dropped_cells=dropped,
    )


def _check_options(cell_km: float, shape: str, min_region_fraction: float) -> None:
    if not isinstance(cell_km, (int, float)) or not math.isfinite(cell_km) or cell_km <= 0:
        raise InputError(f"--cell-km must be a positive number of kilometres; got {cell_km}")
    if cell_km > MAX_CELL_KM:
        # A cell wider than the Earth covers everything: a typo, not a grid.
        raise InputError(f"--cell-km must be at most {MAX_CELL_KM:g} km; got {cell_km:g}")
    if shape not in SHAPES:
        raise InputError(f"unknown --shape {shape!r}; choose one of {', '.join(SHAPES)}")
    if not (math.isfinite(min_region_fraction) and 0 <= min_region_fraction <= 1):
        raise InputError(f"--min-region-fraction must lie in [0, 1]; got {min_region_fraction}")


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= value."""
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        nice = step * 10**exponent
        if nice >= value:
            return nice
    return 10 ** (exponent + 1)  # pragma: no cover - the loop always returns


def projected_region(geometry: BaseGeometry, projection: EqualAreaProjection) -> BaseGeometry:
    """The region in the projection, with parts that touch across the antimeridian merged."""
    projected = projection.project(geometry)
    merged = shapely.union_all(shapely.get_parts(projected))
    return shapely.make_valid(merged)


def cells_in_plane(cells_lonlat: np.ndarray, projection: EqualAreaProjection) -> np.ndarray:
    """Cells (EPSG:4326) as polygons of ``projection``'s plane.

    A cell split at the antimeridian for EPSG:4326 (see :func:`to_lonlat`) is made whole
    again, so every picture and every point-in-cell test sees the same cell.
    """
    projected = np.asarray(projection.project(cells_lonlat), dtype=object)
    for i in np.flatnonzero(shapely.get_num_geometries(projected) > 1):
        projected[i] = projected_region(cells_lonlat[i], projection)
    return projected


def region_fractions(polygons: np.ndarray, region_projected: BaseGeometry) -> np.ndarray:
    """Share of each polygon's area inside the region (all in projected metres).

    Only cells cut by the boundary pay for an overlay; the prepared region answers the
    inside / outside question for the rest.
    """
    shapely.prepare(region_projected)
    fraction = np.zeros(len(polygons))
    touching = np.flatnonzero(shapely.intersects(region_projected, polygons))
    inside = shapely.contains_properly(region_projected, polygons[touching])
    fraction[touching[inside]] = 1.0
    cut = touching[~inside]
    if len(cut):
        overlap = shapely.area(shapely.intersection(polygons[cut], region_projected))
        fraction[cut] = overlap / shapely.area(polygons[cut])
    return fraction


def _areas_km2(
    polygons: np.ndarray, candidates: Candidates, projection: EqualAreaProjection
) -> np.ndarray:
    """Cell areas on the WGS84 ellipsoid.

    Lattice cells are polygons of the equal-area plane, so their planar area is exact.
    H3 cells are defined by their vertices on the globe, so they get the geodesic area.
    """
    if candidates.h3_resolution is None:
        return shapely.area(polygons) / 1e6
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    lonlat = projection.unproject(polygons)
    return np.array([abs(geod.geometry_area_perimeter(p)[0]) / 1e6 for p in lonlat])


def to_lonlat(polygons: np.ndarray, projection: EqualAreaProjection) -> np.ndarray:
    """Projected polygons -> EPSG:4326; a cell over the antimeridian becomes two parts.

    RFC 7946 asks for the split, and it is what keeps a cell near 180 degrees from being
    drawn 358 degrees wide by every GIS.
    """
    lonlat = np.asarray(projection.unproject(polygons))
    x_min, _, x_max, _ = shapely.bounds(lonlat).T
    for i in np.flatnonzero(x_max - x_min > 180):
        lonlat[i] = split_at_antimeridian(lonlat[i])
    return repaired(lonlat)


def repaired(polygons: np.ndarray) -> np.ndarray:
    """``polygons`` with any invalid one made valid, its polygonal parts kept.

    A cell valid in the equal-area plane can cross itself in lon/lat: where two of its
    vertices lie within a rounding error of an edge (snapped admin boundaries), the curved
    projection's inverse moves them by ~1e-9 degrees, enough to cross. The repair moves
    nothing by more than that.
    """
    polygons = np.asarray(polygons, dtype=object)
    for i in np.flatnonzero(~shapely.is_valid(polygons)):
        polygons[i] = polygonal(shapely.make_valid(polygons[i]))
    return polygons


def polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The polygons of an overlay's or a repair's result (lines and points where shapes
    touch dropped; multipolygons inside a collection flattened)."""
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = shapely.get_parts(shapely.get_parts(geometry))
    kept = [p for p in parts if p.geom_type == "Polygon" and p.area > 0]
    return shapely.MultiPolygon(kept) if kept else shapely.Polygon()


def split_at_antimeridian(polygon: BaseGeometry) -> BaseGeometry:
    """A polygon whose longitudes jump across +-180 -> a MultiPolygon split at 180."""
    shifted = shapely.transform(
        polygon,
        lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360, xy[:, 0]), xy[:, 1]]),
    )
    east = shapely.clip_by_rect(shifted, -180, -90, 180, 90)
    west = shapely.clip_by_rect(shifted, 180, -90, 540, 90)
    west = shapely.transform(west, lambda xy: xy - np.array([360.0, 0.0]))
    parts = [p for g in (east, west) for p in shapely.get_parts(g) if not p.is_empty]
    return shapely.MultiPolygon(parts)
