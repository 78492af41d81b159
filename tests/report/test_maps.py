from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from PIL import Image

from geotag.report.maps import MAX_LABELLED_CELLS, plot_grid

CELL_FILL = np.array([0xDB, 0xE9, 0xF6])
POINT_RED = np.array([0xD1, 0x49, 0x5B])


def near(pixels: np.ndarray, colour: np.ndarray, tolerance: int = 12) -> int:
    return int((np.abs(pixels[..., :3].astype(int) - colour).max(axis=-1) < tolerance).sum())


def squares(n: int, size: float = 10_000.0) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    return np.array(
        [
            shapely.box(
                i % side * size, i // side * size, (i % side + 1) * size, (i // side + 1) * size
            )
            for i in range(n)
        ]
    )


def test_grid_map_shows_cells_and_points(tmp_path: Path) -> None:
    cells = squares(9)
    region = shapely.Point(15_000, 15_000).buffer(14_000)
    path = plot_grid(tmp_path / "grid.png", cells, np.arange(9), region, "nine cells")
    pixels = np.asarray(Image.open(path))
    assert pixels.shape[:2] == (1200, 1200)
    assert near(pixels, CELL_FILL) > 100_000, "cells are filled"
    assert near(pixels, POINT_RED) == 0

    rng = np.random.default_rng(0)
    xy = (rng.uniform(0, 30_000, 500), rng.uniform(0, 30_000, 500))
    with_points = plot_grid(tmp_path / "points.png", cells, np.arange(9), region, "p", xy)
    assert near(np.asarray(Image.open(with_points)), POINT_RED) > 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "points.png"]


def test_many_cells_are_drawn_without_labels(tmp_path: Path) -> None:
    n = MAX_LABELLED_CELLS + 50
    cells = squares(n, 1000.0)
    region = shapely.box(0, 0, 30_000, 30_000)
    path = plot_grid(tmp_path / "big.png", cells, np.arange(n), region, "many")
    assert near(np.asarray(Image.open(path)), CELL_FILL) > 50_000
