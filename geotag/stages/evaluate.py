"""The ``eval`` stage: a trained run -> runs/<name>/eval/ (metrics, predictions, plots).

Each trained fold is scored on its own held-out images from folds.csv (or every fold on a
separate ``--images`` table); metrics per image and per location (the headings of one
place fused by averaging probabilities), per fold and as mean +/- std over folds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.errors import DataError, InputError
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from geotag.train.bands import Band
    from geotag.train.runs import Run

TOP_K = 5


@dataclass(frozen=True)
class EvalOptions:
    run: str | None = None
    images: Path | None = None  # a separate test set (images.parquet layout)
    mask: Band | None = None  # an extra band blanked in every image: the ablation
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    out: str | None = None  # folder name under the run; default eval or eval-<band>


@dataclass(frozen=True)
class EvalResult:
    run: str
    folder: Path
    metrics: dict[str, Any]
    files: tuple[Path, ...]
    seconds: float


def eval_folder_name(mask: Band | None) -> str:
    return "eval" if mask is None else f"eval-{mask.side}-{mask.fraction:g}"


def check_major_version(run: Run) -> None:
    """Refuse a run written by another major version of geotag: its files may differ."""
    from geotag import __version__

    theirs = str(run.config.get("geotag_version", "0"))
    if theirs.split(".")[0] != __version__.split(".")[0]:
        raise DataError(
            f"run {run.name} was trained with geotag {theirs}; this is geotag {__version__} "
            "(another major version): retrain it, or use that version"
        )


def held_out_sets(
    workspace: Workspace, run: Run, images_file: Path | None
) -> dict[int, pd.DataFrame]:
    """Per trained fold, the images it is scored on (images.parquet columns + ``fold``)."""
    import pandas as pd

    from geotag.dataset import conform, read_images
    from geotag.train.folds import read_folds
    from geotag.train.runs import FOLDS

    folds = run.trained_folds()
    if not folds:
        raise DataError(f"run {run.name} has no trained fold yet (no model.safetensors)")
    if images_file is not None:
        try:
            table = conform(pd.read_parquet(images_file))
        except FileNotFoundError:
            raise InputError(f"--images {images_file} does not exist") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read --images {images_file}: {exc}") from None
        if table.empty:
            raise InputError(f"--images {images_file} has no rows")
        return {fold: table.assign(fold=fold) for fold in folds}
    images = read_images(workspace)
    assignment = read_folds(run.folder / FOLDS)
    joined = assignment[["path", "fold"]].merge(images, on="path", how="inner")
    if len(joined) < len(assignment):
        raise DataError(
            f"{len(assignment) - len(joined):,} image(s) of folds.csv are gone from "
            "images.parquet; evaluate with --images, or retrain"
        )
    return {fold: joined[joined["fold"] == fold].reset_index(drop=True) for fold in folds}


def run_eval(
    workspace: Workspace, options: EvalOptions, *, progress: Progress | None = None
) -> EvalResult:
    import pandas as pd

    from geotag.dataset import image_groups
    from geotag.evaluate import metrics as m
    from geotag.evaluate.inference import class_probabilities
    from geotag.gridfile import load_grid
    from geotag.report import evaluation as plots
    from geotag.train.data import inference_workers
    from geotag.train.device import resolve_device
    from geotag.train.runs import open_run

    started = time.perf_counter()
    progress = progress or NullProgress()
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1; got {options.batch_size}")
    run = open_run(workspace, options.run)
    check_major_version(run)
    classes = run.classes
    centre_lat, centre_lon = classes.centres()
    cell_km = float(run.config.get("cell_km", 100.0))
    sets = held_out_sets(workspace, run, options.images)
    device = resolve_device(options.device)
    root = image_root(workspace, options.images, next(iter(sets.values())))
    per_image: dict[str, Any] = {}
    per_location: dict[str, Any] = {}
    rows: list[pd.DataFrame] = []
    all_true, all_pred = [], []
    unreadable = 0
    for fold, frame in sets.items():
        model = run.build_model(fold)
        groups = image_groups(frame)
        views, frame = _views(frame, groups.to_numpy(), run.views)
        probs, ok = class_probabilities(
            [model], root, views, run.preprocessing, blank=options.mask,
            batch_size=options.batch_size, device=device,
            workers=inference_workers(options.workers, len(views), device),
            progress=progress, task=f"fold {fold}: {len(views):,} images",
        )  # fmt: skip
        unreadable += int((~ok).sum())
        frame, probs = frame[ok].reset_index(drop=True), probs[ok]
        if frame.empty:
            raise DataError(f"none of fold {fold}'s held-out images could be read")
        true_class = classes.index_of(frame["cell_id"])
        true_lat, true_lon = frame["lat"].to_numpy(), frame["lon"].to_numpy()
        scored = m.score(probs, true_class, true_lat, true_lon, centre_lat, centre_lon, cell_km)
        per_image[str(fold)] = scored.metrics
        fused, _, first = m.fuse_by_group(probs, frame["_group"].to_numpy())
        located = m.score(
            fused, true_class[first], true_lat[first], true_lon[first], centre_lat,
            centre_lon, cell_km,
        )  # fmt: skip
        per_location[str(fold)] = located.metrics
        rows.append(_predictions(frame, fold, scored, classes.cell_ids))
        all_true.append(true_class)
        all_pred.append(probs.argmax(axis=1))

    image_summary = {**m.aggregate_folds(list(per_image.values())), "per_fold": per_image}
    metrics: dict[str, Any] = {
        "run": run.name,
        "model": run.architecture,
        "classes": len(classes),
        "chance_top1": 1.0 / len(classes),
        "mask": str(options.mask) if options.mask else None,
        "run_mask": str(run.preprocessing.mask) if run.preprocessing.mask else None,
        "test_set": str(options.images) if options.images else "held-out folds",
        "folds": sorted(sets),
        "images": int(sum(len(r) for r in rows)),
        "unreadable": unreadable,
        # The predicted point to trust: the better of the two on the folds' mean, per image.
        "headline": image_summary["headline"],
        "per_image": image_summary,
        "per_location": {
            **m.aggregate_folds(list(per_location.values())),
            "per_fold": per_location,
        },
    }

    out = run.folder / (options.out or eval_folder_name(options.mask))
    out.mkdir(parents=True, exist_ok=True)
    predictions = pd.concat(rows, ignore_index=True)
    files = _write_outputs(
        workspace, out, metrics, predictions, np.concatenate(all_true), np.concatenate(all_pred),
        classes.cell_ids, plots, m, load_grid(workspace),
    )  # fmt: skip
    return EvalResult(run.name, out, metrics, files, time.perf_counter() - started)


def image_root(workspace: Workspace, images_file: Path | None, frame: pd.DataFrame) -> Path:
    """Where relative image paths start: the workspace, or for a separate test set whose
    paths are not under the workspace, the folder of its table."""
    if images_file is None or (workspace.root / str(frame["path"].iloc[0])).exists():
        return workspace.root
    return Path(images_file).parent


def _views(
    frame: pd.DataFrame, groups: np.ndarray, n_views: int
) -> tuple[list[tuple[str, ...]], pd.DataFrame]:
    """Samples as the run was trained: single images, or the first V views of a place."""
    frame = frame.assign(_group=groups)
    if n_views == 1:
        return [(str(p),) for p in frame["path"]], frame.reset_index(drop=True)
    ordered = frame.sort_values(["_group", "heading", "path"])
    firsts = ordered.groupby("_group", sort=True).head(1).reset_index(drop=True)
    views = []
    for _, rows in ordered.groupby("_group", sort=True):
        paths = [str(p) for p in rows["path"]]
        views.append(tuple(paths[i % len(paths)] for i in range(n_views)))
    return views, firsts


def _predictions(
    frame: pd.DataFrame, fold: int, scored: Any, cell_ids: tuple[int, ...]
) -> pd.DataFrame:
    import pandas as pd

    order = scored.top_classes
    ids = np.asarray(cell_ids)
    best = scored.headline
    return pd.DataFrame(
        {
            "path": frame["path"].astype(str),
            "group": frame["_group"].astype(str),
            "fold": fold,
            "true_cell": frame["cell_id"].astype("int64"),
            "pred_cells": [list(map(int, ids[o])) for o in order],
            "pred_probs": [list(map(float, p)) for p in scored.top_probs],
            "true_lat": frame["lat"].to_numpy(),
            "true_lon": frame["lon"].to_numpy(),
            "pred_lat": scored.pred_lat[best],
            "pred_lon": scored.pred_lon[best],
            "error_km": scored.errors_km[best],
            "correct": ids[order[:, 0]] == frame["cell_id"].to_numpy(),
        }
    )


def _write_outputs(
    workspace: Workspace,
    out: Path,
    metrics: dict[str, Any],
    predictions: pd.DataFrame,
    true_class: np.ndarray,
    pred_class: np.ndarray,
    cell_ids: tuple[int, ...],
    plots: Any,
    m: Any,
    grid: Any,
) -> tuple[Path, ...]:
    import geopandas as gpd

    from geotag.atomic import atomic_path, write_text

    metrics_path = out / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    predictions_path = out / "predictions.parquet"
    with atomic_path(predictions_path) as tmp:
        predictions.to_parquet(tmp, index=False)
    known = true_class >= 0
    matrix = m.confusion(true_class[known], pred_class[known], len(cell_ids))
    plots.plot_confusion(
        matrix, list(cell_ids), out / "confusion_matrix.png", out / "confusion_matrix.csv"
    )
    per_cell = (
        predictions.groupby("true_cell")
        .agg(accuracy=("correct", "mean"), median_km=("error_km", "median"), n=("path", "size"))
        .reset_index()
        .rename(columns={"true_cell": "cell_id"})
    )
    region = (
        gpd.read_parquet(workspace.region_parquet) if workspace.region_parquet.exists() else None
    )
    plots.plot_accuracy_map(grid.cells, region, per_cell, out / "accuracy_map.png")
    curves = {
        "per image": m.distance_curve(predictions["error_km"].to_numpy()),
    }
    plots.plot_distance_curve(curves, out / "distance_curve.png")
    return (
        metrics_path,
        predictions_path,
        out / "confusion_matrix.csv",
        out / "confusion_matrix.png",
        out / "accuracy_map.png",
        out / "distance_curve.png",
    )
