"""`geotag train` end to end on simulator images: learning, folds, resume, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geotag.doubt import calibration
from geotag.doubt.conformal import coverage_range
from geotag.errors import DataError, GeotagError, InputError
from geotag.stages.train import TrainOptions, _calibration_spread, run_train
from geotag.train.checkpoint import LAST, load_last
from geotag.train.runs import open_run
from geotag.workspace import Workspace
from tests.conftest import snapshot

TINY = TrainOptions(
    model="resnet10t",
    pretrained=False,
    image_size=32,
    epochs=1,
    batch_size=32,
    lr=2e-3,
    folds=5,
    workers=0,
    device="cpu",
)


def history(ws: Workspace, name: str, fold: int = 0) -> pd.DataFrame:
    return pd.read_csv(ws.run_dir(name) / f"fold-{fold}" / "history.csv")


def test_learns_beyond_chance_on_held_out_panoramas(train_ws: Workspace) -> None:
    options = replace(TINY, image_size=48, epochs=4, workers=1, name="learn")
    result = run_train(train_ws, options)
    rows = history(train_ws, "learn")
    assert list(rows.columns) == [
        "epoch", "train_loss", "val_loss", "val_top1", "val_top5", "val_median_km", "lr",
        "images_per_s", "val_split",
    ]  # fmt: skip
    assert (rows["val_split"] == "inner").all()  # validation is never the outer fold
    assert rows["train_loss"].iloc[-1] < rows["train_loss"].iloc[0]
    chance = 1 / result.classes
    assert result.classes >= 15
    assert rows["val_top1"].max() > 3 * chance
    outcome = result.outcomes[0]
    assert rows["val_top1"].iloc[outcome.best_epoch - 1] == rows["val_top1"].max()


def test_folds_never_split_a_place_and_cover_every_image(train_ws: Workspace) -> None:
    run_train(train_ws, replace(TINY, name="folds"))
    folds = pd.read_csv(train_ws.run_dir("folds") / "folds.csv")
    images = pd.read_parquet(train_ws.images_parquet)
    assert sorted(folds["path"]) == sorted(images["path"])
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    config = json.loads((train_ws.run_dir("folds") / "config.json").read_text())
    cells = sorted(images["cell_id"].unique())
    assert config["classes"] == cells and len(config["centre_lat"]) == len(cells)


def test_spatial_split_keeps_neighbours_together(train_ws: Workspace) -> None:
    run_train(train_ws, replace(TINY, name="spatial", split="spatial"))
    folds = pd.read_csv(train_ws.run_dir("spatial") / "folds.csv")
    images = pd.read_parquet(train_ws.images_parquet).merge(folds, on="path")
    rounded = images.assign(lat=images["lat"].round(1), lon=images["lon"].round(1))
    # The panoramas of one block share a fold; so do panoramas within ~10 km of each other,
    # but for the few astride a block's edge, which the buffer keeps out of training.
    assert (images.groupby("group_y")["fold"].nunique() == 1).all()
    assert (rounded.groupby(["lat", "lon"])["fold"].nunique() == 1).mean() > 0.98
    assert images["group_y"].nunique() < images["pano_id"].nunique()


def test_resume_ends_where_an_uninterrupted_run_ends(train_ws: Workspace) -> None:
    options = replace(TINY, epochs=3)
    run_train(train_ws, replace(options, name="straight"))

    def stop_after_first_epoch(result: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(train_ws, replace(options, name="halted"), on_epoch=stop_after_first_epoch)
    assert len(history(train_ws, "halted")) == 1
    assert load_last(train_ws.run_dir("halted") / "fold-0")["epoch"] == 1
    run_train(train_ws, replace(TINY, name="halted", resume=True))
    pd.testing.assert_frame_equal(
        history(train_ws, "halted").drop(columns="images_per_s"),
        history(train_ws, "straight").drop(columns="images_per_s"),
    )
    straight = open_run(train_ws, "straight").build_model(0).state_dict()
    halted = open_run(train_ws, "halted").build_model(0).state_dict()
    assert all(torch.equal(straight[k], halted[k]) for k in straight)
    assert open_run(train_ws, "halted").config.predictor is not None
    # A run started before the inner validation split cannot go on the new way.
    config_path = train_ws.run_dir("halted") / "config.json"
    config = json.loads(config_path.read_text())
    del config["val_fraction"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(InputError, match="started before geotag chose its epochs"):
        run_train(train_ws, replace(TINY, name="halted", resume=True))


def test_checkpoint_round_trip_and_safe_loading(train_ws: Workspace) -> None:
    run_train(train_ws, replace(TINY, name="ckpt"))
    folder = train_ws.run_dir("ckpt") / "fold-0"
    state = torch.load(folder / LAST, weights_only=True)  # no pickled objects inside
    assert state["epoch"] == 1 and set(state) >= {"model", "optimizer", "scheduler", "rng"}
    model = open_run(train_ws, "ckpt").build_model(0)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state["model"].items())
    (folder / LAST).write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        load_last(folder)


def test_config_drives_preprocessing_in_a_fresh_process(
    train_ws: Workspace, tmp_path: Path
) -> None:
    run_train(train_ws, replace(TINY, name="fresh", image_size=40, mask_bottom=0.25))
    image = train_ws.root / pd.read_parquet(train_ws.images_parquet)["path"].iloc[0]
    script = f"""
import json, sys, torch
from geotag.workspace import Workspace
from geotag.train.runs import open_run
from geotag.train.data import build_transform, load_image
run = open_run(Workspace({str(train_ws.root)!r}))
pre = run.preprocessing
x = build_transform(pre, False)(load_image({str(image)!r}, pre))
with torch.no_grad():
    logits = run.build_model(0)(x[None])[0]
json.dump({{"size": list(x.shape), "bottom": float(x[:, 32:, :].abs().max()),
           "logits": logits.tolist(), "mask": str(pre.mask)}}, sys.stdout)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    fresh = json.loads(out.stdout)
    assert fresh["size"] == [3, 40, 40] and fresh["mask"] == "bottom:0.25"
    assert fresh["bottom"] < 0.03  # the masked band is the mean colour
    run = open_run(train_ws, "fresh")
    from geotag.train.data import build_transform, load_image

    x = build_transform(run.preprocessing, False)(load_image(image, run.preprocessing))
    with torch.no_grad():
        here = run.build_model(0)(x[None])[0]
    np.testing.assert_allclose(fresh["logits"], here.numpy(), rtol=1e-5, atol=1e-5)


def test_haversine_smoothing_and_multi_view_train(train_ws: Workspace) -> None:
    smooth = run_train(train_ws, replace(TINY, name="smooth", label_smoothing="haversine"))
    assert np.isfinite(history(train_ws, "smooth")["train_loss"]).all()
    # The temperature follows the cells (500 km hexagons here) unless one is given.
    area = train_ws.stage_settings("grid")["cell_area_km2"]
    config = open_run(train_ws, "smooth").config
    assert config.tau_km == pytest.approx(0.32 * area**0.5)
    assert config.arguments["tau_km"] is None  # --resume resolves it again
    notices: list[str] = []
    run_train(train_ws, replace(TINY, name="hot", label_smoothing="haversine", tau_km=400.0,
                                epochs=1), on_notice=notices.append)  # fmt: skip
    assert any("--tau-km 400 is large against cells of 500 km" in n for n in notices)
    assert open_run(train_ws, "hot").config.tau_km == 400.0
    # Its folds calibrated on a handful of places: training says what that costs.
    hot = open_run(train_ws, "hot")
    fewest = min(calibration.read(hot.calibration(f)).per_location.n for f in hot.trained_folds())
    assert any(
        f"as few as {fewest:,} place{'' if fewest == 1 else 's'} a fold" in n for n in notices
    )
    assert _calibration_spread(hot, [0]) is not None
    # The demo's 77 places a fold get the notice, with the law's range; 500 are tight
    # enough (~0.875-0.925); none calibrated, nothing to say.
    low, high = coverage_range(77, math.inf, 0.9)
    assert f"between {low:.0%} and {high:.0%}" in (calibration.spread_notice(77) or "")
    assert calibration.spread_notice(500) is None and calibration.spread_notice(0) is None
    assert "every cell" in (calibration.spread_notice(3) or "")
    assert smooth.samples == len(pd.read_parquet(train_ws.images_parquet))
    multi = run_train(train_ws, replace(TINY, name="multi", views=2, fusion="concat"))
    assert multi.samples == pd.read_parquet(train_ws.images_parquet)["pano_id"].nunique()
    assert open_run(train_ws, "multi").views == 2


def test_a_few_bad_images_are_skipped_too_many_stop_the_run(train_ws: Workspace) -> None:
    paths = pd.read_parquet(train_ws.images_parquet)["path"].tolist()
    (train_ws.root / paths[0]).write_bytes(b"not a jpeg")
    (train_ws.root / paths[1]).unlink()
    notices: list[str] = []
    result = run_train(train_ws, replace(TINY, name="few"), on_notice=notices.append)
    assert result.bad_images == 2 and "2 image(s) missing or unreadable" in notices[0]
    for path in paths[2 : len(paths) // 10]:
        (train_ws.root / path).write_bytes(b"")
    with pytest.raises(DataError, match="missing or unreadable"):
        run_train(train_ws, replace(TINY, name="many"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "resnet1O"}, "did you mean"),
        ({"fold": "7"}, "--fold must lie in 0..4"),
        ({"mask_bottom": 0.95}, "--mask-bottom"),
        ({"batch_size": 0}, "--batch-size"),
        ({"weights": Path("/nonexistent/w.safetensors")}, "--weights"),
        ({"min_images_per_cell": 10_000}, "at least two cells"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(
    train_ws: Workspace, change: dict[str, object], message: str
) -> None:
    before = snapshot(train_ws.root)
    with pytest.raises(GeotagError, match=message) as info:
        run_train(train_ws, replace(TINY, name="bad", **change))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert snapshot(train_ws.root) == before


def test_existing_run_needs_resume_and_missing_images_say_what_to_run(
    train_ws: Workspace, tmp_path: Path
) -> None:
    run_train(train_ws, replace(TINY, name="once"))
    with pytest.raises(InputError, match="exists; pass --resume"):
        run_train(train_ws, replace(TINY, name="once"))
    empty = Workspace(tmp_path / "empty")
    with pytest.raises(GeotagError, match="geotag scrape"):
        run_train(empty, TINY)


def test_unreadable_weights_file_is_one_line(train_ws: Workspace, tmp_path: Path) -> None:
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(GeotagError, match=r"broken\.safetensors"):
        run_train(train_ws, replace(TINY, name="w", weights=weights))


def test_fold_all_trains_every_fold(train_ws: Workspace) -> None:
    result = run_train(train_ws, replace(TINY, name="cv", folds=2, fold="all"))
    assert sorted(result.outcomes) == [0, 1]
    run = open_run(train_ws, "cv")
    assert run.trained_folds() == [0, 1]


def test_cli_train_prints_epochs_and_summary(train_ws: Workspace) -> None:
    from typer.testing import CliRunner

    from geotag.cli import app

    args = ["train", "-w", str(train_ws.root), "--model", "resnet10t", "--no-pretrained"]
    args += ["--image-size", "32", "--epochs", "1", "--folds", "5", "--workers", "0"]
    result = CliRunner().invoke(app, [*args, "--name", "cli"])
    assert result.exit_code == 0, result.output
    assert "fold 0 epoch 1/1" in result.output and "chance" in result.output
    again = CliRunner().invoke(app, [*args, "--name", "cli"])
    assert again.exit_code == 1
    assert again.output.strip().startswith("Error:") and "--resume" in again.output
    assert "Traceback" not in again.output


def test_patience_stops_a_run_that_no_longer_improves(tmp_path: Path) -> None:
    from geotag.train.classes import ClassMap
    from geotag.train.distributed import Ranks
    from geotag.train.loop import FoldData, FoldTrainer, LoopSettings

    data = FoldData(train=[None] * 4, val=[None], train_sampler=None, train_latlon=None,
                    val_latlon=None)  # type: ignore[arg-type]  # fmt: skip
    trainer = FoldTrainer(
        torch.nn.Linear(2, 3), data, ClassMap((0, 1, 2), (0.0, 1.0, 2.0), (0.0, 1.0, 2.0)),
        LoopSettings(epochs=10, lr=1e-3, patience=2), torch.device("cpu"), Ranks(), tmp_path,
        0, {},
    )  # fmt: skip
    top1 = iter([0.1, 0.3, 0.2, 0.3, 0.9, 0.95])  # a tie is no gain
    trainer._train_epoch = lambda epoch, progress: (1.0, 10.0, 0)  # type: ignore[method-assign]
    trainer._validate = lambda epoch, progress: (1.0, next(top1), 0.5, 100.0, 0)  # type: ignore[method-assign]
    outcome = trainer.run()
    assert outcome.stopped_early and outcome.best_epoch == 2
    assert [row["val_top1"] for row in outcome.history] == [0.1, 0.3, 0.2, 0.3]
    assert (tmp_path / "model.safetensors").is_file()


def test_the_outer_fold_is_never_opened_while_training(
    train_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    opened: list[str] = []
    original = Image.open

    def recording_open(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(fp))
        return original(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", recording_open)
    run_train(train_ws, replace(TINY, name="sealed", fold="1", epochs=2))
    folds = pd.read_csv(train_ws.run_dir("sealed") / "folds.csv")
    outer = {str(train_ws.root / p) for p in folds.loc[folds["fold"] == 1, "path"]}
    inner_and_train = {str(train_ws.root / p) for p in folds.loc[folds["fold"] != 1, "path"]}
    assert opened, "the recorder saw the training images"
    assert set(opened) <= inner_and_train
    assert not outer & set(opened)


def test_choices_made_in_training_ignore_the_outer_folds_labels(train_ws: Workspace) -> None:
    options = replace(TINY, fold="0", epochs=3, patience=2)
    run_train(train_ws, replace(options, name="plain"))
    folds = pd.read_csv(train_ws.run_dir("plain") / "folds.csv")
    outer = set(folds.loc[folds["fold"] == 0, "path"])
    # Scramble where the outer fold's photos were taken. Folds are stratified by cell, so
    # the cells define the split itself and stay; every location moves (a permutation
    # within the fold): nothing chosen in training may change.
    images = pd.read_parquet(train_ws.images_parquet)
    rows = images.index[images["path"].isin(outer)]
    order = np.random.default_rng(1).permutation(rows)
    assert (images.loc[rows, "lat"].to_numpy() != images.loc[order, "lat"].to_numpy()).mean() > 0.9
    for column in ("lat", "lon"):
        images.loc[rows, column] = images.loc[order, column].to_numpy()
    images.to_parquet(train_ws.images_parquet)
    run_train(train_ws, replace(options, name="scrambled"))
    plain, scrambled = open_run(train_ws, "plain"), open_run(train_ws, "scrambled")
    assert plain.config.predictor is not None
    assert plain.config.predictor == scrambled.config.predictor
    pd.testing.assert_frame_equal(
        history(train_ws, "plain").drop(columns="images_per_s"),
        history(train_ws, "scrambled").drop(columns="images_per_s"),
    )
    from safetensors.torch import load_file

    best, best_scrambled = load_file(plain.weights(0)), load_file(scrambled.weights(0))
    assert best.keys() == best_scrambled.keys()
    assert all(torch.equal(best[k], best_scrambled[k]) for k in best)
    inner = json.loads(plain.inner_scores(0).read_text())
    assert set(inner["median_km"]) == {"top_cell", "weighted", "knn", "refined"}
    assert inner["images"] > 0
    # The retrieval settings, and the index itself, come from the inner splits only.
    assert plain.config.retrieval == scrambled.config.retrieval
    assert set(plain.config.retrieval) == {"0"}
    assert inner == json.loads(scrambled.inner_scores(0).read_text())
    from geotag.retrieval.index import LocationIndex

    index, index_scrambled = (LocationIndex.load(r.fold_dir(0)) for r in (plain, scrambled))
    assert index is not None and index_scrambled is not None
    assert np.array_equal(index.embeddings, index_scrambled.embeddings)
    indexed = {str(p) for p in index.path}
    assert indexed <= set(folds.loc[folds["fold"] != 0, "path"])  # training photos only
    assert len(indexed) > 0.8 * (len(folds) - len(outer)) * 0.9  # inner training, not less


def test_a_spatial_split_leaves_out_training_images_near_the_held_out_blocks(
    train_ws: Workspace,
) -> None:
    from geotag.geo.distance import haversine_km

    run_train(train_ws, replace(TINY, name="buffered", split="spatial", fold="2"))
    run = open_run(train_ws, "buffered")
    buffer_km = run.config.buffer_km
    side = train_ws.stage_settings("grid")["cell_area_km2"] ** 0.5
    assert buffer_km == pytest.approx(0.25 * side)
    folds = pd.read_csv(run.folds_path).merge(
        pd.read_parquet(train_ws.images_parquet)[["path", "lat", "lon"]], on="path"
    )
    held = folds[folds["fold"] == 2]
    others = folds[folds["fold"] != 2]
    lat, lon = others["lat"].to_numpy()[:, None], others["lon"].to_numpy()[:, None]
    distances = haversine_km(lat, lon, held["lat"].to_numpy()[None], held["lon"].to_numpy()[None])
    nearest = distances.min(axis=1)
    assert run.config.buffered["2"] == int((nearest <= buffer_km).sum()) > 0
    # Nothing the fold was validated on lies inside the buffer either.
    inner = set(pd.read_csv(run.inner_val(2))["path"])
    assert all(d > buffer_km for p, d in zip(others["path"], nearest, strict=True) if p in inner)
