from __future__ import annotations

import re
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image

from geotag.errors import InputError
from geotag.evaluate.metrics import CURVE_KM, confusion, distance_curve
from geotag.geo.grid import make_grid
from geotag.geo.regions import Region
from geotag.report.evaluation import (
    MAX_TICK_LABELS,
    NO_DATA_FILL,
    confusion_ticks,
    plot_accuracy_map,
    plot_confusion,
    plot_distance_curve,
)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        image.load()
        return image.size


def near(path: Path, hex_colour: str, tolerance: int = 1) -> int:
    colour = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - colour).max(axis=-1) < tolerance).sum())


def test_confusion_files_use_the_real_cell_ids(tmp_path: Path) -> None:
    matrix = confusion([0, 1, 1, 2, 2, 2], [0, 0, 1, 2, 2, 0], n_classes=3)
    png, csv = plot_confusion(matrix, [3, 17, 42], tmp_path / "cm.png", tmp_path / "cm.csv")
    assert csv.read_text().splitlines()[0] == "true_cell/pred_cell,3,17,42"
    table = pd.read_csv(csv, index_col=0)
    assert table.index.tolist() == [3, 17, 42]
    assert table.to_numpy().tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 2]]  # raw counts
    width, height = png_size(png)
    assert 500 <= width <= 1500 and 500 <= height <= 1500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.csv", "cm.png"]  # no leftovers


def test_confusion_ticks_thin_out_but_never_reindex() -> None:
    few = np.arange(MAX_TICK_LABELS) * 5 + 3
    positions, labels = confusion_ticks(few)
    assert positions == list(range(MAX_TICK_LABELS))
    assert labels == [str(c) for c in few]

    many = np.arange(300) * 7 + 1000
    positions, labels = confusion_ticks(many)
    assert len(labels) <= MAX_TICK_LABELS
    assert positions[:3] == [0, 4, 8]
    assert labels == [str(many[p]) for p in positions]
    assert set(labels) <= {str(c) for c in many}


def test_a_300_class_confusion_plot_renders_quickly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    k = 300
    ids = np.sort(rng.choice(10_000, k, replace=False))
    truth = rng.integers(0, k - 1, 3000)  # the last class is never true
    pred = np.where(rng.random(3000) < 0.6, truth, rng.integers(0, k, 3000))
    matrix = confusion(truth, pred, k)
    started = time.perf_counter()
    png, csv = plot_confusion(matrix, ids, tmp_path / "cm.png", tmp_path / "cm.csv")
    assert time.perf_counter() - started < 15
    width, height = png_size(png)
    assert width > 1500 and height > 1500  # the figure grows with the classes
    table = pd.read_csv(csv, index_col=0)
    assert table.columns.tolist() == [str(c) for c in ids]
    assert (table.to_numpy() == matrix).all()


def test_confusion_refuses_mismatched_ids(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="2 cell ids for a 3-class"):
        plot_confusion(np.eye(3), [1, 2], tmp_path / "a.png", tmp_path / "a.csv")
    with pytest.raises(InputError, match="repeat"):
        plot_confusion(np.eye(2), [5, 5], tmp_path / "a.png", tmp_path / "a.csv")
    assert not list(tmp_path.iterdir())


def squares_grid() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Nine one-degree cells (ids 10..18) over a 3 x 3 degree region, in EPSG:4326."""
    boxes = [shapely.box(77 + i % 3, 12 + i // 3, 78 + i % 3, 13 + i // 3) for i in range(9)]
    cells = gpd.GeoDataFrame({"cell_id": np.arange(10, 19)}, geometry=boxes, crs="EPSG:4326")
    region = gpd.GeoDataFrame(
        {"name": ["square"]}, geometry=[shapely.box(77, 12, 80, 15)], crs="EPSG:4326"
    )
    return cells, region


def test_accuracy_map_hatches_cells_without_images(tmp_path: Path) -> None:
    cells, region = squares_grid()
    per_cell = pd.DataFrame(
        {
            "cell_id": [10, 12, 14, 15, 18],
            "n": [4, 2, 9, 1, 3],
            "accuracy": [0.25, 1.0, 0.5, 0.0, 2 / 3],
            "median_km": [40.0, 3.0, 80.0, 400.0, 20.0],
        }
    )
    some = plot_accuracy_map(cells, region, per_cell, tmp_path / "some.png")
    width, height = png_size(some)
    assert width >= 800 and height >= 800
    assert near(some, NO_DATA_FILL) > 50_000  # four grey, hatched cells

    everyone = per_cell.merge(cells[["cell_id"]], how="right").fillna({"n": 5, "accuracy": 0.5})
    full = plot_accuracy_map(cells, region, everyone, tmp_path / "full.png")
    assert near(full, NO_DATA_FILL) < 100  # a few anti-aliased pixels; no cell, no legend

    errors = plot_accuracy_map(cells, region, per_cell, tmp_path / "km.png", value="median_km")
    png_size(errors)

    # Without a region there is no outline, but the cells still show, in the same plane.
    bare = plot_accuracy_map(cells, None, per_cell, tmp_path / "bare.png")
    assert near(bare, NO_DATA_FILL) > 50_000


def test_accuracy_map_keeps_antimeridian_cells_whole(tmp_path: Path) -> None:
    geometry = shapely.MultiPolygon(
        [shapely.box(178, -19, 180, -16), shapely.box(-180, -19, -178, -16)]
    )
    grid = make_grid(Region("fiji-ish", geometry, "test"), 100.0)
    assert (shapely.get_num_geometries(grid.cells.geometry.values) > 1).any()
    flat = grid.cells_in_plane()
    assert (shapely.get_num_geometries(flat) == 1).all()
    assert shapely.area(flat) / 1e6 == pytest.approx(100.0**2, rel=1e-6)

    ids = grid.cells["cell_id"].to_numpy()
    per_cell = pd.DataFrame({"cell_id": ids[::2], "n": 3, "accuracy": 0.5})
    path = plot_accuracy_map(grid.cells, geometry, per_cell, tmp_path / "fiji.png")
    png_size(path)


def test_accuracy_map_refuses_bad_input(tmp_path: Path) -> None:
    cells, region = squares_grid()
    per_cell = pd.DataFrame({"cell_id": [10, 99], "n": [1, 1], "accuracy": [1.0, 0.0]})
    with pytest.raises(InputError, match=re.escape("cell(s) [99]")):
        plot_accuracy_map(cells, region, per_cell, tmp_path / "a.png")
    with pytest.raises(InputError, match="unknown map value 'recall'"):
        plot_accuracy_map(cells, region, per_cell, tmp_path / "a.png", value="recall")
    with pytest.raises(InputError, match="lacks column"):
        plot_accuracy_map(cells, region, per_cell, tmp_path / "a.png", value="median_km")
    assert not list(tmp_path.iterdir())


def test_distance_curve_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    top_cell, weighted = rng.gamma(1.5, 300, (2, 300))
    curves = {
        "top_cell": (CURVE_KM, distance_curve(top_cell)),
        "weighted": (CURVE_KM, distance_curve(weighted)),
    }
    folds = {"weighted": [(CURVE_KM, distance_curve(weighted[i::3])) for i in range(3)]}
    path = plot_distance_curve(curves, tmp_path / "curve.png", folds=folds)
    width, height = png_size(path)
    assert width >= 800 and height >= 500

    # Bare shares are taken to be over the default thresholds.
    bare = plot_distance_curve({"per image": distance_curve(top_cell)}, tmp_path / "bare.png")
    png_size(bare)

    with pytest.raises(InputError, match="increasing"):
        plot_distance_curve({"x": ([10.0, 1.0], [0.0, 1.0])}, tmp_path / "bad.png")
    with pytest.raises(InputError, match=re.escape("outside [0, 1]")):
        plot_distance_curve({"x": ([1.0, 10.0], [0.0, 2.0])}, tmp_path / "bad.png")
    with pytest.raises(InputError, match="no distance curve"):
        plot_distance_curve({}, tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.png", "curve.png"]
