"""Cross-validation folds that never split a group, and the run's ``folds.csv``.

Groups are locations (all headings of one panorama) or, with ``--split spatial``, coarse
spatial blocks: H3 cells about the size of a grid cell, so that near-duplicate neighbours
(the same street 50 m apart) cannot sit on both sides of a split.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geotag.atomic import atomic_path
from geotag.errors import DataError, InputError, first_line

FOLD_COLUMNS = ("path", "group", "fold")


def assign_folds(
    groups: Sequence[str] | np.ndarray, n_folds: int, seed: int = 0, labels: Any = None
) -> np.ndarray:
    """The fold (0 .. n_folds-1) of every row; rows of one group always share a fold.

    With ``labels`` (each row's cell), sklearn's StratifiedGroupKFold, shuffled with
    ``seed``: every fold gets about its share of every cell that has enough groups, so no
    fold is missing a common cell. Without, sklearn's GroupKFold: where it can shuffle
    (scikit-learn >= 1.6), the groups are shuffled with ``seed`` and dealt into folds of
    equal group counts; older versions deal the largest groups first into the lightest
    fold, the same for every seed. Every fold gets at least one group.
    """
    import warnings

    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if n_folds < 2:
        raise InputError(f"--folds must be at least 2, got {n_folds}")
    names = np.asarray(groups).astype(str)
    if names.ndim != 1:
        raise ValueError(f"groups must be one-dimensional, got shape {names.shape}")
    distinct = len(np.unique(names))
    if distinct < n_folds:
        raise InputError(
            f"only {distinct} distinct groups (locations) for {n_folds} folds; "
            "lower --folds or add images from more places"
        )
    folds = np.full(len(names), -1, dtype=np.int64)
    if labels is not None:
        classes = np.asarray(labels)
        if classes.shape != names.shape:
            raise ValueError(f"labels must match groups, got {classes.shape} vs {names.shape}")
        stratified = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # A cell with fewer groups than folds cannot be balanced; its groups still
            # land whole in some fold.
            warnings.simplefilter("ignore", UserWarning)
            for fold, (_, test) in enumerate(stratified.split(names, classes, groups=names)):
                folds[test] = fold
        if len(np.unique(folds)) == n_folds:
            return folds
        folds[:] = -1  # a fold came out empty: deal the groups evenly instead
    if _group_kfold_shuffles():
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits=n_folds)
    for fold, (_, test) in enumerate(splitter.split(names, groups=names)):
        folds[test] = fold
    return folds


@functools.cache
def _group_kfold_shuffles() -> bool:
    from sklearn.model_selection import GroupKFold

    return "shuffle" in inspect.signature(GroupKFold).parameters


def inner_split(groups: Any, labels: Any, fraction: float, seed: int = 0) -> np.ndarray:
    """Which of one outer fold's training samples form its inner validation split (True).

    Whole groups (places, or spatial blocks) go to one side, about ``fraction`` of them,
    balanced by label (the cell) where scikit-learn's StratifiedGroupKFold can: this is
    the split that early stopping, the best checkpoint and the predictor are chosen on,
    so the outer fold stays for ``eval`` alone.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    if not 0.0 < fraction <= 0.5:
        raise InputError(f"--val-fraction must lie in (0, 0.5]; got {fraction:g}")
    names = np.asarray(groups).astype(str)
    classes = np.asarray(labels)
    splits = max(2, round(1.0 / fraction))
    distinct = len(np.unique(names))
    if distinct < splits:
        raise InputError(
            f"only {distinct} places to train on: too few to set {fraction:.0%} of them "
            "aside for validation; collect more images, lower --folds or raise --val-fraction"
        )
    splitter = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only 1 member": such a cell simply cannot be
        # balanced, and its group lands on one side as a group must.
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(names, classes, groups=names))
    chosen = np.zeros(len(names), dtype=bool)
    chosen[held] = True
    return chosen


def within_buffer(points: Any, held: Any, buffer_km: float) -> np.ndarray:
    """Which ``points`` (n, 2: lat, lon) lie within ``buffer_km`` of any ``held`` point:
    training images that near a held-out block share its streets, and are left out of
    training so that a spatial split measures what it claims to."""
    from sklearn.neighbors import BallTree

    from geotag.geo.distance import EARTH_RADIUS_M

    points, held = np.asarray(points, dtype=float), np.asarray(held, dtype=float)
    if buffer_km <= 0 or len(points) == 0 or len(held) == 0:
        return np.zeros(len(points), dtype=bool)
    tree = BallTree(np.radians(held), metric="haversine")
    radius = buffer_km * 1000.0 / EARTH_RADIUS_M
    return tree.query_radius(np.radians(points), r=radius, count_only=True) > 0


# -- spatial blocks ----------------------------------------------------------------------
def spatial_resolution(cell_km: float) -> int:
    """The H3 resolution whose average hexagon edge is nearest ``cell_km / 2`` km.

    A hexagon with edge e is sqrt(3)*e across its flats and 2.6*e^2 in area, so an edge
    of half the cell size gives blocks of about one grid cell (0.65 to 1.7 of its area,
    H3 resolutions being sqrt(7) apart): big enough that an image's near-duplicate
    neighbours share its block, small enough to leave many blocks to deal into folds.
    "Nearest" is on a log scale, the scale the resolutions step on.
    """
    import h3

    if not (math.isfinite(cell_km) and cell_km > 0):
        raise InputError(f"cell size must be a positive number of km, got {cell_km}")
    target = math.log(cell_km / 2)
    return min(
        range(16),
        key=lambda res: abs(math.log(h3.average_hexagon_edge_length(res, unit="km")) - target),
    )


def spatial_groups(lat: Any, lon: Any, cell_km: float) -> np.ndarray:
    """The H3 block (a hex id string, see :func:`spatial_resolution`) of every location."""
    import h3

    resolution = spatial_resolution(cell_km)
    lats = np.asarray(lat, dtype=np.float64)
    lons = np.asarray(lon, dtype=np.float64)
    if lats.shape != lons.shape or lats.ndim != 1:
        raise ValueError(f"lat and lon must be 1-D of one length, got {lats.shape}, {lons.shape}")
    bad = ~(np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90))
    if bad.any():
        raise DataError(f"{int(bad.sum())} locations have a missing or impossible lat/lon")
    cells = [h3.latlng_to_cell(a, b, resolution) for a, b in zip(lats, lons, strict=True)]
    return np.asarray(cells, dtype=str)


# -- folds.csv -----------------------------------------------------------------------------
def write_folds(
    path: Path, paths: Sequence[str], groups: Sequence[str] | np.ndarray, folds: Any
) -> None:
    """Write ``folds.csv`` (columns path, group, fold) atomically."""
    frame = pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "group": np.asarray(groups).astype(str),
            "fold": np.asarray(folds, dtype=np.int64),
        }
    )
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8")


def read_folds(path: Path) -> pd.DataFrame:
    """Read a ``folds.csv``: path and group as strings, fold as int64, checked."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path, dtype={"path": str, "group": str}, keep_default_na=False, encoding="utf-8"
        )
    except FileNotFoundError:
        raise DataError(f"folds file {path} is missing") from None
    except (OSError, ValueError) as exc:  # ParserError, EmptyDataError, bad UTF-8
        raise DataError(f"folds file {path} is damaged: {first_line(exc)}") from None
    if tuple(frame.columns) != FOLD_COLUMNS:
        raise DataError(
            f"folds file {path} is damaged: columns are {', '.join(map(str, frame.columns))}, "
            f"expected {', '.join(FOLD_COLUMNS)}"
        )
    folds = pd.to_numeric(frame["fold"], errors="coerce")
    if folds.isna().any() or (folds < 0).any() or (folds % 1 != 0).any():
        raise DataError(f"folds file {path} is damaged: a fold is not a whole number >= 0")
    frame["fold"] = folds.astype(np.int64)
    if (frame["path"] == "").any():
        raise DataError(f"folds file {path} is damaged: a path is empty")
    if (frame.groupby("path")["fold"].nunique() > 1).any():
        raise DataError(f"folds file {path} is damaged: an image is in two folds")
    if (frame.groupby("group")["fold"].nunique() > 1).any():
        raise DataError(f"folds file {path} is damaged: a group is split across folds")
    return frame
