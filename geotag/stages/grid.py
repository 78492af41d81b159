"""The ``grid`` stage: region -> cells, written to the workspace; and reading them back."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from geotag.atomic import atomic_path
from geotag.errors import DataError
from geotag.geo.grid import DEFAULT_MIN_REGION_FRACTION, Grid, make_grid, projected_region
from geotag.geo.projection import EqualAreaProjection
from geotag.geo.regions import Region, resolve_region
from geotag.progress import NullProgress, Progress
from geotag.report.maps import plot_grid
from geotag.workspace import Workspace

GRID_HINT = "run `geotag grid` first"


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
    cell_km: float = 100.0,
    shape: str = "hex",
    min_region_fraction: float = DEFAULT_MIN_REGION_FRACTION,
    progress: Progress | None = None,
) -> GridResult:
    """Build the grid and write region.parquet, grid.parquet, grid.geojson and grid.png.

    Everything is checked and computed before the first file is written, so bad input
    leaves the workspace as it was.
    """
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
    settings = dict(grid.settings)
    settings["grid_id"] = grid_fingerprint(grid)
    workspace.record("grid", settings)
    return GridResult(grid, files, time.perf_counter() - started, region.warnings)


def grid_fingerprint(grid: Grid) -> str:
    """A short id of the exact cells, so later stages can tell which grid they came from."""
    digest = hashlib.sha256()
    digest.update(grid.projection.proj4.encode())
    digest.update(shapely.to_wkb(grid.cells.geometry.values, output_dimension=2).sum())
    return digest.hexdigest()[:12]


def save_grid(workspace: Workspace, grid: Grid) -> tuple[Path, ...]:
    import geopandas as gpd

    region = gpd.GeoDataFrame(
        {"name": [grid.region.name], "source": [grid.region.source]},
        geometry=[grid.region.geometry],
        crs="EPSG:4326",
    )
    with atomic_path(workspace.region_parquet) as tmp:
        region.to_parquet(tmp, compression="zstd")
    with atomic_path(workspace.grid_parquet) as tmp:
        grid.cells.to_parquet(tmp, compression="zstd")
    with atomic_path(workspace.grid_geojson) as tmp:
        grid.cells.to_file(tmp, driver="GeoJSON", engine="pyogrio", RFC7946="YES")
    cells_projected = cells_in_plane(grid)
    plot_grid(
        workspace.grid_png,
        cells_projected,
        grid.cells["cell_id"].to_numpy(),
        grid.region_projected,
        title=grid_title(grid),
    )
    return (
        workspace.region_parquet,
        workspace.grid_parquet,
        workspace.grid_geojson,
        workspace.grid_png,
    )


def grid_title(grid: Grid) -> str:
    size = (
        f"H3 resolution {grid.h3_resolution}"
        if grid.h3_resolution is not None
        else f"{grid.cell_km:g} km"
    )
    return (
        f"{grid.region.name}: {len(grid.cells):,} {grid.shape} cells of {size} "
        f"({grid.cell_area_km2:,.0f} km²)"
    )


def load_grid(workspace: Workspace) -> Grid:
    """The grid the workspace holds, with its region and projection."""
    import geopandas as gpd

    workspace.require(workspace.grid_parquet, GRID_HINT)
    workspace.require(workspace.region_parquet, GRID_HINT)
    settings = workspace.stage_settings("grid")
    if "crs" not in settings:
        raise DataError(f"{workspace.settings_path} has no [grid] settings; {GRID_HINT}")
    try:
        cells = gpd.read_parquet(workspace.grid_parquet)
        region_frame = gpd.read_parquet(workspace.region_parquet)
    except Exception as exc:  # Arrow/geo metadata errors: the files are damaged
        raise DataError(f"cannot read the grid files in {workspace.root}: {exc}") from None
    projection = EqualAreaProjection.from_proj4(settings["crs"])
    region = Region(
        name=str(region_frame["name"].iloc[0]),
        geometry=region_frame.geometry.iloc[0],
        source=str(region_frame["source"].iloc[0]),
    )
    return Grid(
        cells=cells,
        region=region,
        region_projected=projected_region(region.geometry, projection),
        projection=projection,
        shape=str(settings.get("shape", "hex")),
        cell_km=float(settings.get("cell_km", 0.0)),
        cell_area_km2=float(settings.get("cell_area_km2", np.nan)),
        region_area_km2=float(settings.get("region_area_km2", np.nan)),
        min_region_fraction=float(settings.get("min_region_fraction", 0.0)),
        h3_resolution=settings.get("h3_resolution"),
        dropped_cells=0,
    )


def cells_in_plane(grid: Grid) -> np.ndarray:
    """The cells as polygons of the grid's equal-area plane.

    Cells split at the antimeridian for EPSG:4326 are joined again here.
    """
    projected = np.asarray(grid.projection.project(grid.cells.geometry.values))
    split = np.flatnonzero(shapely.get_type_id(projected) == shapely.GeometryType.MULTIPOLYGON)
    for i in split:
        projected[i] = shapely.union_all(shapely.get_parts(projected[i]))
    return projected
