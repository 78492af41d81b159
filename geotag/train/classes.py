"""Classes are grid cells: which cells a run predicts, in which order, and where they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.errors import DataError, InputError

if TYPE_CHECKING:
    import pandas as pd

    from geotag.train.runs import RunConfig


@dataclass(frozen=True)
class ClassMap:
    """Class index i <-> ``cell_ids[i]``, with the cell's centre (degrees)."""

    cell_ids: tuple[int, ...]
    centre_lat: tuple[float, ...]
    centre_lon: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.cell_ids)

    def index_of(self, cell_ids: Any) -> np.ndarray:
        """Class index per cell id; -1 for a cell that is not a class."""
        lookup = {cell: i for i, cell in enumerate(self.cell_ids)}
        return np.array([lookup.get(int(c), -1) for c in np.asarray(cell_ids)], dtype=np.int64)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.centre_lat), np.asarray(self.centre_lon)

    @classmethod
    def from_config(cls, config: RunConfig) -> ClassMap:
        """A run's classes; config.json's three lists must match."""
        ids, lat, lon = config.classes, config.centre_lat, config.centre_lon
        if not (len(ids) == len(lat) == len(lon)) or len(ids) < 2:
            raise DataError("config.json's class list and cell centres do not match")
        return cls(ids, lat, lon)


def choose_classes(
    images: pd.DataFrame, cells: pd.DataFrame, min_images: int = 1
) -> tuple[ClassMap, int]:
    """Cells with at least ``min_images`` images, in cell-id order; also how many images
    fall in the cells left out. ``cells`` is grid.parquet (cell_id, center_lat/lon)."""
    if min_images < 1:
        raise InputError(f"--min-images-per-cell must be at least 1; got {min_images}")
    counts = images["cell_id"].value_counts()
    known = set(int(c) for c in cells["cell_id"])
    unknown = sorted(set(int(c) for c in counts.index) - known)
    if unknown:
        raise DataError(
            f"images.parquet names cell(s) {unknown[:5]} that grid.parquet lacks; the grid was "
            "remade after scraping: rescrape, or re-import, with the current grid"
        )
    kept = sorted(int(c) for c, n in counts.items() if n >= min_images)
    if len(kept) < 2:
        raise InputError(
            f"training needs at least two cells with >= {min_images} image(s); "
            f"{len(kept)} found. Collect more images or lower --min-images-per-cell"
        )
    by_id = cells.set_index("cell_id").loc[kept]
    dropped = int(counts[[c for c in counts.index if int(c) not in set(kept)]].sum())
    return (
        ClassMap(
            tuple(kept),
            tuple(float(v) for v in by_id["center_lat"]),
            tuple(float(v) for v in by_id["center_lon"]),
        ),
        dropped,
    )
