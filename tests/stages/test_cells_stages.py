"""Cells that follow the data, through the stages (issue #16): ``train --cells adaptive``
makes each fold's cells from that fold's training images alone and writes them; eval scores
each fold in its own cells and, for comparison, against the workspace grid; predict votes
with every fold in the run's cells; a bad choice is one line."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import GeotagError
from geotag.geo.partition import Partition, make_partition
from geotag.gridfile import load_grid
from geotag.stages.evaluate import EvalOptions, run_eval
from geotag.stages.predict import PredictOptions, run_predict
from geotag.stages.train import TrainOptions, run_train
from geotag.train.runs import open_run
from geotag.workspace import Workspace
from tests.conftest import snapshot

MAX_IMAGES, MIN_IMAGES = 15, 4
ADAPTIVE = TrainOptions(
    model="resnet10t", pretrained=False, image_size=32, epochs=1, batch_size=32, lr=2e-3,
    folds=3, fold="all", workers=0, device="cpu", name="cells", cells="adaptive",
    max_images_per_cell=MAX_IMAGES, min_images_per_cell=MIN_IMAGES,
)  # fmt: skip


@pytest.fixture(scope="module")
def adaptive(scraped: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scraped workspace with run "cells": adaptive cells, 3 folds, all trained."""
    root = tmp_path_factory.mktemp("adaptive") / "ws"
    shutil.copytree(scraped, root)
    run_train(Workspace(root), ADAPTIVE)
    return root


@pytest.fixture
def adaptive_ws(adaptive: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(adaptive, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def training_locations(ws: Workspace, fold: int) -> pd.DataFrame:
    """Where fold ``fold``'s training images are, read back from folds.csv."""
    folds = pd.read_csv(ws.run_dir("cells") / "folds.csv")
    images = pd.read_parquet(ws.images_parquet)
    joined = folds.merge(images, on="path")
    return joined[joined["fold"] != fold]


def test_each_fold_has_cells_made_from_its_training_images_only(adaptive_ws: Workspace) -> None:
    run = open_run(adaptive_ws, "cells")
    grid = load_grid(adaptive_ws)
    assert run.config.cells == "adaptive"
    every = pd.read_parquet(adaptive_ws.images_parquet)
    from_all = make_partition(
        "adaptive", grid, every["lat"].to_numpy(), every["lon"].to_numpy(),
        max_images=MAX_IMAGES, min_images=MIN_IMAGES,
    )  # fmt: skip
    differs_from_all = []
    for fold in run.config.folds_trained:
        stored = Partition.read(run.cells(fold))
        train = training_locations(adaptive_ws, fold)
        again = make_partition(
            "adaptive", grid, train["lat"].to_numpy(), train["lon"].to_numpy(),
            max_images=MAX_IMAGES, min_images=MIN_IMAGES,
        )  # fmt: skip
        # The same cells, counting exactly the fold's training images: none it is scored on.
        assert list(stored.cells["source"]) == list(again.cells["source"])
        assert stored.cells["images"].sum() == len(train)
        assert np.array_equal(stored.cells["images"].to_numpy(), again.cells["images"].to_numpy())
        differs_from_all.append(list(stored.cells["source"]) != list(from_all.cells["source"]))
        # The model's head, the config's classes and the cells agree.
        classes = run.fold_classes(fold)
        assert classes.cell_ids == tuple(range(len(stored.cells)))
        assert run.build_model(fold).num_classes == len(classes)
        # Both limits hold (a cell over the maximum is one the notes explain).
        counts = stored.cells["images"].to_numpy()
        assert counts.min() >= MIN_IMAGES
        assert (counts <= MAX_IMAGES).all() or stored.notes
    # Counting the held-out images too would have drawn other cells: the check can fail.
    assert any(differs_from_all)
    # The run's own cells, for predicting new photos, are made from every image.
    assert Partition.read(run.cells()).cells["images"].sum() == len(every)


def test_eval_scores_each_fold_in_its_own_cells_and_against_the_grid(
    adaptive_ws: Workspace,
) -> None:
    run = open_run(adaptive_ws, "cells")
    result = run_eval(adaptive_ws, EvalOptions(device="cpu", workers=0))
    metrics = result.metrics
    assert metrics.cells == "adaptive"
    predictions = pd.read_parquet(result.folder / "predictions.parquet")
    grid = load_grid(adaptive_ws)
    images = pd.read_parquet(adaptive_ws.images_parquet).set_index("path")
    for fold, rows in predictions.groupby("fold"):
        cells = Partition.read(run.cells(int(fold)))
        # Each photo's true cell is located in its fold's cells, its grid cell kept.
        located = cells.locate(rows["true_lat"].to_numpy(), rows["true_lon"].to_numpy())
        assert np.array_equal(rows["true_cell"].to_numpy(), located)
        assert np.array_equal(
            rows["grid_cell"].to_numpy(), images.loc[rows["path"], "cell_id"].to_numpy()
        )
        scores = metrics.per_image.per_fold[str(fold)]
        hits = np.array([p[0] for p in rows["pred_cells"]]) == rows["true_cell"].to_numpy()
        assert scores.top1 == pytest.approx(hits.mean())
        assert scores.n_classes == len(cells.cells)
        # Against the workspace grid: the share of headline points in the true grid cell.
        assert scores.in_grid_cell is not None
        assert set(scores.in_grid_cell) == set(scores.predictors)
        headline_hits = (rows["pred_grid_cell"] == rows["grid_cell"]).mean()
        assert scores.in_grid_cell[metrics.headline] == pytest.approx(headline_hits)
        # Regions are sets of the fold's own cells, with their areas (issue #17).
        area = dict(zip(cells.cells["cell_id"], cells.cells["area_km2"], strict=True))
        summed = [sum(area[c] for c in region) for region in rows["region_cells"]]
        assert np.allclose(rows["region_km2"], summed)
        covered = [t in r for t, r in zip(rows["true_cell"], rows["region_cells"], strict=True)]
        assert rows["covered"].tolist() == covered
        assert scores.doubt is not None and scores.doubt.coverage == pytest.approx(np.mean(covered))
    assert set(predictions["pred_grid_cell"]) <= set(grid.cells["cell_id"]) | {-1}
    assert (result.folder / "accuracy_map.png").is_file()


def test_eval_of_a_grid_run_reports_the_grid_comparison_too(trained_ws: Workspace) -> None:
    result = run_eval(trained_ws, EvalOptions(device="cpu", workers=0))
    assert result.metrics.cells == "grid"
    mean = result.metrics.per_image.mean
    assert mean.in_grid_cell is not None and "top_cell" in mean.in_grid_cell
    # Over grid cells, a top cell's point lies in its own cell: grid hits are top-1 hits.
    assert mean.in_grid_cell["top_cell"] == pytest.approx(mean.top1, abs=0.02)


def test_predict_votes_with_every_fold_in_the_run_cells(adaptive_ws: Workspace) -> None:
    run = open_run(adaptive_ws, "cells")
    cells = Partition.read(run.cells())
    photo = adaptive_ws.root / str(pd.read_parquet(adaptive_ws.images_parquet).iloc[0]["path"])
    out = adaptive_ws.root / "map.png"
    result = run_predict(
        adaptive_ws, [photo], PredictOptions(device="cpu", workers=0, top_k=10_000, map=out)
    )
    (prediction,) = result.predictions
    assert {g.cell_id for g in prediction.top_k} <= set(cells.cells["cell_id"])
    # Every fold's probability lands on some run cell: the run's classes share all of it.
    assert sum(g.probability for g in prediction.top_k) == pytest.approx(1.0, abs=1e-4)
    assert out.is_file()
    # The region joins the folds' own cells: a shape, not a list of run cells (issue #17).
    doubt = prediction.doubt
    assert doubt is not None and doubt.cells is None
    whole = load_grid(adaptive_ws).cells["area_km2"].sum()
    assert 0 < doubt.region_km2 <= whole * 1.001
    maps = run.class_maps(run.trained_folds())
    assert maps is not None
    for fold, matrix in zip(run.trained_folds(), maps, strict=True):
        assert matrix.shape == (len(run.fold_classes(fold)), len(run.classes))
        assert (matrix.sum(axis=1) == 1).all()


def test_admin_cells_train_evaluate_and_predict(train_ws: Workspace) -> None:
    options = replace(
        ADAPTIVE,
        cells="admin",
        fold="0",
        name="admin",
        min_images_per_cell=20,
        max_images_per_cell=1000,
    )
    run_train(train_ws, options)
    run = open_run(train_ws, "admin")
    cells = Partition.read(run.cells(0))
    assert cells.kind == "admin"
    assert cells.cells["source"].str.startswith("admin:").all()
    assert cells.cells["images"].min() >= 20
    result = run_eval(train_ws, EvalOptions(device="cpu", workers=0))
    assert result.metrics.cells == "admin"
    photo = train_ws.root / str(pd.read_parquet(train_ws.images_parquet).iloc[0]["path"])
    (prediction,) = run_predict(train_ws, [photo], PredictOptions(device="cpu")).predictions
    assert prediction.top_k[0].cell_id in set(Partition.read(run.cells()).cells["cell_id"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cells": "hexes"}, "--cells must be one of grid, adaptive, admin"),
        (
            {"max_images_per_cell": 5, "min_images_per_cell": 10},
            r"--max-images-per-cell \(5\) must be at least --min-images-per-cell \(10\)",
        ),
        (
            {"min_images_per_cell": 100_000, "max_images_per_cell": 100_000},
            "makes one cell of the training images",
        ),
    ],
)
def test_bad_cell_options_are_one_line_and_write_nothing(
    train_ws: Workspace, change: dict[str, object], message: str
) -> None:
    before = snapshot(train_ws.root)
    with pytest.raises(GeotagError, match=message) as info:
        run_train(train_ws, replace(ADAPTIVE, fold="0", **change))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert snapshot(train_ws.root) == before


def test_cli_names_a_bad_cells_choice_in_one_line(train_ws: Workspace) -> None:
    result = CliRunner().invoke(
        app, ["train", "-w", str(train_ws.root), "--cells", "hexes", "--epochs", "1"]
    )
    assert result.exit_code != 0
    assert "--cells must be one of" in result.output
    assert "Traceback" not in result.output
