"""Partitions: the classes of a run, as cells that follow the data (issue #16).

A partition covers exactly what the workspace's grid covers, cut differently:

- ``grid``: the grid's own cells, unchanged.
- ``adaptive``: the grid's cells, split where the training images crowd (H3 children for an
  ``h3`` grid, quadtree quarters otherwise) and merged where they are sparse, as PlaNet and
  OSV-5M do.
- ``admin``: first-level administrative regions (states, provinces) cut to the grid's region,
  grown over the rest of the grid's cells, then split and merged by the same rule, as
  PIGEON does.

All geometry is worked in the grid's equal-area plane, on a 1 mm precision grid, so pieces
cut from one shape meet exactly and the cells never overlap or leave gaps. Cells are
written in EPSG:4326 and split at the antimeridian like the grid's.

Only the training images' locations passed in are used: a partition never sees a test fold.
"""

from __future__ import annotations

import functools
import heapq
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.atomic import atomic_path
from geotag.errors import DataError, InputError, first_line
from geotag.geo.grid import MAX_EDGE_KM, Grid, cells_in_plane, polygonal, repaired, to_lonlat
from geotag.geo.projection import EqualAreaProjection

if TYPE_CHECKING:
    import geopandas as gpd

KINDS = ("grid", "adaptive", "admin")
ADMIN1_FILE = Path(__file__).parent / "data" / "admin1.parquet"
PARTITION_COLUMNS = ("cell_id", "center_lat", "center_lon", "area_km2", "images", "source")
#: The file-level Parquet metadata key that holds kind, limits, projection and notes.
METADATA_KEY = b"geotag:partition"
FORMAT_VERSION = 1
OUTSIDE = -1

#: Overlays run on this precision grid (metres of the plane): fixed-precision overlay is
#: robust, and pieces cut from one shape share their edges vertex for vertex.
SNAP_M = 1e-3
#: Edges closer than this count as one shared edge (pieces cut in different overlays).
TOUCH_M = 1e-2
#: Cells are neighbours when they share at least this much border; less is a corner.
MIN_BORDER_M = 1.0
#: A cell is not split once its halves would be smaller than this ...
MIN_SPLIT_M = 50.0
#: ... or once it is this many levels below its grid cell or administrative region.
MAX_DEPTH = 16
H3_MAX_RESOLUTION = 15
#: An admin region with less than this share of its own area inside the grid's region,
#: and less than this share of the region, is a sliver from a border drawn differently.
SLIVER_SHARE = 0.02


@dataclass(frozen=True)
class Partition:
    """The cells a run classifies into, with the training images each holds.

    ``cells`` has ``cell_id`` (0..n-1), ``center_lat``, ``center_lon``, ``area_km2``,
    ``images``, ``source`` and ``geometry`` (EPSG:4326). ``source`` says where a cell came
    from: ``grid:17``, ``grid:17/2`` (quarter 2 of cell 17; quarters run NW, NE, SW, SE),
    ``h3:<index>``, ``admin:IN-MH``, and ``a+b`` joined after a merge
    (``admin:IN-MH+IN-GA``). ``notes`` says where the limits could not be kept.
    """

    cells: gpd.GeoDataFrame
    kind: str
    max_images: int | None
    min_images: int | None
    projection: EqualAreaProjection
    notes: tuple[str, ...] = ()

    @property
    def settings(self) -> dict[str, object]:
        """What a stage records about the partition in geotag.toml / config.json."""
        return {
            "cells": self.kind,
            "max_images": self.max_images,
            "min_images": self.min_images,
            "classes": len(self.cells),
        }

    def locate(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """``cell_id`` of each location, or -1 outside every cell.

        Decided in the grid's equal-area plane; a point on a shared edge goes to the lower
        id, as :class:`geotag.geo.locate.CellLocator` does. Cells reach as far as the grid's
        cells do, which may be past the region's edge: drop images outside the region first.
        """
        lat, lon = np.atleast_1d(np.asarray(lat, float)), np.atleast_1d(np.asarray(lon, float))
        if lat.shape != lon.shape or lat.ndim != 1:
            raise InputError("lat and lon must be one-dimensional and of equal length")
        x, y = self.projection.forward(lon, lat)
        return self._index.locate(np.asarray(x), np.asarray(y))

    @functools.cached_property
    def _index(self) -> _PlaneIndex:
        polygons = cells_in_plane(np.asarray(self.cells.geometry.values), self.projection)
        return _PlaneIndex(polygons, self.cells["cell_id"].to_numpy())

    def write(self, path: Path) -> None:
        """GeoParquet (EPSG:4326, zstd), written atomically; the settings ride along."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta = {
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "max_images": self.max_images,
            "min_images": self.min_images,
            "crs": self.projection.proj4,
            "notes": list(self.notes),
        }
        _check_cells(self.cells, path)  # never write what read would refuse
        # geopandas writes the "geo" metadata; ours is added beside it.
        buffer = io.BytesIO()
        self.cells.to_parquet(buffer, compression="zstd", index=False)
        table = pq.read_table(pa.BufferReader(buffer.getvalue()))
        metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta).encode()}
        with atomic_path(Path(path)) as tmp:
            pq.write_table(table.replace_schema_metadata(metadata), tmp, compression="zstd")

    @classmethod
    def read(cls, path: Path) -> Partition:
        """A partition written by :meth:`write`; a damaged file is one :class:`DataError`."""
        import geopandas as gpd
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise DataError(f"partition file {path} does not exist")
        try:
            raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
            cells = gpd.read_parquet(path)
        except Exception as exc:  # Arrow / geo metadata errors: the file is damaged
            raise DataError(f"cannot read partition {path}: {first_line(exc)}") from None
        if raw is None:
            raise DataError(f"{path} is not a geotag partition (no {METADATA_KEY.decode()} key)")
        try:
            meta = json.loads(raw)
            if meta["version"] != FORMAT_VERSION:
                raise ValueError(f"format version {meta['version']}, this geotag reads 1")
            kind, notes = meta["kind"], tuple(str(n) for n in meta["notes"])
            limits = (meta["max_images"], meta["min_images"])
            projection = EqualAreaProjection.from_proj4(meta["crs"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} has damaged partition settings: {exc!r}") from None
        if kind not in KINDS or not all(v is None or isinstance(v, int) for v in limits):
            raise DataError(f"{path} has damaged partition settings: kind {kind!r}, {limits}")
        if "geometry" in cells.columns:
            # Runs trained before to_lonlat repaired its output hold cells that cross
            # themselves by a rounding error; they read as they were meant.
            cells = cells.set_geometry(repaired(np.asarray(cells.geometry.values)), crs=cells.crs)
        _check_cells(cells, path)
        return cls(cells, kind, limits[0], limits[1], projection, notes)


def _check_cells(cells: gpd.GeoDataFrame, path: Path) -> None:
    missing = [c for c in (*PARTITION_COLUMNS, "geometry") if c not in cells.columns]
    if missing:
        raise DataError(f"partition {path} lacks column(s) {', '.join(missing)}")
    if cells.crs is None or not cells.crs.equals("EPSG:4326"):
        raise DataError(f"partition {path} is not in EPSG:4326 (crs {cells.crs})")
    ids = cells["cell_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(cells))):
        raise DataError(f"partition {path}: cell_id must run 0..n-1 in order")
    geometry = np.asarray(cells.geometry.values)
    if len(cells) == 0 or shapely.is_empty(geometry).any() or not shapely.is_valid(geometry).all():
        raise DataError(f"partition {path} has no cells, or an empty or invalid cell")


class _PlaneIndex:
    """Point-in-cell lookups in the plane; the lower id wins on a shared edge."""

    def __init__(self, polygons: np.ndarray, cell_ids: np.ndarray) -> None:
        self.cell_ids = np.asarray(cell_ids, dtype=np.int64)
        self.polygons = np.asarray(polygons, dtype=object)
        shapely.prepare(self.polygons)
        self._tree = shapely.STRtree(self.polygons)

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = np.full(len(x), OUTSIDE, dtype=np.int64)
        if len(x) == 0:
            return result
        point_index, cell_index = self._tree.query(shapely.points(x, y), predicate="intersects")
        order = np.lexsort((self.cell_ids[cell_index], point_index))
        first = np.unique(point_index[order], return_index=True)[1]
        result[point_index[order][first]] = self.cell_ids[cell_index[order][first]]
        return result


# -- the three kinds ---------------------------------------------------------------------


def grid_partition(grid: Grid, lat: np.ndarray, lon: np.ndarray) -> Partition:
    """Today's behaviour: the grid's cells, unchanged, with their training images counted."""
    lat, lon = _check_points(lat, lon)
    cells = grid.cells[["cell_id", "center_lat", "center_lon", "area_km2", "geometry"]].copy()
    cells["cell_id"] = cells["cell_id"].astype(np.int64)
    cells.insert(4, "images", np.zeros(len(cells), dtype=np.int64))
    prefix, keys = _grid_keys(grid)
    cells.insert(5, "source", [prefix + k for k in keys])
    return _finish(
        Partition(cells.reset_index(drop=True), "grid", None, None, grid.projection), lat, lon, []
    )


def adaptive_partition(
    grid: Grid, lat: np.ndarray, lon: np.ndarray, *, max_images: int, min_images: int
) -> Partition:
    """The grid's cells, split where more than ``max_images`` training images fall and
    merged where fewer than ``min_images`` do.

    **Split.** A cell holding more than ``max_images`` images is cut into its H3 children (one
    resolution finer) on an ``h3`` grid, or into the four quarters of its bounding box in the
    equal-area plane otherwise (each quarter intersected with the cell), again and again
    until every cell holds at most ``max_images``. H3 children do not tile their parent
    exactly: each is clipped to the parent, and what is left of the parent joins the child it
    shares the longest border with.

    **Merge.** Then, fewest images first (ties: lowest id), every cell with fewer than
    ``min_images`` images (empty ones included) is merged into its best neighbour: the
    adjacent cell (sharing at least :data:`MIN_BORDER_M` of border) holding the fewest
    images, ties to the longest shared border, then the lowest id. The geometries are united
    and the cell is looked at again, until every cell holds at least ``min_images``.

    **Corner cases.**

    - Images that cannot be told apart (many at one spot) stop the splitting when they are all
      the images a cell has, or when a cell is :data:`MAX_DEPTH` levels deep, smaller than
      2 x :data:`MIN_SPLIT_M` across, or (H3) at resolution 15. That cell keeps more than
      ``max_images``; :attr:`Partition.notes` names it.
    - Merging comes second and wins: a merge that pushes a cell over ``max_images`` is still
      made, because a class with almost no images cannot be learned while a large one only
      costs precision. Such cells are named in the notes too.
    - A cell with no neighbour (an island) merges into the cell whose centroid is nearest.
    - When all images together are fewer than ``min_images``, the partition is one cell.
    - Images outside every grid cell count for none; the notes say how many.
    """
    lat, lon = _check_points(lat, lon)
    _check_limits(max_images, min_images)
    prefix, keys = _grid_keys(grid)
    polygons = _snap(grid.cells_in_plane())
    h3_indices: list[str | None] = (
        list(keys) if grid.h3_resolution is not None else [None] * len(keys)
    )
    atoms = [_Atom(p, k, h, 0) for p, k, h in zip(polygons, keys, h3_indices, strict=True)]
    return _build(grid, "adaptive", prefix, atoms, lat, lon, max_images, min_images)


def admin_partition(
    grid: Grid, lat: np.ndarray, lon: np.ndarray, *, max_images: int, min_images: int
) -> Partition:
    """First-level administrative regions over the grid, split and merged by images.

    The regions of the bundled Natural Earth admin-1 layer (:data:`ADMIN1_FILE`) are cut to
    the grid's region and made disjoint. A region that reaches in by a sliver only (under
    :data:`SLIVER_SHARE` of its own area and of the grid's region: a border drawn differently
    in the two layers) is dropped. What of the grid's cells is left (their parts outside the
    region, gaps in the layer), taken cell by cell, joins the region it shares the longest
    border with, else the nearest one, so the result covers the grid's cells exactly. Then
    the split (quadtree in the equal-area plane; never H3) and merge rules and the corner
    cases of :func:`adaptive_partition` apply. Sources are ``admin:<ISO 3166-2 code>``, or
    ``admin:<country>~<name>`` for a region the layer has no code for.
    """
    lat, lon = _check_points(lat, lon)
    _check_limits(max_images, min_images)
    atoms = _admin_atoms(grid)
    return _build(grid, "admin", "admin:", atoms, lat, lon, max_images, min_images)


def make_partition(
    kind: str,
    grid: Grid,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    max_images: int,
    min_images: int,
) -> Partition:
    """The partition of ``kind`` (one of :data:`KINDS`); ``grid`` ignores the limits."""
    if kind == "grid":
        return grid_partition(grid, lat, lon)
    if kind == "adaptive":
        return adaptive_partition(grid, lat, lon, max_images=max_images, min_images=min_images)
    if kind == "admin":
        return admin_partition(grid, lat, lon, max_images=max_images, min_images=min_images)
    raise InputError(f"unknown --cells {kind!r}; choose one of {', '.join(KINDS)}")


# -- checks ------------------------------------------------------------------------------


def _check_points(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    if lat.ndim != 1 or lat.shape != lon.shape:
        raise InputError("lat and lon must be one-dimensional and of equal length")
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise InputError("image locations must be finite numbers")
    if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
        raise InputError("image latitudes must lie in [-90, 90] and longitudes in [-180, 180]")
    return lat, lon


def _check_limits(max_images: int, min_images: int) -> None:
    for name, value, least in (("--max-images", max_images, 1), ("--min-images", min_images, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InputError(f"{name} must be a whole number >= {least}; got {value!r}")
    if min_images > max_images:
        raise InputError(f"--min-images ({min_images}) must not exceed --max-images ({max_images})")


def _grid_keys(grid: Grid) -> tuple[str, list[str]]:
    """The prefix and per-cell key of the grid's cells: cell ids, or H3 indices."""
    ids = grid.cells["cell_id"].to_numpy()
    if grid.h3_resolution is None:
        return "grid:", [str(int(i)) for i in ids]
    import h3

    resolution = int(grid.h3_resolution)
    # A cell's centre lies inside its hexagon, so it names the cell.
    return "h3:", [
        h3.latlng_to_cell(float(a), float(o), resolution)
        for a, o in zip(grid.cells["center_lat"], grid.cells["center_lon"], strict=True)
    ]


# -- geometry helpers --------------------------------------------------------------------


def _snap(polygons: np.ndarray) -> np.ndarray:
    return np.asarray(shapely.set_precision(np.asarray(polygons, dtype=object), SNAP_M))


def _union(geometries: list[BaseGeometry] | np.ndarray) -> BaseGeometry:
    return polygonal(shapely.union_all(np.asarray(geometries, dtype=object), grid_size=SNAP_M))


def _borders(parts: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, ...]:
    """(part index, target index, shared border length) for each part and target that touch;
    edges within :data:`TOUCH_M` of each other count as one shared edge."""
    near = shapely.buffer(targets, TOUCH_M)
    part, target = shapely.STRtree(near).query(parts, predicate="intersects")
    length = shapely.length(shapely.intersection(shapely.boundary(parts[part]), near[target]))
    return part, target, np.asarray(length)


def _centroid_xy(geometries: np.ndarray) -> np.ndarray:
    centres = shapely.centroid(np.asarray(geometries, dtype=object))
    return np.column_stack([shapely.get_x(centres), shapely.get_y(centres)])


def _attach(parts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The target each loose part joins: the longest shared border (ties: lowest index), or
    -1 for a part touching none."""
    part, target, length = _borders(parts, targets)
    touching = length > 0
    part, target, length = part[touching], target[touching], length[touching]
    order = np.lexsort((target, -length, part))
    first = np.unique(part[order], return_index=True)[1]
    result = np.full(len(parts), -1, dtype=np.int64)
    result[part[order][first]] = target[order][first]
    return result


def _nearest(parts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The target whose centroid is nearest each part's centroid (ties: lowest index)."""
    a, b = _centroid_xy(parts), _centroid_xy(targets)
    distance = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    return np.argmin(distance, axis=1)


def _absorb(targets: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """``targets`` with every part united into the one it borders most (else the nearest),
    a round at a time, so parts that only touch other parts find a home too."""
    targets = targets.copy()
    while len(parts):
        where = _attach(parts, targets)
        if (where < 0).all():
            where = _nearest(parts, targets)
        for k in np.unique(where[where >= 0]):
            targets[k] = _union([targets[k], *parts[where == k]])
        parts = parts[where < 0]
    return targets


def _drop_slivers(geometry: BaseGeometry) -> BaseGeometry:
    """Holes a hair wide, left where snapped pieces met, go; real holes stay."""
    if not shapely.get_num_interior_rings(shapely.get_parts(geometry)).any():
        return geometry
    polygons = []
    for part in shapely.get_parts(geometry):
        holes = [r for r in part.interiors if shapely.Polygon(r).area / r.length > TOUCH_M]
        polygons.append(shapely.Polygon(part.exterior, holes))
    return shapely.MultiPolygon(polygons) if len(polygons) > 1 else polygons[0]


def _h3_polygon(index: str, projection: EqualAreaProjection) -> BaseGeometry:
    import h3

    lat, lon = np.array(h3.cell_to_boundary(index)).T
    # Unwrapped around the projection's meridian, as the grid does, so no cell tears at 180.
    lon = (lon - projection.lon_0 + 180.0) % 360.0 - 180.0 + projection.lon_0
    return projection.project(shapely.Polygon(np.column_stack([lon, lat])))


# -- splitting ---------------------------------------------------------------------------


@dataclass
class _Atom:
    """A piece of the final partition before merging, in the plane."""

    polygon: BaseGeometry
    key: str
    h3_index: str | None
    depth: int
    points: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    capped: bool = False  # still too full, but cannot be split further


def _assign_points(polygons: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of the polygon each point is in (lowest on an edge), -1 in none."""
    return _PlaneIndex(polygons, np.arange(len(polygons))).locate(x, y)


def _can_split(atom: _Atom, x: np.ndarray, y: np.ndarray) -> bool:
    if atom.depth >= MAX_DEPTH:
        return False
    if atom.h3_index is not None:
        import h3

        if h3.get_resolution(atom.h3_index) >= H3_MAX_RESOLUTION:
            return False
    x0, y0, x1, y1 = atom.polygon.bounds
    if max(x1 - x0, y1 - y0) < 2 * MIN_SPLIT_M:
        return False
    px, py = x[atom.points], y[atom.points]
    return bool(np.ptp(px) > 0 or np.ptp(py) > 0)


def _children(atom: _Atom, projection: EqualAreaProjection) -> list[_Atom]:
    """H3 children of an H3 piece, else the four quarters of its bounding box."""
    if atom.h3_index is not None:
        import h3

        resolution = h3.get_resolution(atom.h3_index) + 1
        names = sorted(h3.cell_to_children(atom.h3_index, resolution))
        proposals = [_h3_polygon(n, projection) for n in names]
        keys: list[str] = list(names)
        indices: list[str | None] = list(names)
    else:
        x0, y0, x1, y1 = atom.polygon.bounds
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        proposals = [
            shapely.box(x0, my, mx, y1),  # north-west first, as grid ids run
            shapely.box(mx, my, x1, y1),
            shapely.box(x0, y0, mx, my),
            shapely.box(mx, y0, x1, my),
        ]
        keys = [f"{atom.key}/{k}" for k in range(4)]
        indices = [None] * 4
    pieces = [
        polygonal(g)
        for g in shapely.intersection(
            np.asarray(proposals, dtype=object), atom.polygon, grid_size=SNAP_M
        )
    ]
    keep = [i for i, p in enumerate(pieces) if p.area > 0]
    kept = np.array([pieces[i] for i in keep], dtype=object)
    # What no proposal covers (H3 children overhang and undercut their parent) joins the
    # child it borders most, so the children still tile the parent exactly.
    rest = shapely.get_parts(
        polygonal(shapely.difference(atom.polygon, _union(kept), grid_size=SNAP_M))
    )
    if len(kept):
        kept = _absorb(kept, rest[shapely.area(rest) > 0])
    return [_Atom(kept[j], keys[i], indices[i], atom.depth + 1) for j, i in enumerate(keep)]


def _split(
    atoms: list[_Atom],
    x: np.ndarray,
    y: np.ndarray,
    max_images: int,
    projection: EqualAreaProjection,
) -> list[_Atom]:
    """Split every over-full piece until it holds at most ``max_images`` (or cannot split).

    Children replace their parent in place, so the pieces stay in grid order.
    """
    owner = _assign_points(np.array([a.polygon for a in atoms], dtype=object), x, y)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(len(atoms) + 1))
    for i, atom in enumerate(atoms):
        atom.points = order[bounds[i] : bounds[i + 1]]
    leaves: list[_Atom] = []
    stack = list(reversed(atoms))
    while stack:
        atom = stack.pop()
        if len(atom.points) <= max_images:
            leaves.append(atom)
            continue
        children = _children(atom, projection) if _can_split(atom, x, y) else []
        if len(children) < 2:
            atom.capped = True
            leaves.append(atom)
            continue
        px, py = x[atom.points], y[atom.points]
        polygons = np.array([c.polygon for c in children], dtype=object)
        where = _assign_points(polygons, px, py)
        lost = np.flatnonzero(where == OUTSIDE)
        if len(lost):  # on the parent's edge, snapped just outside: nearest child
            distance = shapely.distance(
                polygons[None, :], shapely.points(px[lost], py[lost])[:, None]
            )
            where[lost] = np.argmin(distance, axis=1)
        for k, child in enumerate(children):
            child.points = atom.points[where == k]
        stack.extend(reversed(children))
    return leaves


# -- merging -----------------------------------------------------------------------------


def _neighbours(polygons: np.ndarray) -> list[dict[int, float]]:
    """For each piece, the pieces it shares at least :data:`MIN_BORDER_M` of border with."""
    left, right, length = _borders(polygons, polygons)
    result: list[dict[int, float]] = [{} for _ in polygons]
    for a, b, shared in zip(left.tolist(), right.tolist(), length.tolist(), strict=True):
        if a < b and shared >= MIN_BORDER_M:
            result[a][b] = result[b][a] = shared
    return result


def _merge(polygons: np.ndarray, counts: np.ndarray, min_images: int) -> list[list[int]]:
    """Groups of pieces after merging every group under ``min_images`` (see
    :func:`adaptive_partition`); a group is named by its lowest piece."""
    borders = _neighbours(polygons)
    area = shapely.area(polygons)
    weighted = _centroid_xy(polygons) * area[:, None]
    members = {i: [i] for i in range(len(polygons))}
    count = {i: int(c) for i, c in enumerate(counts)}
    moment = {i: (weighted[i], float(area[i])) for i in range(len(polygons))}
    heap = [(count[i], i) for i in members]
    heapq.heapify(heap)
    while heap and len(members) > 1:
        images, group = heapq.heappop(heap)
        if group not in members or images != count[group]:
            continue  # stale: merged away or grown since it was queued
        if images >= min_images:
            break
        if borders[group]:
            target = min(borders[group], key=lambda g: (count[g], -borders[group][g], g))
        else:
            # An island: the group with the nearest centroid (ties: lowest id).
            centre = moment[group][0] / moment[group][1]
            others = [g for g in members if g != group]
            centres = np.array([moment[g][0] / moment[g][1] for g in others])
            target = others[int(np.argmin(np.hypot(*(centres - centre).T)))]
        keep, gone = min(group, target), max(group, target)
        members[keep] = sorted(members[keep] + members.pop(gone))
        count[keep] = count[group] + count[target]
        moment[keep] = (moment[keep][0] + moment[gone][0], moment[keep][1] + moment[gone][1])
        joined: dict[int, float] = {}
        for g in (keep, gone):
            for other, shared in borders[g].items():
                if other not in (keep, gone):
                    joined[other] = joined.get(other, 0.0) + shared
                    borders[other].pop(g, None)
        for other, shared in joined.items():
            borders[other][keep] = shared
        borders[keep], borders[gone] = joined, {}
        heapq.heappush(heap, (count[keep], keep))
    return [members[g] for g in sorted(members)]


# -- assembling --------------------------------------------------------------------------


def _build(
    grid: Grid,
    kind: str,
    prefix: str,
    atoms: list[_Atom],
    lat: np.ndarray,
    lon: np.ndarray,
    max_images: int,
    min_images: int,
) -> Partition:
    import geopandas as gpd

    projection = grid.projection
    x, y = (np.asarray(v) for v in projection.forward(lon, lat))
    leaves = _split(atoms, x, y, max_images, projection)
    polygons = np.array([a.polygon for a in leaves], dtype=object)
    counts = np.array([len(a.points) for a in leaves])
    groups = _merge(polygons, counts, min_images)

    plane = np.array([_drop_slivers(_union(polygons[g])) for g in groups], dtype=object)
    sources = [prefix + "+".join(leaves[i].key for i in g) for g in groups]
    centres = shapely.centroid(plane)
    inside = shapely.contains(plane, centres)
    # A merged cell can be C-shaped; its centre must still lie inside it.
    centres[~inside] = shapely.point_on_surface(plane[~inside])
    center_lon, center_lat = projection.inverse(shapely.get_x(centres), shapely.get_y(centres))
    geometry = to_lonlat(shapely.segmentize(plane, MAX_EDGE_KM * 1000), projection)
    cells = gpd.GeoDataFrame(
        {
            "cell_id": np.arange(len(groups), dtype=np.int64),
            "center_lat": center_lat,
            "center_lon": center_lon,
            "area_km2": _areas_km2(plane, geometry, grid.h3_resolution is not None),
            "images": np.zeros(len(groups), dtype=np.int64),
            "source": sources,
        },
        geometry=geometry,
        crs="EPSG:4326",
    )
    capped = [any(leaves[i].capped for i in g) for g in groups]
    partition = Partition(cells, kind, max_images, min_images, projection)
    return _finish(partition, lat, lon, capped)


def _areas_km2(plane: np.ndarray, lonlat: np.ndarray, geodesic: bool) -> np.ndarray:
    """As the grid computes them: planar area of the equal-area plane, or for H3 cells
    (defined on the globe) the geodesic area of the EPSG:4326 polygon."""
    if not geodesic:
        return np.asarray(shapely.area(plane)) / 1e6
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in lonlat])


def _finish(
    partition: Partition, lat: np.ndarray, lon: np.ndarray, capped: list[bool]
) -> Partition:
    """Count each cell's images with :meth:`Partition.locate` and say what went over."""
    located = partition.locate(lat, lon)
    counts = np.bincount(located[located >= 0], minlength=len(partition.cells))
    cells = partition.cells.copy()
    cells["images"] = counts.astype(np.int64)
    notes: list[str] = []
    outside = int((located == OUTSIDE).sum())
    if outside:
        notes.append(f"{outside:,} of {len(located):,} images lie outside every cell")
    if partition.max_images is not None:
        full = np.flatnonzero(counts > partition.max_images)
        for cell in full:
            why = (
                "its images cannot be split apart (they share one spot, or the cell is at "
                "the depth or size limit)"
                if capped[cell]
                else "small neighbours were merged into it (min wins)"
            )
            source = str(cells["source"].iat[cell])
            source = source if len(source) <= 60 else source[:57] + "..."
            notes.append(
                f"cell {cell} ({source}) holds {counts[cell]:,} images, "
                f"more than max_images {partition.max_images}: {why}"
            )
    if partition.min_images is not None and len(cells) == 1 and counts[0] < partition.min_images:
        notes.append(
            f"all {counts[0]:,} images are fewer than min_images {partition.min_images}: "
            "the partition is one cell"
        )
    return Partition(
        cells,
        partition.kind,
        partition.max_images,
        partition.min_images,
        partition.projection,
        tuple(notes),
    )


# -- administrative regions --------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def admin1() -> gpd.GeoDataFrame:
    """The bundled Natural Earth admin-1 regions (EPSG:4326); see data/README.md."""
    import geopandas as gpd

    if not ADMIN1_FILE.is_file():
        raise InputError(
            f"the administrative regions file {ADMIN1_FILE} is missing; rebuild it with "
            "scripts/build_admin1.py or use --cells grid or adaptive"
        )
    return gpd.read_parquet(ADMIN1_FILE)


def _admin_atoms(grid: Grid) -> list[_Atom]:
    """Admin regions cut to the grid's region, made disjoint, with every gap of the grid's
    cover filled; a region reaching in by a sliver only is a gap too."""
    table = admin1()
    regions = np.asarray(table.geometry.values)
    rows = np.unique(shapely.STRtree(regions).query(grid.region.geometry, predicate="intersects"))
    if len(rows) == 0:
        raise InputError(
            f"no administrative region overlaps {grid.region.name}; use --cells grid or adaptive"
        )
    cells_plane = _snap(grid.cells_in_plane())
    cover = _union(cells_plane)
    inside = polygonal(shapely.intersection(grid.region_projected, cover, grid_size=SNAP_M))
    projected = shapely.make_valid(np.asarray(grid.projection.project(regions[rows])))
    cut = shapely.intersection(projected, inside, grid_size=SNAP_M)
    pieces = np.array([polygonal(p) for p in cut], dtype=object)
    keys = table["key"].to_numpy()[rows]
    _make_disjoint(pieces)
    # Borders drawn differently in the admin layer and the country outline leave strips of
    # the neighbours inside the region: those are not classes of their own.
    area = shapely.area(pieces)
    sliver = (area < SLIVER_SHARE * shapely.area(projected)) & (area < SLIVER_SHARE * inside.area)
    keep = (area > 0) & ~sliver
    if not keep.any():
        raise InputError(
            f"no administrative region overlaps {grid.region.name}; use --cells grid or adaptive"
        )
    pieces, keys = pieces[keep], keys[keep]

    # Gaps, cell by cell, so a coastal strip joins the region it borders there.
    gaps = polygonal(shapely.difference(cover, _union(pieces), grid_size=SNAP_M))
    loose = [
        part
        for piece in shapely.intersection(cells_plane, gaps, grid_size=SNAP_M)
        for part in shapely.get_parts(polygonal(piece))
        if part.area > 0
    ]
    pieces = _absorb(pieces, np.array(loose, dtype=object))
    return [_Atom(p, str(k), None, 0) for p, k in zip(pieces, keys, strict=True)]


def _make_disjoint(pieces: np.ndarray) -> None:
    """Where two regions overlap (borders simplified apart), the earlier one keeps it."""
    tree = shapely.STRtree(pieces)
    later, earlier = tree.query(pieces, predicate="intersects")
    for i in np.unique(later):
        before = earlier[(later == i) & (earlier < i)]
        if len(before):
            pieces[i] = polygonal(
                shapely.difference(pieces[i], _union(pieces[before]), grid_size=SNAP_M)
            )
