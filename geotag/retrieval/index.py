"""A fold's index of training images: unit embeddings with their true locations and cells.

On disk, in the fold's folder (both written atomically, the parquet first):

    index.safetensors   embeddings (n, d) float16, every row L2-normalised; lat, lon (n,)
                        float64 degrees; cell (n,) int64. Metadata: ``format``, ``rows`` and
                        ``entries_sha256``, the SHA-256 of the index.parquet written with it.
    index.parquet       group, path (n rows, strings): the place an entry belongs to and one
                        image path of it.

The checksum ties the pair together: a save interrupted between the two files leaves a
parquet that does not belong to the safetensors, and loading says so instead of pairing
paths with the wrong embeddings. A folder without ``index.safetensors`` is a run from before
retrieval: :meth:`LocationIndex.load` returns None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geotag.atomic import atomic_path
from geotag.errors import DataError, InputError, first_line
from geotag.geo.distance import spherical_mean

EMBEDDINGS_FILE = "index.safetensors"
ENTRIES_FILE = "index.parquet"
FORMAT = "geotag-location-index/1"
#: A stored row's norm may differ from 1 by this much: float16 rounding is ~1e-3.
NORM_TOLERANCE = 1e-2
#: Rows converted at a time: bounds float64 temporaries to ~64 MB at d = 512.
_CHUNK_ROWS = 16_384


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class LocationIndex:
    """Training entries a retrieval search compares a photo with.

    ``embeddings`` (n, d) float16 with every row L2-normalised (stored so); ``lat``, ``lon``
    (n,) float64 degrees of the entry's true location; ``cell`` (n,) int64 the cell that
    location lies in; ``group`` the place/panorama each entry belongs to; ``path`` one image
    path of the entry (what ``predict --neighbours`` shows). Build one with :meth:`build`.
    """

    embeddings: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    cell: np.ndarray
    group: tuple[str, ...]
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        problem = _layout_problem(self.embeddings, self.lat, self.lon, self.cell)
        if problem is None and not (len(self.group) == len(self.path) == len(self.lat)):
            problem = (
                f"{len(self.lat)} entries but {len(self.group)} groups and {len(self.path)} paths"
            )
        if problem is not None:
            raise InputError(f"not a location index: {problem}")

    def __len__(self) -> int:
        return len(self.lat)

    @classmethod
    def build(
        cls,
        features: np.ndarray,
        lat: Any,
        lon: Any,
        cell: Any,
        group: Sequence[str],
        path: Sequence[str],
        *,
        fuse: bool,
    ) -> LocationIndex:
        """An index of ``features`` (n, d) raw pooled features, one row per image.

        Each row is L2-normalised (a zero or non-finite row is refused: it has no direction).
        With ``fuse`` the images of one group become one entry: the normalised mean of their
        unit vectors, the spherical mean of their locations, their most common cell (the
        smallest id on a tie) and the first image's path; entries come in order of each
        group's first image. Mismatched lengths, bad coordinates or non-integer cells raise
        :class:`~geotag.errors.InputError`.
        """
        feats = np.asarray(features)
        if feats.ndim != 2 or feats.shape[0] < 1 or feats.shape[1] < 1:
            raise InputError(
                f"features must be an (n, d) array with at least one row; got {feats.shape}"
            )
        n = feats.shape[0]
        if not np.issubdtype(feats.dtype, np.floating):
            raise InputError(f"features must be floating point; got {feats.dtype}")
        lat_a = _column("lat", lat, n, np.float64)
        lon_a = _column("lon", lon, n, np.float64)
        cell_raw = np.asarray(cell)
        if not np.issubdtype(cell_raw.dtype, np.integer):
            raise InputError(f"cell must be integer ids; got {cell_raw.dtype}")
        cell_a = _column("cell", cell_raw, n, np.int64)
        groups, paths = _strings("group", group, n), _strings("path", path, n)
        coords = _coordinate_problem(lat_a, lon_a)
        if coords is not None:
            raise InputError(coords)
        unit = _normalised(feats, paths)
        if fuse:
            unit, lat_a, lon_a, cell_a, groups, paths = _fuse(
                unit, lat_a, lon_a, cell_a, groups, paths
            )
        return cls(unit.astype(np.float16), lat_a, lon_a, cell_a, groups, paths)

    def save(self, folder: Path) -> None:
        """Write ``folder/index.parquet`` then ``folder/index.safetensors``, each atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from safetensors.numpy import save_file

        folder = Path(folder)
        table = pa.table(
            {
                "group": pa.array(self.group, type=pa.string()),
                "path": pa.array(self.path, type=pa.string()),
            }
        )
        with atomic_path(folder / ENTRIES_FILE) as tmp:
            pq.write_table(table, tmp, compression="zstd")
            digest = _sha256(tmp)
        tensors: dict[str, np.ndarray] = {
            "embeddings": np.ascontiguousarray(self.embeddings, dtype=np.float16),
            "lat": np.ascontiguousarray(self.lat, dtype=np.float64),
            "lon": np.ascontiguousarray(self.lon, dtype=np.float64),
            "cell": np.ascontiguousarray(self.cell, dtype=np.int64),
        }
        metadata = {"format": FORMAT, "rows": str(len(self)), "entries_sha256": digest}
        with atomic_path(folder / EMBEDDINGS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, folder: Path) -> LocationIndex | None:
        """The index saved in ``folder``; None when there is none (a run from before
        retrieval). A damaged or inconsistent one raises :class:`~geotag.errors.DataError`."""
        folder = Path(folder)
        source = folder / EMBEDDINGS_FILE
        if not source.exists():
            return None
        tensors, metadata = _read_tensors(source)

        def damaged(why: str) -> DataError:
            return DataError(f"retrieval index {source} is damaged: {why}; train the fold again")

        if metadata.get("format") != FORMAT:
            raise damaged(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
        missing = sorted({"embeddings", "lat", "lon", "cell"} - tensors.keys())
        if missing:
            raise damaged(f"no {', '.join(missing)} tensor")
        emb, lat, lon, cell = (tensors[k] for k in ("embeddings", "lat", "lon", "cell"))
        problem = _layout_problem(emb, lat, lon, cell) or _coordinate_problem(lat, lon)
        if problem is None and metadata.get("rows") != str(len(lat)):
            problem = f"{len(lat)} rows but its metadata says {metadata.get('rows')}"
        if problem is None:
            problem = _norm_problem(emb)
        if problem is not None:
            raise damaged(problem)
        groups, paths = _read_entries(folder / ENTRIES_FILE, metadata, len(lat), damaged)
        return cls(emb, lat, lon, cell, groups, paths)


def _column(name: str, values: Any, n: int, dtype: type[np.generic]) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (n,):
        raise InputError(f"{name} must have one value per feature row ({n}); got {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def _strings(name: str, values: Sequence[str], n: int) -> tuple[str, ...]:
    out = tuple(values)
    if len(out) != n:
        raise InputError(f"{name} must have one value per feature row ({n}); got {len(out)}")
    for i, value in enumerate(out):
        if not isinstance(value, str):
            raise InputError(f"{name} of entry {i} is not a string: {type(value).__name__}")
    return out


def _layout_problem(emb: Any, lat: Any, lon: Any, cell: Any) -> str | None:
    """What is wrong with the arrays' dtypes and shapes, or None."""
    expected = (
        ("embeddings", emb, np.float16, 2),
        ("lat", lat, np.float64, 1),
        ("lon", lon, np.float64, 1),
        ("cell", cell, np.int64, 1),
    )
    for name, array, dtype, ndim in expected:
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
            got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else "not array"
            return f"{name} must be a {ndim}-d {np.dtype(dtype).name} array; got {got}"
    n = emb.shape[0]
    if n < 1 or emb.shape[1] < 1:
        return f"embeddings has shape {emb.shape}; an index needs at least one entry"
    if not (lat.shape == lon.shape == cell.shape == (n,)):
        shapes = f"embeddings {emb.shape}, lat {lat.shape}, lon {lon.shape}, cell {cell.shape}"
        return f"shapes disagree: {shapes}"
    return None


def _coordinate_problem(lat: np.ndarray, lon: np.ndarray) -> str | None:
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        i = int(np.argmax(bad))
        return f"entry {i} has no valid location (lat {lat[i]}, lon {lon[i]})"
    return None


def _norm_problem(emb: np.ndarray) -> str | None:
    for start in range(0, len(emb), _CHUNK_ROWS):
        block = emb[start : start + _CHUNK_ROWS].astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        off = ~(np.abs(norms - 1.0) <= NORM_TOLERANCE)  # NaN counts as off
        if off.any():
            i = int(np.argmax(off))
            return f"embedding {start + i} has norm {norms[i]:.4g}, not 1"
    return None


def _normalised(feats: np.ndarray, paths: tuple[str, ...]) -> np.ndarray:
    """Unit rows as float32; norms in float64 so huge or tiny features neither overflow
    nor vanish."""
    out = np.empty(feats.shape, dtype=np.float32)
    for start in range(0, len(feats), _CHUNK_ROWS):
        block = feats[start : start + _CHUNK_ROWS].astype(np.float64)
        finite = np.asarray(np.isfinite(block).all(axis=1))
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        bad = ~finite | ~(norms > 0) | ~np.isfinite(norms)
        if bad.any():
            i = start + int(np.argmax(bad))
            what = "is not finite" if not finite[i - start] else "is all zeros (no direction)"
            raise InputError(f"the feature vector of entry {i} ({paths[i]}) {what}")
        out[start : start + len(block)] = block / norms[:, None]
    return out


def _fuse(
    unit: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    cell: np.ndarray,
    groups: tuple[str, ...],
    paths: tuple[str, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """One entry per group, in order of each group's first row."""
    ids: dict[str, int] = {}
    codes = np.fromiter((ids.setdefault(g, len(ids)) for g in groups), np.int64, len(groups))
    order = np.argsort(codes, kind="stable")  # a group's rows together, in input order
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    sizes = np.diff(np.r_[starts, len(order)])

    vectors = np.add.reduceat(unit[order], starts, axis=0, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    if not (norms > 1e-6 * sizes).all():
        g = int(np.argmax(~(norms > 1e-6 * sizes)))
        raise InputError(
            f"the images of group {groups[order[starts[g]]]} cancel out: their mean "
            "embedding has no direction"
        )
    vectors = (vectors / norms[:, None]).astype(np.float32)

    # spherical_mean wants rectangular rows: one call per group size (few distinct sizes).
    mean_lat, mean_lon = np.empty(len(starts)), np.empty(len(starts))
    for size in np.unique(sizes):
        which = np.flatnonzero(sizes == size)
        if size == 1:  # a group of one keeps its location exactly, without rounding
            mean_lat[which], mean_lon[which] = lat[order[starts[which]]], lon[order[starts[which]]]
            continue
        rows = order[starts[which][:, None] + np.arange(size)]
        mean_lat[which], mean_lon[which] = spherical_mean(lat[rows], lon[rows], np.ones(rows.shape))

    # The most common cell per group, the smallest id on a tie.
    pairs, counts = np.unique(np.stack([codes, cell], axis=1), axis=0, return_counts=True)
    best = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))
    first = np.flatnonzero(np.r_[True, np.diff(pairs[best, 0]) != 0])
    fused_cell = np.ascontiguousarray(pairs[best[first], 1], dtype=np.int64)

    heads = order[starts]
    return (
        vectors,
        mean_lat,
        mean_lon,
        fused_cell,
        tuple(groups[i] for i in heads),
        tuple(paths[i] for i in heads),
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_tensors(source: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(source), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read retrieval index {source}: {first_line(exc)}") from None
    return tensors, metadata


def _read_entries(
    source: Path, metadata: dict[str, str], n: int, damaged: Any
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not source.exists():
        raise damaged(f"{ENTRIES_FILE} is missing")
    if _sha256(source) != metadata.get("entries_sha256"):
        raise damaged(f"{ENTRIES_FILE} was not written with it (an interrupted save?)")
    try:
        table = pq.read_table(source, columns=["group", "path"])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise damaged(f"cannot read {ENTRIES_FILE}: {first_line(exc)}") from None
    if table.num_rows != n:
        raise damaged(f"{ENTRIES_FILE} has {table.num_rows} rows for {n} embeddings")
    columns = []
    for name in ("group", "path"):
        column = table.column(name)
        if not pa.types.is_string(column.type) or column.null_count:
            raise damaged(f"{ENTRIES_FILE} column {name} is not all strings")
        columns.append(tuple(column.to_pylist()))
    return columns[0], columns[1]
