"""Retrieval through the stages: train indexes each fold, eval scores knn and refined
beside the cell predictors, predict answers with the chosen one and shows its neighbours,
and a run from before retrieval still evaluates and predicts."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import DataError
from geotag.retrieval.index import EMBEDDINGS_FILE, ENTRIES_FILE, LocationIndex
from geotag.stages.evaluate import EvalOptions, run_eval
from geotag.stages.predict import PredictOptions, run_predict
from geotag.train.runs import open_run
from geotag.workspace import Workspace

EVAL = EvalOptions(device="cpu", workers=0)
PREDICT = PredictOptions(device="cpu", workers=0)


def photo(ws: Workspace, index: int = 0) -> Path:
    return ws.root / str(pd.read_parquet(ws.images_parquet).iloc[index]["path"])


def declare(ws: Workspace, predictor: str | None) -> None:
    """Make the run answer with ``predictor`` (as if its inner splits had chosen it)."""
    path = ws.run_dir("tiny") / "config.json"
    config = json.loads(path.read_text())
    config["predictor"] = predictor
    path.write_text(json.dumps(config))


def forget_retrieval(ws: Workspace) -> None:
    """The run as geotag wrote it before retrieval: no index, no settings, no cells file."""
    path = ws.run_dir("tiny") / "config.json"
    config = json.loads(path.read_text())
    for later in ("retrieval", "cells", "fold_classes", "fold_tau_km"):
        config.pop(later)
    (ws.run_dir("tiny") / "cells.parquet").unlink()
    config["predictor"] = "weighted"
    path.write_text(json.dumps(config))
    for fold_dir in ws.run_dir("tiny").glob("fold-*"):
        (fold_dir / EMBEDDINGS_FILE).unlink()
        (fold_dir / ENTRIES_FILE).unlink()


def test_training_indexes_each_fold_and_records_its_settings(trained_ws: Workspace) -> None:
    run = open_run(trained_ws, "tiny")
    folds = pd.read_csv(run.folds_path)
    for fold in run.config.folds_trained:
        index = LocationIndex.load(run.fold_dir(fold))
        assert index is not None
        choice = run.config.retrieval[str(fold)]
        assert choice.entries == len(index)
        training = set(folds.loc[folds["fold"] != fold, "path"])
        assert set(index.path) <= training  # never a photo of the fold eval scores
        inner = json.loads(run.inner_scores(fold).read_text())
        assert inner["retrieval"]["refined_k"] == choice.refined_k
        assert len(inner["retrieval_grid"]) > 10  # every combination tried, kept


def test_refined_answers_are_training_locations_of_the_fold_or_its_top_cell(
    trained_ws: Workspace,
) -> None:
    run = open_run(trained_ws, "tiny")
    result = run_eval(trained_ws, EVAL)
    predictions = pd.read_parquet(result.folder / "predictions.parquet")
    for fold, rows in predictions.groupby("fold"):
        index = LocationIndex.load(run.fold_dir(int(fold)))
        assert index is not None
        allowed = set(zip(index.lat.round(9), index.lon.round(9), strict=True))
        lat, lon = run.fold_classes(int(fold)).centres()
        allowed |= set(zip(np.round(lat, 9), np.round(lon, 9), strict=True))
        answered = zip(
            rows["pred_lat_refined"].round(9), rows["pred_lon_refined"].round(9), strict=True
        )
        assert set(answered) <= allowed
        knn = set(zip(rows["pred_lat_knn"].round(9), rows["pred_lon_knn"].round(9), strict=True))
        assert knn <= allowed
    shown = CliRunner().invoke(app, ["eval", "-w", str(trained_ws.root), "--device", "cpu"])
    assert shown.exit_code == 0, shown.output
    assert "predictors, per image" in shown.stdout and "refined" in shown.stdout


def test_predict_answers_with_retrieval_and_lists_the_neighbours(trained_ws: Workspace) -> None:
    declare(trained_ws, "refined")
    path = photo(trained_ws, 2)
    result = run_predict(trained_ws, [path], replace(PREDICT, neighbours=3))
    assert result.predictor == "refined"
    (prediction,) = result.predictions
    assert len(prediction.neighbours) == 3
    sims = [n.similarity for n in prediction.neighbours]
    assert sims == sorted(sims, reverse=True)
    images = set(pd.read_parquet(trained_ws.images_parquet)["path"])
    assert {n.path for n in prediction.neighbours} <= images
    # The answer is a training location one of the folds leaned on, or its fallback.
    run = open_run(trained_ws, "tiny")
    locations = set()
    for fold in run.config.folds_trained:
        index = LocationIndex.load(run.fold_dir(fold))
        assert index is not None
        locations |= set(zip(index.lat.round(9), index.lon.round(9), strict=True))
    assert (round(prediction.lat, 9), round(prediction.lon, 9)) in locations
    cli = CliRunner().invoke(
        app, ["predict", "-w", str(trained_ws.root), str(path), "--neighbours", "2", "--json",
              "--device", "cpu"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    record = json.loads(cli.stdout.splitlines()[-1])
    assert len(record["neighbours"]) == 2 and record["neighbours"][0]["path"] in images


def test_a_run_from_before_retrieval_still_evaluates_and_predicts(
    trained_ws: Workspace,
) -> None:
    forget_retrieval(trained_ws)
    result = run_eval(trained_ws, EVAL)
    assert set(result.metrics.per_image.mean.predictors) == {"top_cell", "weighted"}
    drawn = trained_ws.root / "map.png"
    predicted = run_predict(
        trained_ws, [photo(trained_ws)], replace(PREDICT, neighbours=3, map=drawn)
    )
    assert drawn.is_file()  # over the workspace grid's cells
    assert predicted.predictor == "weighted"
    assert predicted.predictions[0].neighbours == ()  # nothing to show, nothing invented


def test_a_run_answering_with_retrieval_without_its_index_is_one_clear_error(
    trained_ws: Workspace, tmp_path: Path
) -> None:
    declare(trained_ws, "knn")
    shutil.move(trained_ws.run_dir("tiny") / "fold-1" / EMBEDDINGS_FILE, tmp_path / "kept")
    with pytest.raises(DataError, match="answers with its knn point, but fold 1 has no"):
        run_eval(trained_ws, EVAL)
    with pytest.raises(DataError, match="fold 1 has no retrieval index"):
        run_predict(trained_ws, [photo(trained_ws)], PREDICT)
