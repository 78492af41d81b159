"""A new photo's region and confidence, from every fold of a run at once.

Each fold's model is calibrated on its own inner split, so each fold gives its own region
(its cells whose conformal score passes its threshold for the target). ``predict`` answers
their union: if the photo resembles the photos a fold was calibrated on, that fold's region
holds the true cell with probability at least the target, and a union holds it whenever
any of its parts does, so the union keeps the guarantee, at the price of some area. (The
folds' averaged probabilities have no calibration split of their own: every training
photo was seen by some fold.) The confidence is the mean over folds of the photo's rank
among each fold's calibration photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.doubt import conformal
from geotag.doubt.calibration import CalibrationSplit
from geotag.doubt.confidence import confidence_values
from geotag.doubt.regions import CellShapes, area_km2, to_lonlat_many, union_in_plane
from geotag.errors import InputError


@dataclass(frozen=True)
class FoldPart:
    """One fold's say on new photos."""

    probs: np.ndarray  # (N, K_f) its model's probabilities, as the model gives them
    split: CalibrationSplit  # per image, or per location for fused views
    cells: CellShapes  # its classes as cells
    point_lat: np.ndarray  # its classes' points
    point_lon: np.ndarray


@dataclass(frozen=True)
class PhotoRegion:
    """Where a photo is, with the promised coverage, and how sure the run is of it."""

    lonlat: BaseGeometry  # (Multi)Polygon in EPSG:4326, split at the antimeridian
    area_km2: float
    coverage: float  # the target the region was calibrated for
    confidence: float  # in [0, 1]: share of calibration photos less sure than this one
    cells: tuple[int, ...] | None  # the cell ids, when every fold shares its cells

    def contains(self, lat: float, lon: float) -> bool:
        return bool(shapely.intersects(self.lonlat, shapely.Point(lon, lat)))


def photo_regions(parts: Sequence[FoldPart], coverage: float, kind: str) -> list[PhotoRegion]:
    """Per photo, the union of the folds' regions at ``coverage`` and the mean confidence
    by the run's score ``kind``. When the folds share their cells (a grid run) the region
    is a set of cells and its area their sum; otherwise the union of the folds' cells."""
    conformal.check_coverage(coverage, "--coverage")
    if not parts:
        raise InputError("no fold to answer with")
    n = len(parts[0].probs)
    shared = all(np.array_equal(p.cells.cell_ids, parts[0].cells.cell_ids) for p in parts)
    sets, ranks = [], []
    for part in parts:
        calibrated = part.split.calibrate(part.probs)
        sets.append(conformal.prediction_sets(calibrated, part.split.threshold(coverage)))
        values = confidence_values(kind, calibrated, part.point_lat, part.point_lon)
        ranks.append(part.split.confidence_of(kind, values))
    confidence = np.mean(ranks, axis=0)
    # Photos often share a region: each distinct one is made once, and all of them are
    # brought back to longitude/latitude together.
    distinct: dict[Any, int] = {}
    planes: list[BaseGeometry] = []
    areas: list[float] = []
    which: list[int] = []
    ids: list[tuple[int, ...] | None] = []
    for i in range(n):
        if shared:
            members = np.logical_or.reduce([s[i] for s in sets])
            key: Any = members.tobytes()
            ids.append(tuple(int(c) for c in parts[0].cells.cell_ids[members]))
        else:
            key = tuple(s[i].tobytes() for s in sets)
            ids.append(None)
        if key not in distinct:
            distinct[key] = len(planes)
            if shared:
                planes.append(parts[0].cells.union(members))
                areas.append(float(parts[0].cells.area_km2[members].sum()))
            else:
                plane = union_in_plane(
                    [g for part, s in zip(parts, sets, strict=True) for g in part.cells.plane[s[i]]]
                )
                planes.append(plane)
                areas.append(area_km2(plane))
        which.append(distinct[key])
    lonlat = to_lonlat_many(planes, parts[0].cells.projection)
    return [
        PhotoRegion(lonlat[j], areas[j], coverage, float(confidence[i]), ids[i])
        for i, j in enumerate(which)
    ]
