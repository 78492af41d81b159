"""The ``grid`` stage: region -> cells, written to the workspace."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geotag.geo.defaults import DEFAULT_CELL_KM, DEFAULT_MIN_REGION_FRACTION, DEFAULT_SHAPE
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.geo.grid import Grid


@dataclass(frozen=True)
class GridResult:
    grid: Grid
    files: tuple[Path, ...]
    seconds: float
    warnings: tuple[str, ...]


def run_grid(
    workspace: Workspace,
    *,
    country: str | None = None,
    region_file: Path | None = None,
    bbox: str | None = None,
    cell_km: float = DEFAULT_CELL_KM,
    shape: str = DEFAULT_SHAPE,
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION,
    progress: Progress | None = None,
) -> GridResult:
    """Build the grid and write region.parquet, grid.parquet, grid.geojson and grid.png.

    Everything is checked and computed before the first file is written, so bad input
    leaves the workspace as it was.
    """
    from geotag.geo.grid import make_grid
    from geotag.geo.regions import resolve_region
    from geotag.gridfile import grid_fingerprint, save_grid
    from geotag.report.maps import plot_grid

    progress = progress or NullProgress()
    started = time.perf_counter()
    if workspace.root.exists() and not workspace.root.is_dir():
        workspace.prepare()  # raises the "is a file" error before any work
    progress.start("reading the region", None)
    region = resolve_region(country=country, region_file=region_file, bbox=bbox)
    progress.start("building cells", None)
    grid = make_grid(region, cell_km, shape=shape, min_region_fraction=min_region_fraction)

    progress.start("writing files", None)
    workspace.prepare()
    files = save_grid(workspace, grid)
    plot_grid(
        workspace.grid_png,
        grid.cells_in_plane(),
        grid.cells["cell_id"].to_numpy(),
        grid.region_projected,
        title=grid.title,
    )
    settings = dict(grid.settings)
    settings["grid_id"] = grid_fingerprint(grid)
    workspace.record("grid", settings)
    return GridResult(
        grid, (*files, workspace.grid_png), time.perf_counter() - started, region.warnings
    )
