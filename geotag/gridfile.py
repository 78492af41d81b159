"""``grid.parquet`` and ``region.parquet``: the grid every later stage reads, on disk.

Written by the grid stage, read by sample, scrape, import, train, eval and predict. The
recorded ``[grid]`` settings in geotag.toml carry what the files cannot: the projection,
shape and nominal size.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import shapely

from geotag.atomic import atomic_path
from geotag.errors import DataError
from geotag.geo.grid import Grid, projected_region
from geotag.geo.projection import EqualAreaProjection
from geotag.geo.regions import Region
from geotag.workspace import Workspace

GRID_HINT = "run `geotag grid` first"


def grid_fingerprint(grid: Grid) -> str:
    """A short id of the exact cells, so later stages can tell which grid they came from."""
    digest = hashlib.sha256()
    digest.update(grid.projection.proj4.encode())
    digest.update(shapely.to_wkb(grid.cells.geometry.values, output_dimension=2).sum())
    return digest.hexdigest()[:12]


def save_grid(workspace: Workspace, grid: Grid) -> tuple[Path, ...]:
    """Write region.parquet, grid.parquet and grid.geojson atomically."""
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
    return (workspace.region_parquet, workspace.grid_parquet, workspace.grid_geojson)


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
        cell_area_km2=float(settings.get("cell_area_km2", math.nan)),
        region_area_km2=float(settings.get("region_area_km2", math.nan)),
        min_region_fraction=float(settings.get("min_region_fraction", 0.0)),
        h3_resolution=settings.get("h3_resolution"),
        dropped_cells=0,
    )
