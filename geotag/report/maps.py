"""Maps a person can check at a glance: the region, its numbered cells, sampled points.

Drawn in the grid's equal-area plane (axes in km from the region's centre), so cells look
the size they are and nothing breaks at the antimeridian.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotag.atomic import atomic_path

#: Above this many cells the numbers would be unreadable, so only every cell's outline shows.
MAX_LABELLED_CELLS = 600
MAX_PLOTTED_POINTS = 200_000


def plot_grid(
    path: Path,
    cells: np.ndarray,
    cell_ids: np.ndarray,
    region: BaseGeometry,
    title: str,
    points_xy: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> Path:
    """Write a PNG of ``cells`` (projected polygons) over ``region``, with optional points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection

    km = 1000.0
    fig, ax = plt.subplots(figsize=(10, 10), dpi=120)
    try:
        rings = [np.asarray(r.coords) / km for r in _exteriors(cells)]
        ax.add_collection(
            PolyCollection(
                rings, facecolors="#dbe9f6", edgecolors="#3b6ea5", linewidths=0.4, alpha=0.9
            )
        )
        outline = [np.asarray(line.coords) / km for line in boundary_lines(region)]
        ax.add_collection(LineCollection(outline, colors="#222222", linewidths=0.9))

        if len(cells) <= MAX_LABELLED_CELLS:
            anchor = shapely.point_on_surface(cells)
            size = float(np.clip(220 / np.sqrt(max(len(cells), 1)), 3, 9))
            for cell_id, x, y in zip(
                cell_ids, shapely.get_x(anchor) / km, shapely.get_y(anchor) / km, strict=True
            ):
                ax.text(
                    x, y, str(cell_id), fontsize=size, ha="center", va="center", color="#1b2a3a"
                )
        if points_xy is not None:
            x, y = points_xy
            if len(x) > MAX_PLOTTED_POINTS:
                pick = np.random.default_rng(seed).choice(len(x), MAX_PLOTTED_POINTS, False)
                x, y = x[pick], y[pick]
            size = 8 if len(x) < 5_000 else 2
            ax.scatter(x / km, y / km, s=size, c="#d1495b", linewidths=0, zorder=3)

        frame_plane(ax, np.append(cells, region), km)
        ax.set_title(title)
        fig.tight_layout()
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def _exteriors(geometries: np.ndarray) -> list[BaseGeometry]:
    parts = shapely.get_parts(np.asarray(geometries))
    return list(shapely.get_exterior_ring(parts))


def boundary_lines(geometry: BaseGeometry) -> list[BaseGeometry]:
    """The outline of a (multi)polygon as plain lines, ready for a LineCollection."""
    return list(shapely.get_parts(shapely.boundary(shapely.get_parts(geometry))))


def frame_plane(ax: Any, geometries: np.ndarray, km: float) -> None:
    """Axes limits, aspect and labels of a map in the grid's plane: every map of a grid
    (grid.png, points.png, accuracy_map.png) is framed the same way."""
    x_min, y_min, x_max, y_max = shapely.total_bounds(geometries) / km
    pad = 0.03 * max(x_max - x_min, y_max - y_min, 1e-9)
    ax.set_xlim(x_min - pad, x_max + pad)
    ax.set_ylim(y_min - pad, y_max + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("km east of the region's centre (equal-area projection)")
    ax.set_ylabel("km north of the region's centre")
    ax.grid(alpha=0.2)
