"""The ``eval`` stage: a trained run -> runs/<name>/eval/ (metrics, predictions, plots).

Each trained fold is scored on its own held-out images from folds.csv (or every fold on a
separate ``--images`` table); metrics per image and per location (the headings of one
place fused by averaging probabilities), per fold and as mean +/- std over folds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotag.errors import DataError, InputError
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from geotag.evaluate.summary import EvalMetrics
    from geotag.train.bands import Band

TOP_K = 5


@dataclass(frozen=True)
class EvalOptions:
    run: str | None = None
    images: Path | None = None  # a separate test set (images.parquet layout)
    mask: Band | None = None  # an extra band blanked in every image: the ablation
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    coverage: float = 0.9  # the prediction regions' target (geotag.doubt.conformal)


@dataclass(frozen=True)
class EvalResult:
    run: str
    folder: Path
    metrics: EvalMetrics
    files: tuple[Path, ...]
    seconds: float


def run_eval(
    workspace: Workspace, options: EvalOptions, *, progress: Progress | None = None
) -> EvalResult:
    import numpy as np
    import pandas as pd

    from geotag import contracts
    from geotag.dataset import GROUP, group_views
    from geotag.doubt import calibration
    from geotag.doubt.conformal import check_coverage
    from geotag.evaluate import metrics as m
    from geotag.evaluate.doubt import fold_doubt, pooled_calibration
    from geotag.evaluate.held_out import held_out_sets, image_root, training_sets
    from geotag.evaluate.inference import infer
    from geotag.evaluate.summary import EvalMetrics
    from geotag.geo.locate import CellLocator
    from geotag.gridfile import load_grid
    from geotag.retrieval.predictors import fold_retrieval
    from geotag.retrieval.search import make_search
    from geotag.train.data import inference_workers
    from geotag.train.device import resolve_device
    from geotag.train.runs import open_run

    started = time.perf_counter()
    progress = progress or NullProgress()
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1; got {options.batch_size}")
    check_coverage(options.coverage, "--coverage")
    run = open_run(workspace, options.run)
    run.check_version()
    # Calibrated doubt needs every fold's calibration (a run from before has none).
    calibrations = {fold: calibration.read(run.calibration(fold)) for fold in run.trained_folds()}
    kind = run.config.confidence_score
    doubtful = kind is not None and all(c is not None for c in calibrations.values())
    cell_km = run.config.cell_km
    near_km = m.WEIGHTED_NEAR_CELLS * cell_km
    # The predicted point was chosen on the inner splits at training time; a run from
    # before then has none, and the better one here is taken (and said to be).
    declared = run.config.predictor
    sets = held_out_sets(workspace, run, options.images)
    trained_on = training_sets(workspace, run)
    grid = load_grid(workspace)
    region = grid.region.geometry
    in_grid = CellLocator(grid)
    device = resolve_device(options.device)
    root = image_root(workspace, options.images, next(iter(sets.values())))
    per_image: dict[str, Any] = {}
    per_location: dict[str, Any] = {}
    rows: list[pd.DataFrame] = []
    all_true, all_pred = [], []
    class_counts = []
    unreadable = 0
    pictures: dict[str, list[Any]] = {"image": [], "location": []}
    for fold, frame in sets.items():
        model = run.build_model(fold)
        # Each fold answers with the points of its own training images, never the scored ones.
        fold_classes = run.fold_classes(fold)
        centre_lat, centre_lon = fold_classes.centres()
        index, choice = fold_retrieval(run, fold, declared) or (None, None)
        views, frame = group_views(frame, run.views)
        done = infer(
            [model], root, views, run.preprocessing, features=index is not None,
            blank=options.mask, batch_size=options.batch_size, device=device,
            workers=inference_workers(options.workers, len(views), device),
            progress=progress, task=f"fold {fold}: {len(views):,} images",
        )  # fmt: skip
        ok = done.ok
        unreadable += int((~ok).sum())
        frame, probs = frame[ok].reset_index(drop=True), done.probs[ok]
        if frame.empty:
            raise DataError(f"none of fold {fold}'s held-out images could be read")
        search = make_search(index) if index is not None else None
        queries = done.features[0][ok] if index is not None else None
        true_class = fold_classes.index_of(frame["cell_id"])
        true_lat, true_lon = frame["lat"].to_numpy(), frame["lon"].to_numpy()
        scored = m.score(
            probs, true_class, true_lat, true_lon, centre_lat, centre_lon, cell_km,
            region=region, headline=declared, near_km=near_km,
            retrieval=_retrieved(search, choice, fold_classes, queries, probs),
        )  # fmt: skip
        train = trained_on[fold]
        train_class = fold_classes.index_of(train["cell_id"])
        grid_cell = frame["grid_cell"].to_numpy()
        per_image[str(fold)] = _with_references(
            scored, train, train_class, frame["cell_id"].to_numpy(), true_class,
            true_lat, true_lon, _in_grid_cell(in_grid, scored, grid_cell),
        )  # fmt: skip
        best = declared or scored.headline
        fused, _, first = m.fuse_by_group(probs, frame[GROUP].to_numpy())
        fused_queries = (
            _fused_features(queries, frame[GROUP].to_numpy()) if queries is not None else None
        )
        located = m.score(
            fused, true_class[first], true_lat[first], true_lon[first], centre_lat,
            centre_lon, cell_km, region=region, headline=declared, near_km=near_km,
            retrieval=_retrieved(search, choice, fold_classes, fused_queries, fused),
        )  # fmt: skip
        per_location[str(fold)] = _with_references(
            located, train, train_class, frame["cell_id"].to_numpy()[first], true_class[first],
            true_lat[first], true_lon[first], _in_grid_cell(in_grid, located, grid_cell[first]),
        )  # fmt: skip
        doubt_columns: dict[str, Any] = {}
        fold_calibration = calibrations.get(fold)
        if doubtful and fold_calibration is not None and kind is not None:
            shapes = _cell_shapes(run, fold, grid, fold_classes.cell_ids)
            measure = partial(
                fold_doubt, cells=shapes, region_area_km2=grid.region_area_km2,
                coverage=options.coverage, kind=kind, point_lat=centre_lat, point_lon=centre_lon,
            )  # fmt: skip
            measured = (
                measure(probs, true_class, fold_calibration.per_image, scored.errors_km[best],
                        grid_cell, places=frame[GROUP].to_numpy()),
                measure(fused, true_class[first], fold_calibration.per_location,
                        located.errors_km[best], grid_cell[first]),
            )  # fmt: skip
            per_image[str(fold)]["doubt"] = measured[0].metrics
            per_location[str(fold)]["doubt"] = measured[1].metrics
            pictures["image"].append(measured[0])
            pictures["location"].append(measured[1])
            doubt_columns = {
                "region_cells": measured[0].region_cells,
                "region_km2": measured[0].region_km2,
                "covered": measured[0].covered,
                "confidence": measured[0].confidence,
            }
        rows.append(
            _predictions(frame, fold, scored, fold_classes.cell_ids, declared, in_grid).assign(
                **doubt_columns
            )
        )
        all_true.append(true_class)
        all_pred.append(probs.argmax(axis=1))
        class_counts.append(len(fold_classes))

    image_summary = {**m.aggregate_folds(list(per_image.values()), declared), "per_fold": per_image}
    numbers: dict[str, Any] = {
        "run": run.name,
        "model": run.architecture,
        "classes": round(float(np.mean(class_counts))),
        "chance_top1": float(np.mean([1.0 / n for n in class_counts])),
        "cells": run.config.cells,
        "confidence_score": kind if doubtful else None,
        "pooled_calibration": (
            {f"per_{name}": pooled_calibration(found) for name, found in pictures.items()}
            if pictures["image"]
            else None
        ),
        "mask": str(options.mask) if options.mask else None,
        "run_mask": str(run.preprocessing.mask) if run.preprocessing.mask else None,
        "test_set": str(options.images) if options.images else "held-out folds",
        "folds": sorted(sets),
        "images": int(sum(len(r) for r in rows)),
        "unreadable": unreadable,
        "headline": image_summary["headline"],
        "headline_chosen_on": "inner validation split" if declared else "test folds",
        "checkpoint_chosen_on": (
            "inner validation split" if run.config.selected_on_inner_split else "test folds"
        ),
        "per_image": image_summary,
        "per_location": {
            **m.aggregate_folds(list(per_location.values()), image_summary["headline"]),
            "per_fold": per_location,
        },
    }

    metrics = contracts.parse(EvalMetrics, numbers, "metrics")
    out = run.eval_dir(options.mask, options.images)
    out.mkdir(parents=True, exist_ok=True)
    predictions = pd.concat(rows, ignore_index=True)
    if run.own_fold_cells:
        # Folds' own cells differ: one confusion matrix and map over the workspace grid.
        grid_ids = grid.cells["cell_id"].to_numpy()
        position = {int(c): i for i, c in enumerate(grid_ids)}
        true_all = np.array([position.get(int(c), -1) for c in predictions["grid_cell"]])
        pred_all = np.array([position.get(int(c), -1) for c in predictions["pred_grid_cell"]])
        shown = (true_all, pred_all, tuple(int(c) for c in grid_ids), "grid_cell")
    else:
        classes = run.classes
        shown = (np.concatenate(all_true), np.concatenate(all_pred), classes.cell_ids, "")
    files = _write_outputs(
        workspace, run.metrics_path(options.mask, options.images), metrics, predictions,
        *shown, grid,
    )  # fmt: skip
    if pictures["image"]:
        files += _write_doubt(out, predictions, pictures, options.coverage)
    return EvalResult(run.name, out, metrics, files, time.perf_counter() - started)


def _cell_shapes(run: Any, fold: int, grid: Any, cell_ids: tuple[int, ...]) -> Any:
    """The fold's classes as cells with areas (the grid's, or the fold's own)."""
    from geotag.doubt.regions import CellShapes
    from geotag.geo.grid import projected_region

    if not run.own_fold_cells:
        return CellShapes.from_cells(grid.cells, cell_ids, grid.projection, grid.region_projected)
    partition = run.partition(fold)
    region = projected_region(grid.region.geometry, partition.projection)
    return CellShapes.from_cells(partition.cells, cell_ids, partition.projection, region)


def _write_doubt(
    out: Path, predictions: pd.DataFrame, pictures: dict[str, list[Any]], coverage: float
) -> tuple[Path, ...]:
    """reliability.png, coverage_curve.png, selective_curve.png and coverage_by_cell.csv
    (per workspace grid cell, over every fold: photos, and the share in their region)."""
    from geotag.atomic import atomic_path
    from geotag.doubt.temperature import Reliability
    from geotag.report import doubt as plots

    images = pictures["image"]
    reliability = out / "reliability.png"
    plots.plot_reliability(
        Reliability.pooled([d.reliability_before for d in images]),
        Reliability.pooled([d.reliability_after for d in images]),
        reliability,
    )
    coverage_curve = out / "coverage_curve.png"
    plots.plot_coverage_curve(
        {kind: [d.curve for d in found] for kind, found in pictures.items()},
        coverage, coverage_curve,
    )  # fmt: skip
    selective_curve = out / "selective_curve.png"
    plots.plot_selective_curve(
        {kind: [d.selective for d in found] for kind, found in pictures.items()}, selective_curve
    )
    by_cell = (
        predictions.groupby("grid_cell")["covered"]
        .agg(images="size", coverage="mean")
        .reset_index()
        .sort_values(["coverage", "grid_cell"])
    )
    table = out / "coverage_by_cell.csv"
    with atomic_path(table) as tmp:
        by_cell.to_csv(tmp, index=False)
    return reliability, coverage_curve, selective_curve, table


def _retrieved(search: Any, choice: Any, classes: Any, queries: Any, probs: Any) -> Any:
    """The knn and refined points of a fold's photos, or None without an index."""
    from geotag.retrieval.predictors import retrieval_points

    if search is None or choice is None or queries is None:
        return None
    return retrieval_points(search, queries, probs, classes, choice)


def _fused_features(features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """One embedding per place: the mean of its views' normalised embeddings, in the
    order :func:`~geotag.evaluate.metrics.fuse_by_group` gives the places."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(groups, sort=False)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sums = np.zeros((len(uniques), features.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, unit)
    return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )


def _with_references(
    scored: Any,
    train: pd.DataFrame,
    train_class: np.ndarray,
    true_cell: np.ndarray,
    true_class: np.ndarray,
    true_lat: np.ndarray,
    true_lon: np.ndarray,
    in_grid_cell: dict[str, float],
) -> dict[str, Any]:
    """``scored.metrics`` with what the model must beat and what it cannot know: the
    baselines from this fold's training images, the scored samples whose cell has no
    training image (counted; top-1 and the headline's median km also given without them),
    and per predictor the share of points in the true workspace grid cell."""
    import numpy as np

    from geotag.evaluate.baselines import baselines

    seen = np.isin(true_cell, train["cell_id"].to_numpy())
    hits = scored.pred_class[seen] == true_class[seen]
    errors = scored.errors_km[scored.headline][seen]
    return {
        **scored.metrics,
        "baselines": baselines(
            train_class, train["lat"].to_numpy(), train["lon"].to_numpy(), true_class,
            true_lat, true_lon,
        ),
        "unseen_cell": int((~seen).sum()),
        "top1_seen": float(hits.mean()) if len(hits) else 0.0,
        "median_km_seen": float(np.median(errors)) if len(errors) else 0.0,
        "in_grid_cell": in_grid_cell,
    }  # fmt: skip


def _in_grid_cell(locator: Any, scored: Any, grid_cell: np.ndarray) -> dict[str, float]:
    """Per predictor, the share of samples whose point lies in their own workspace grid
    cell: a top-1 that means the same whatever cells a run classifies into."""
    import numpy as np

    return {
        name: float(
            np.mean(locator.cells(scored.pred_lat[name], scored.pred_lon[name]) == grid_cell)
        )
        for name in scored.pred_lat
    }


def _predictions(
    frame: pd.DataFrame, fold: int, scored: Any, cell_ids: tuple[int, ...], headline: str | None,
    in_grid: Any,
) -> pd.DataFrame:  # fmt: skip
    """One row per scored sample: its top cells (the fold's), the headline point (the same
    predictor in every fold when one was declared) and every predictor's point and error,
    and the workspace grid cells of the truth and of the headline point."""
    import numpy as np
    import pandas as pd

    from geotag.dataset import GROUP

    order = scored.top_classes
    ids = np.asarray(cell_ids)
    best = headline or scored.headline
    every = {
        f"{what}_{name}": values[name]
        for name in scored.errors_km
        for what, values in (
            ("pred_lat", scored.pred_lat), ("pred_lon", scored.pred_lon),
            ("error_km", scored.errors_km),
        )
    }  # fmt: skip
    return pd.DataFrame(
        {
            "path": frame["path"].astype(str),
            "group": frame[GROUP].astype(str),
            "fold": fold,
            "true_cell": frame["cell_id"].astype("int64"),
            "grid_cell": frame["grid_cell"].astype("int64"),
            "pred_grid_cell": in_grid.cells(scored.pred_lat[best], scored.pred_lon[best]),
            "pred_cells": [list(map(int, ids[o])) for o in order],
            "pred_probs": [list(map(float, p)) for p in scored.top_probs],
            "true_lat": frame["lat"].to_numpy(),
            "true_lon": frame["lon"].to_numpy(),
            "pred_lat": scored.pred_lat[best],
            "pred_lon": scored.pred_lon[best],
            "error_km": scored.errors_km[best],
            "correct": ids[order[:, 0]] == frame["cell_id"].to_numpy(),
            "predictor": best,
            **every,
        }
    )


def _write_outputs(
    workspace: Workspace,
    metrics_path: Path,
    metrics: EvalMetrics,
    predictions: pd.DataFrame,
    true_class: np.ndarray,
    pred_class: np.ndarray,
    cell_ids: tuple[int, ...],
    by: str,
    grid: Any,
) -> tuple[Path, ...]:
    """metrics.json, predictions.parquet and the plots; the confusion matrix and the
    accuracy map by the run's classes, or with ``by="grid_cell"`` by the workspace grid's
    cells (``true_class``/``pred_class`` then index the grid's cells)."""
    import geopandas as gpd

    from geotag import contracts
    from geotag.atomic import atomic_path, write_text
    from geotag.evaluate import metrics as m
    from geotag.report import evaluation as plots

    out = metrics_path.parent
    write_text(metrics_path, contracts.dumps(metrics))
    predictions_path = out / "predictions.parquet"
    with atomic_path(predictions_path) as tmp:
        predictions.to_parquet(tmp, index=False)
    known = true_class >= 0
    matrix = m.confusion(true_class[known], pred_class[known], len(cell_ids))
    plots.plot_confusion(
        matrix, list(cell_ids), out / "confusion_matrix.png", out / "confusion_matrix.csv"
    )
    if by == "grid_cell":
        per_cell = m.per_cell_table(
            predictions["grid_cell"], predictions["pred_grid_cell"], predictions["error_km"]
        )
    else:
        per_cell = m.per_cell_table(
            predictions["true_cell"], [cells[0] for cells in predictions["pred_cells"]],
            predictions["error_km"],
        )  # fmt: skip
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
