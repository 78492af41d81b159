"""`geotag eval` on a run trained in the test session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import DataError, InputError
from geotag.evaluate.summary import EvalMetrics
from geotag.geo.distance import haversine_km
from geotag.stages.evaluate import EvalOptions, run_eval
from geotag.train.bands import Band
from geotag.workspace import Workspace

OPTIONS = EvalOptions(workers=0, device="cpu")
CLI_KW = ("--workers", "0", "--device", "cpu")


def test_eval_scores_every_fold_on_its_held_out_images(trained_ws: Workspace) -> None:
    result = run_eval(trained_ws, OPTIONS)
    out = trained_ws.run_dir("tiny") / "eval"
    assert result.folder == out
    for name in (
        "metrics.json",
        "predictions.parquet",
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "accuracy_map.png",
        "distance_curve.png",
    ):
        assert (out / name).stat().st_size > 0, name
    for picture in ("confusion_matrix.png", "accuracy_map.png", "distance_curve.png"):
        with Image.open(out / picture) as image:
            assert image.format == "PNG" and min(image.size) > 200

    metrics = json.loads((out / "metrics.json").read_text())
    # The typed contract reads back exactly what was written.
    assert EvalMetrics.read(out / "metrics.json") == result.metrics
    assert metrics["folds"] == [0, 1, 2]
    assert set(metrics["per_image"]["per_fold"]) == {"0", "1", "2"}
    assert metrics["headline"] in ("top_cell", "weighted", "knn", "refined")
    # Every fold has an index, so every predictor is scored, per image and per location.
    for summary in ("per_image", "per_location"):
        for scores in metrics[summary]["per_fold"].values():
            assert set(scores["predictors"]) == {"top_cell", "weighted", "knn", "refined"}
    predictions = pd.read_parquet(out / "predictions.parquet")
    images = pd.read_parquet(trained_ws.images_parquet)
    folds = pd.read_csv(trained_ws.run_dir("tiny") / "folds.csv")
    assert sorted(predictions["path"]) == sorted(images["path"])  # each image once
    merged = predictions.merge(folds, on="path", suffixes=("", "_csv"))
    assert (merged["fold"] == merged["fold_csv"]).all()  # scored by the fold that held it out
    for fold, rows in predictions.groupby("fold"):
        top1 = metrics["per_image"]["per_fold"][str(fold)]["top1"]
        hits = [
            cells[0] == true
            for cells, true in zip(rows["pred_cells"], rows["true_cell"], strict=True)
        ]
        assert top1 == pytest.approx(np.mean(hits))
    expected = haversine_km(
        predictions["true_lat"],
        predictions["true_lon"],
        predictions["pred_lat"],
        predictions["pred_lon"],
    )
    np.testing.assert_allclose(predictions["error_km"], expected, rtol=1e-6)
    tops = np.stack(predictions["pred_probs"].to_numpy())
    assert (np.diff(tops, axis=1) <= 1e-7).all()  # best first
    means = [metrics["per_image"]["per_fold"][f]["top1"] for f in ("0", "1", "2")]
    assert metrics["per_image"]["mean"]["top1"] == pytest.approx(np.mean(means))
    assert metrics["per_image"]["std"]["top1"] == pytest.approx(np.std(means, ddof=1))
    # Locations: two headings per panorama, fused into one prediction each.
    location_count = images["pano_id"].nunique()
    assert metrics["images"] == len(images) and location_count < len(images)
    matrix = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    config = json.loads((trained_ws.run_dir("tiny") / "config.json").read_text())
    assert [int(c) for c in matrix.columns] == config["classes"]
    assert matrix.to_numpy().sum() == len(images)


def test_masked_eval_goes_to_its_own_folder(trained_ws: Workspace) -> None:
    result = run_eval(trained_ws, EvalOptions(workers=0, device="cpu", mask=Band("bottom", 0.5)))
    assert result.folder.name == "eval-bottom-0.5"
    assert json.loads((result.folder / "metrics.json").read_text())["mask"] == "bottom:0.5"


def test_eval_on_a_separate_test_set_leaves_the_held_out_evaluation_alone(
    trained_ws: Workspace, tmp_path: Path
) -> None:
    held_out = trained_ws.run_folder("tiny").eval_dir()
    held_out.mkdir(parents=True)
    (held_out / "metrics.json").write_text('{"the held-out folds": "scored before"}')
    saved = {p.name: p.read_bytes() for p in held_out.iterdir()}
    images = pd.read_parquet(trained_ws.images_parquet).head(20)
    test = tmp_path / "test"
    for rel in images["path"]:
        (test / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(trained_ws.root / rel, test / rel)
    images.to_parquet(test / "fresh places.parquet")
    shutil.rmtree(trained_ws.images_dir)  # the paths must resolve against the test set
    result = run_eval(
        trained_ws, EvalOptions(images=test / "fresh places.parquet", workers=0, device="cpu")
    )
    assert result.metrics.images == 20 * 3  # every fold scores the whole test set
    assert result.metrics.test_set.endswith("fresh places.parquet")
    assert result.folder == held_out.parent / "eval-images-fresh_places"
    assert (result.folder / "metrics.json").is_file()
    # The held-out folds' evaluation is still there, byte for byte.
    assert {p.name: p.read_bytes() for p in held_out.iterdir()} == saved


def test_bad_eval_input_is_one_line(trained_ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no run named 'nope'.*tiny"):
        run_eval(trained_ws, EvalOptions(run="nope"))
    with pytest.raises(InputError, match="geotag train"):
        run_eval(Workspace(tmp_path / "empty"), OPTIONS)
    config_path = trained_ws.run_dir("tiny") / "config.json"
    config = json.loads(config_path.read_text())
    config["geotag_version"] = "99.0.0"
    config_path.write_text(json.dumps(config))
    with pytest.raises(DataError, match="another major version"):
        run_eval(trained_ws, OPTIONS)


def test_cli_eval_prints_headline_with_chance(trained_ws: Workspace) -> None:
    result = CliRunner().invoke(
        app, ["eval", "-w", str(trained_ws.root), "--workers", "0", "--mask", "top:0.2"]
    )
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output and "chance" in result.output and "median km" in result.output
    bad = CliRunner().invoke(app, ["eval", "-w", str(trained_ws.root), "--mask", "middle:0.2"])
    assert bad.exit_code == 1 and bad.output.startswith("Error:")


class CountingProgress:
    """Records every task the library starts and the steps it reports."""

    def __init__(self) -> None:
        self.tasks: list[list[object]] = []

    def start(self, task: str, total: int | None) -> None:
        self.tasks.append([task, total, 0])

    def advance(self, steps: int = 1) -> None:
        self.tasks[-1][2] += steps  # type: ignore[operator]


def test_eval_and_predict_count_their_steps_to_the_total(trained_ws: Workspace) -> None:
    from geotag.stages.predict import PredictOptions, run_predict

    progress = CountingProgress()
    run_eval(trained_ws, OPTIONS, progress=progress)
    photos = sorted(trained_ws.images_dir.rglob("*.jpg"))[:5]
    run_predict(trained_ws, photos, PredictOptions(device="cpu", workers=0), progress=progress)
    counted = [t for t in progress.tasks if t[1] is not None]
    assert len(counted) >= 5  # three folds, reading the photos, predicting them
    for task, total, done in counted:
        assert done == total and total > 0, task


def test_eval_reports_baselines_points_in_region_and_unseen_cells(
    trained_ws: Workspace,
) -> None:
    # Put every image of one cell in fold 0: fold 0's model never saw that cell.
    folds_path = trained_ws.run_dir("tiny") / "folds.csv"
    folds = pd.read_csv(folds_path, dtype={"path": str, "group": str}, keep_default_na=False)
    images = pd.read_parquet(trained_ws.images_parquet)[["path", "cell_id"]]
    folds = folds.merge(images, on="path")
    chosen = folds["cell_id"].value_counts().index[0]
    folds.loc[folds["cell_id"] == chosen, "fold"] = 0
    folds[["path", "group", "fold"]].to_csv(folds_path, index=False)

    result = run_eval(trained_ws, OPTIONS)
    predictions = pd.read_parquet(result.folder / "predictions.parquet")
    for fold, scores in result.metrics.per_image.per_fold.items():
        held = folds[folds["fold"] == int(fold)]
        trained_cells = set(folds.loc[folds["fold"] != int(fold), "cell_id"])
        unseen = ~held["cell_id"].isin(trained_cells)
        assert scores.unseen_cell == int(unseen.sum())
        rows = predictions[predictions["fold"] == int(fold)]
        seen_rows = rows[rows["true_cell"].isin(trained_cells)]
        assert scores.top1_seen == pytest.approx(seen_rows["correct"].mean())
        assert scores.median_km_seen == pytest.approx(seen_rows["error_km"].median())
        assert scores.baselines is not None
        assert 0.0 <= scores.baselines.majority_top1 <= 1.0
        assert scores.baselines.mean_location_median_km > 0
        assert 0.0 <= scores.predictors["top_cell"]["inside_region"] <= 1.0
    fold0 = result.metrics.per_image.per_fold["0"]
    assert fold0.unseen_cell >= int((folds["cell_id"] == chosen).sum())
    cli = CliRunner().invoke(app, ["eval", "-w", str(trained_ws.root), *CLI_KW])
    assert cli.exit_code == 0, cli.output
    assert "majority" in cli.output and "centre" in cli.output
    total = sum(int(s.unseen_cell or 0) for s in result.metrics.per_image.per_fold.values())
    said = " ".join(cli.output.split())
    assert f"{total:,} held-out image(s) are in cells with no training image" in said


def test_the_headline_predictor_is_the_one_chosen_in_training(trained_ws: Workspace) -> None:
    from geotag.train.runs import open_run

    declared = open_run(trained_ws, "tiny").config.predictor
    assert declared in ("top_cell", "weighted", "knn", "refined")
    result = run_eval(trained_ws, OPTIONS)
    assert result.metrics.headline == declared
    assert result.metrics.headline_chosen_on == "inner validation split"
    assert result.metrics.checkpoint_chosen_on == "inner validation split"
    assert {f.headline for f in result.metrics.per_image.per_fold.values()} == {declared}
    predictions = pd.read_parquet(result.folder / "predictions.parquet")
    assert (predictions["predictor"] == declared).all()
    for name in ("top_cell", "weighted", "knn", "refined"):
        assert {f"pred_lat_{name}", f"pred_lon_{name}", f"error_km_{name}"} <= set(predictions)
    np.testing.assert_array_equal(predictions["error_km"], predictions[f"error_km_{declared}"])


def test_a_run_from_before_the_inner_split_is_flagged(trained_ws: Workspace) -> None:
    config_path = trained_ws.run_dir("tiny") / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("val_fraction", "predictor"):
        config.pop(key)
    config_path.write_text(json.dumps(config))
    result = run_eval(trained_ws, OPTIONS)
    assert result.metrics.checkpoint_chosen_on == "test folds"
    assert result.metrics.headline_chosen_on == "test folds"
    cli = CliRunner().invoke(app, ["eval", "-w", str(trained_ws.root), *CLI_KW])
    assert cli.exit_code == 0, cli.output
    assert "these figures are optimistic" in " ".join(cli.output.split())
