"""Doubt through the stages (issue #17): train calibrates each fold on its inner validation
split alone; eval measures the calibration on the held-out photos and writes what it
measured, row by row, so it can be recomputed; predict answers a region, a confidence and
"not sure"; a run from before calibration still evaluates and predicts, and says so."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import shape
from typer.testing import CliRunner

from geotag.cli import app
from geotag.dataset import image_groups
from geotag.doubt import calibration, conformal, temperature
from geotag.doubt.confidence import CONFIDENCE_SCORES, choose_score
from geotag.errors import DataError, InputError
from geotag.evaluate.inference import infer
from geotag.evaluate.metrics import fuse_by_group
from geotag.evaluate.summary import EvalMetrics
from geotag.gridfile import load_grid
from geotag.stages.evaluate import EvalOptions, run_eval
from geotag.stages.predict import PredictOptions, run_predict
from geotag.stages.train import TrainOptions, run_train
from geotag.train.runs import open_run, read_config, write_config
from geotag.workspace import Workspace

EVAL = EvalOptions(run="tiny", device="cpu", workers=0)
# The conftest's run "tiny", as it was trained.
TINY = TrainOptions(
    model="resnet10t", pretrained=False, image_size=32, epochs=2, batch_size=32, lr=2e-3,
    folds=3, fold="all", workers=0, device="cpu", name="tiny",
)  # fmt: skip


def _photos(ws: Workspace, count: int = 6) -> list:
    return sorted((ws.root / "images").rglob("*.jpg"))[:count]


def test_each_fold_is_calibrated_on_its_inner_split_alone(trained_ws: Workspace) -> None:
    """The stored temperature and scores are those of the fold's inner validation split,
    recomputed here from inner_val.csv: the held-out fold plays no part."""
    run = open_run(trained_ws, "tiny")
    images = pd.read_parquet(trained_ws.images_parquet)
    for fold in run.trained_folds():
        stored = calibration.read(run.calibration(fold))
        assert stored is not None
        paths = pd.read_csv(run.inner_val(fold))["path"].astype(str)
        frame = images.set_index("path").loc[paths].reset_index()
        done = infer(
            [run.build_model(fold)],
            trained_ws.root,
            [(p,) for p in paths],
            run.preprocessing,
            workers=0,
        )
        labels = run.fold_classes(fold).index_of(frame["cell_id"])
        t = temperature.fit_temperature(done.probs, labels)
        assert stored.per_image.n == len(paths)
        assert stored.per_image.temperature == pytest.approx(t, rel=1e-3)
        recomputed = np.sort(conformal.scores(temperature.scale(done.probs, t), labels))
        assert np.allclose(stored.per_image.scores, recomputed, atol=1e-6)
        fused, _, first = fuse_by_group(done.probs, image_groups(frame).to_numpy())
        assert stored.per_location.n == len(fused) < len(paths)
        t_fused = temperature.fit_temperature(fused, labels[first])
        assert stored.per_location.temperature == pytest.approx(t_fused, rel=1e-3)
        # None of the fold's held-out images was calibrated on.
        held = pd.read_csv(run.folds_path)
        assert not set(paths) & set(held.loc[held["fold"] == fold, "path"])
    chosen = run.config.confidence_score
    selective = [
        calibration.read(run.calibration(f)).per_image.selective  # type: ignore[union-attr]
        for f in run.trained_folds()
    ]
    assert chosen in CONFIDENCE_SCORES and chosen == choose_score(selective)


def test_eval_measures_coverage_area_and_calibration_that_can_be_recomputed(
    trained_ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_eval(trained_ws, EVAL)
    metrics = EvalMetrics.read(result.folder / "metrics.json")
    predictions = pd.read_parquet(result.folder / "predictions.parquet")
    grid = load_grid(trained_ws)
    area = dict(zip(grid.cells["cell_id"], grid.cells["area_km2"], strict=True))
    covered = [
        t in cells
        for t, cells in zip(predictions["true_cell"], predictions["region_cells"], strict=True)
    ]
    assert predictions["covered"].tolist() == covered
    summed = [sum(area[c] for c in cells) for cells in predictions["region_cells"]]
    assert np.allclose(predictions["region_km2"], summed)
    for fold, rows in predictions.groupby("fold"):
        doubt = metrics.per_image.per_fold[str(fold)].doubt
        assert doubt is not None
        assert doubt.coverage == pytest.approx(rows["covered"].mean())
        assert doubt.region_km2_mean == pytest.approx(rows["region_km2"].mean())
        assert doubt.target == 0.9 and doubt.curve["0.9"].coverage == pytest.approx(doubt.coverage)
        # The range a valid calibration lands in, from the rows: photos of one place count
        # as fewer independent ones.
        effect = conformal.design_effect(rows["covered"].to_numpy(), rows["group"].to_numpy())
        assert doubt.design_effect == pytest.approx(effect)
        assert (doubt.coverage_low, doubt.coverage_high) == pytest.approx(
            conformal.coverage_range(doubt.calibration_n / effect, len(rows) / effect, 0.9)
        )
        # Every region holds its photo's most probable cell.
        assert all(
            p[0] in cells for p, cells in zip(rows["pred_cells"], rows["region_cells"], strict=True)
        )
        assert metrics.per_location.per_fold[str(fold)].doubt is not None
    curve = metrics.per_image.mean.doubt.curve  # type: ignore[union-attr]
    coverages = [curve[k].coverage for k in sorted(curve, key=float)]
    assert coverages == sorted(coverages)  # a larger target never covers less
    assert metrics.confidence_score == open_run(trained_ws, "tiny").config.confidence_score
    for name in ("reliability.png", "coverage_curve.png", "selective_curve.png"):
        assert (result.folder / name).stat().st_size > 10_000
    by_cell = pd.read_csv(result.folder / "coverage_by_cell.csv")
    assert by_cell["images"].sum() == len(predictions)
    assert 0.0 <= predictions["confidence"].min() <= predictions["confidence"].max() <= 1.0
    _coverage_ranges_are_printed_and_a_fold_outside_is_warned(metrics, capsys)


def _coverage_ranges_are_printed_and_a_fold_outside_is_warned(
    metrics: EvalMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    from geotag.cli.evaluate import _print_coverage_ranges

    capsys.readouterr()
    _print_coverage_ranges(metrics)
    shown = capsys.readouterr()
    out = " ".join(shown.out.split())  # rich wraps lines at the terminal's width
    first = metrics.per_location.per_fold["0"].doubt
    assert first is not None and first.coverage_low is not None
    assert "Coverage per image: fold 0" in out and "Coverage per location" in out
    assert f"({first.coverage_low:.0%}-{first.coverage_high:.0%})" in out
    assert "Warning" not in shown.err
    # A fold whose coverage fell below what its calibration allows is warned about.
    low = replace(first, coverage=first.coverage_low - 0.05)
    folds = {**metrics.per_location.per_fold}
    folds["0"] = replace(folds["0"], doubt=low)
    _print_coverage_ranges(
        replace(metrics, per_location=replace(metrics.per_location, per_fold=folds))
    )
    warned = " ".join(capsys.readouterr().err.split())
    assert "fold 0's coverage per location" in warned and "did not resemble" in warned


def test_a_lower_target_gives_smaller_regions_in_eval_and_predict(trained_ws: Workspace) -> None:
    low = EvalMetrics.read(
        run_eval(trained_ws, EvalOptions(**{**EVAL.__dict__, "coverage": 0.5})).folder
        / "metrics.json"
    )
    high = EvalMetrics.read(run_eval(trained_ws, EVAL).folder / "metrics.json")
    assert low.per_image.mean.doubt.region_km2_mean < high.per_image.mean.doubt.region_km2_mean  # type: ignore[union-attr]
    photos = _photos(trained_ws)
    at = {
        c: run_predict(
            trained_ws, photos, PredictOptions(run="tiny", device="cpu", workers=0, coverage=c)
        )
        for c in (0.5, 0.9)
    }
    for small, large in zip(at[0.5].predictions, at[0.9].predictions, strict=True):
        assert set(small.doubt.cells) <= set(large.doubt.cells)  # type: ignore[union-attr,arg-type]


def test_predict_answers_a_region_a_confidence_and_not_sure(trained_ws: Workspace) -> None:
    photos = _photos(trained_ws)
    plain = run_predict(trained_ws, photos, PredictOptions(run="tiny", device="cpu", workers=0))
    grid = load_grid(trained_ws)
    area = dict(zip(grid.cells["cell_id"], grid.cells["area_km2"], strict=True))
    for prediction in plain.predictions:
        record = json.loads(json.dumps(prediction.to_json()))
        assert record["answer"] == "point" and record["coverage"] == 0.9
        assert 0.0 <= record["confidence"] <= 1.0
        region = shape(record["region"])
        assert region.is_valid and record["region"]["type"] == "MultiPolygon"
        assert record["region_km2"] == pytest.approx(
            sum(area[c] for c in record["region_cells"]), rel=1e-6
        )
        assert prediction.top_k[0].cell_id in record["region_cells"]
    confidences = sorted(p.doubt.confidence for p in plain.predictions)  # type: ignore[union-attr]
    middle = (confidences[1] + confidences[-1]) / 2 if confidences[-1] > confidences[1] else 1.01
    if middle > 1:
        pytest.skip("every photo had the same confidence")
    unsure = run_predict(
        trained_ws,
        photos,
        PredictOptions(run="tiny", device="cpu", workers=0, min_confidence=middle),
    )
    for before, after in zip(plain.predictions, unsure.predictions, strict=True):
        record = after.to_json()
        sure = before.doubt.confidence >= middle  # type: ignore[union-attr]
        assert record["answer"] == ("point" if sure else "not sure")
        assert (record["lat"] is None) == (not sure)
        assert record["region_km2"] == before.to_json()["region_km2"]


def test_fused_views_are_answered_with_the_places_calibration(trained_ws: Workspace) -> None:
    photos = _photos(trained_ws, 4)
    fused = run_predict(
        trained_ws, photos, PredictOptions(run="tiny", device="cpu", workers=0, fuse=True)
    )
    assert len(fused.predictions) == 1 and fused.predictions[0].doubt is not None
    run = open_run(trained_ws, "tiny")
    stored = calibration.read(run.calibration(run.trained_folds()[0]))
    assert stored is not None and stored.per_location.temperature != stored.per_image.temperature


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"coverage": 1.0}, "--coverage"),
        ({"coverage": 0.0}, "--coverage"),
        ({"min_confidence": 1.5}, "--min-confidence"),
        ({"min_confidence": math.nan}, "--min-confidence"),
    ],
)
def test_bad_targets_are_one_line(trained_ws: Workspace, options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        run_predict(trained_ws, _photos(trained_ws, 1), PredictOptions(run="tiny", **options))
    if "coverage" in options:
        with pytest.raises(InputError, match=message):
            run_eval(trained_ws, EvalOptions(run="tiny", **options))


def test_a_run_from_before_calibration_evaluates_and_predicts_and_says_so(
    trained_ws: Workspace,
) -> None:
    run = open_run(trained_ws, "tiny")
    for fold in run.trained_folds():
        run.calibration(fold).unlink()
    write_config(run, replace(run.config, confidence_score=None))
    metrics = run_eval(trained_ws, EVAL).metrics
    assert metrics.per_image.mean.doubt is None and metrics.confidence_score is None
    result = run_predict(
        trained_ws, _photos(trained_ws, 2), PredictOptions(run="tiny", device="cpu", workers=0)
    )
    assert result.caveat is not None and "before geotag calibrated" in result.caveat
    assert all(p.doubt is None and "region" not in p.to_json() for p in result.predictions)
    with pytest.raises(InputError, match="--min-confidence needs a calibrated run"):
        run_predict(
            trained_ws, _photos(trained_ws, 1), PredictOptions(run="tiny", min_confidence=0.5)
        )
    assert read_config(run).confidence_score is None
    # A finished run resumed is calibrated, without training again, as it would have been.
    before = {f: run.weights(f).read_bytes() for f in run.trained_folds()}
    run_train(trained_ws, replace(TINY, resume=True))
    assert {f: run.weights(f).read_bytes() for f in run.trained_folds()} == before
    assert read_config(run).confidence_score is not None
    assert run_eval(trained_ws, EVAL).metrics.per_image.mean.doubt is not None


def test_a_damaged_calibration_is_one_line_naming_the_field(trained_ws: Workspace) -> None:
    run = open_run(trained_ws, "tiny")
    path = run.calibration(run.trained_folds()[0])
    data = json.loads(path.read_text())
    data["per_image"]["temperature"] = -1.0
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"per_image\.temperature"):
        run_eval(trained_ws, EVAL)
    data["per_image"]["temperature"] = 1.0
    data["per_image"]["scores"] = list(reversed(data["per_image"]["scores"]))
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"per_image\.scores"):
        run_predict(
            trained_ws, _photos(trained_ws, 1), PredictOptions(run="tiny", device="cpu", workers=0)
        )


def test_cli_predict_prints_the_region_and_refuses_a_bad_target(trained_ws: Workspace) -> None:
    photo = str(_photos(trained_ws, 1)[0])
    runner = CliRunner()

    def predict(*options: str) -> Any:
        command = ["predict", "-w", str(trained_ws.root), "--run", "tiny", "--device", "cpu"]
        return runner.invoke(app, [*command, photo, *options])

    result = predict("--min-confidence", "1.0")
    assert result.exit_code == 0, result.output
    assert "90% region" in result.output and "km²" in result.output
    record = json.loads(predict("--json", "--coverage", "0.6").stdout.strip().splitlines()[-1])
    assert record["coverage"] == 0.6 and "region" in record
    bad = predict("--coverage", "1.5")
    assert bad.exit_code != 0 and "--coverage" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(
        app, ["eval", "-w", str(trained_ws.root), "--run", "tiny", "--coverage", "0"]
    )
    assert bad.exit_code != 0 and "--coverage" in bad.output


def test_a_target_beyond_the_calibration_set_says_so_and_answers_every_cell(
    trained_ws: Workspace,
) -> None:
    result = run_predict(
        trained_ws, _photos(trained_ws, 2),
        PredictOptions(run="tiny", device="cpu", workers=0, coverage=0.999),
    )  # fmt: skip
    assert result.caveat is not None and "needs at least 999 calibration photos" in result.caveat
    classes = set(open_run(trained_ws, "tiny").config.classes)
    assert all(set(p.doubt.cells) == classes for p in result.predictions)  # type: ignore[union-attr,arg-type]


def test_regions_come_from_the_runs_own_cells_once_the_grid_has_changed(
    trained_ws: Workspace,
) -> None:
    photos = _photos(trained_ws, 3)
    options = PredictOptions(run="tiny", device="cpu", workers=0)
    before = run_predict(trained_ws, photos, options).predictions
    settings = trained_ws.settings_path.read_text()
    grid_id = str(trained_ws.stage_settings("grid")["grid_id"])
    trained_ws.settings_path.write_text(settings.replace(grid_id, "a-grid-made-since"))
    # The new grid's cells are other cells: regions drawn in them would change.
    cells = gpd.read_parquet(trained_ws.grid_parquet)
    cells.assign(area_km2=cells["area_km2"] * 2).to_parquet(trained_ws.grid_parquet)
    after = run_predict(trained_ws, photos, options).predictions
    for old, new in zip(before, after, strict=True):
        assert new.doubt.cells == old.doubt.cells  # type: ignore[union-attr]
        assert new.doubt.region_km2 == pytest.approx(old.doubt.region_km2)  # type: ignore[union-attr]
