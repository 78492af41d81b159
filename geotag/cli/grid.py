"""``geotag grid`` and ``geotag sample``: cells over a region, points in the cells."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from geotag.cli.common import (
    WorkspaceOption,
    console,
    files_list,
    locked,
    progress_bar,
    reporting_errors,
    warn,
)
from geotag.geo.defaults import (
    DEFAULT_CELL_KM,
    DEFAULT_MIN_REGION_FRACTION,
    DEFAULT_SEED,
    DEFAULT_SHAPE,
    SHAPES,
)
from geotag.workspace import Workspace

ShapeChoice = enum.Enum("ShapeChoice", {name: name for name in SHAPES}, type=str)  # type: ignore[misc]


def grid(
    workspace: WorkspaceOption = Path("."),
    cell_km: Annotated[
        float,
        typer.Option(
            "--cell-km",
            help="Cell size: every cell has the area of a K x K km square.",
        ),
    ] = DEFAULT_CELL_KM,
    country: Annotated[
        str | None,
        typer.Option(
            "--country",
            "-c",
            help="Country name or ISO 3166 code (IN, IND, India). Default: India.",
        ),
    ] = None,
    region: Annotated[
        Path | None,
        typer.Option(
            "--region",
            help="Boundary file (GeoJSON, GeoPackage, Shapefile, GeoParquet); features are "
            "unioned.",
        ),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option("--bbox", help="Bounding box W,S,E,N in degrees, e.g. 68,6,98,36."),
    ] = None,
    shape: Annotated[
        ShapeChoice,  # type: ignore[valid-type]
        typer.Option("--shape", help="Cell shape; hex is the isometric grid, h3 uses Uber's H3."),
    ] = ShapeChoice[DEFAULT_SHAPE],  # type: ignore[misc]
    min_region_fraction: Annotated[
        float,
        typer.Option(
            "--min-region-fraction",
            help="Drop cells with less than this share of their area inside the region.",
        ),
    ] = DEFAULT_MIN_REGION_FRACTION,
) -> None:
    """Overlay a grid of equal-area cells onto a country or region.

    Writes grid.parquet (GeoParquet), grid.geojson, grid.png and region.parquet.

    Example:

        geotag grid --country India --cell-km 100 -w india
    """
    from geotag.stages.grid import run_grid

    with reporting_errors(), locked(workspace, "grid"), progress_bar() as progress:
        result = run_grid(
            Workspace(workspace),
            country=country,
            region_file=region,
            bbox=bbox,
            cell_km=cell_km,
            shape=shape.value,
            min_region_fraction=min_region_fraction,
            progress=progress,
        )
    warn(*result.warnings)
    made = result.grid
    table = Table(title=f"grid of {made.region.name}", show_header=False, title_justify="left")
    table.add_row("cells", f"{len(made.cells):,} {made.shape}")
    if made.h3_resolution is not None:
        table.add_row(
            "H3 resolution",
            f"{made.h3_resolution} (asked for {made.cell_km:g} km = {made.cell_km**2:,.0f} km²)",
        )
    table.add_row(
        "cell area",
        f"{made.cell_area_km2:,.1f} km² (= {made.cell_area_km2**0.5:,.2f} km square)",
    )
    table.add_row("region area", f"{made.region_area_km2:,.0f} km²")
    table.add_row(
        "dropped",
        f"{made.dropped_cells:,} cells under {made.min_region_fraction:g} of area in region",
    )
    table.add_row("written", files_list(result.files))
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)


def sample(
    workspace: WorkspaceOption = Path("."),
    per_cell: Annotated[
        int | None,
        typer.Option("--per-cell", help="Points in every cell (default 10)."),
    ] = None,
    total: Annotated[
        int | None,
        typer.Option("--total", help="Points in all, spread over cells by area in the region."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (recorded).")] = DEFAULT_SEED,
) -> None:
    """Draw points uniformly per unit area inside each cell of the workspace's grid.

    Writes points.parquet (point_id, cell_id, lat, lon) and points.png.

    Example:

        geotag sample --per-cell 20 -w india
    """
    from geotag.stages.sample import run_sample

    with reporting_errors(), locked(workspace, "sample"), progress_bar() as progress:
        result = run_sample(
            Workspace(workspace), per_cell=per_cell, total=total, seed=seed, progress=progress
        )
    table = Table(title="sample", show_header=False, title_justify="left")
    table.add_row("points", f"{len(result.points):,} in {result.cells:,} cells (seed {seed})")
    table.add_row("written", files_list(result.files))
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)
