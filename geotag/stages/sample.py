"""The ``sample`` stage: the workspace's grid -> points.parquet and points.png."""

from __future__ import annotations

import time
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

from geotag.errors import InputError
from geotag.geo.defaults import DEFAULT_PER_CELL, DEFAULT_SEED
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

#: Seeds run from 0 to 2**32 - 1: numpy refuses negative seeds, its legacy generators (and
#: many other tools a recorded seed is handed to) stop at 2**32 - 1, and geotag.toml's
#: integers at 2**63 - 1.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class SampleResult:
    points: pd.DataFrame
    cells: int
    files: tuple[Path, ...]
    seconds: float


def run_sample(
    workspace: Workspace,
    *,
    per_cell: int | None = None,
    total: int | None = None,
    seed: int = DEFAULT_SEED,
    progress: Progress | None = None,
) -> SampleResult:
    """Draw points in every cell of the workspace's grid and write points.parquet/.png."""
    from geotag.atomic import atomic_path
    from geotag.geo.sample import Quota, cell_pieces, sample_points
    from geotag.gridfile import load_grid
    from geotag.report.maps import plot_grid

    progress = progress or NullProgress()
    started = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be a whole number from 0 to {MAX_SEED}; got {seed}")
    if per_cell is None and total is None:
        per_cell = DEFAULT_PER_CELL
    quota = Quota(per_cell=per_cell, total=total)
    progress.start("reading the grid", None)
    grid = load_grid(workspace)
    cells = grid.cells_in_plane()
    pieces = cell_pieces(cells, grid.cells["region_fraction"].to_numpy(), grid.region_projected)
    progress.start("sampling points", None)
    points = sample_points(grid.cells["cell_id"].to_numpy(), pieces, grid.projection, quota, seed)

    progress.start("writing files", None)
    with atomic_path(workspace.points_parquet) as tmp:
        points.to_parquet(tmp, index=False, compression="zstd")
    x, y = grid.projection.forward(points["lon"].to_numpy(), points["lat"].to_numpy())
    plot_grid(
        workspace.points_png,
        cells,
        grid.cells["cell_id"].to_numpy(),
        grid.region_projected,
        title=f"{grid.title}, {len(points):,} points",
        points_xy=(x, y),
        seed=seed,
    )
    workspace.record(
        "sample",
        {
            "per_cell": quota.per_cell if quota.total is None else None,
            "total": quota.total,
            "seed": seed,
            "points": len(points),
            "grid_id": workspace.stage_settings("grid").get("grid_id"),
        },
    )
    return SampleResult(
        points,
        len(grid.cells),
        (workspace.points_parquet, workspace.points_png),
        time.perf_counter() - started,
    )
