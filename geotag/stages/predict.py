"""The ``predict`` stage: where were these photos taken?

Every trained fold of the run votes (their probabilities are averaged); with ``fuse`` all
the photos are taken as views of one place. Each prediction names the top cells, a
point, the nearest place from an offline gazetteer and, when the photo's EXIF has GPS
tags, how far the prediction is from the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotag.errors import InputError
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.evaluate.prediction import Prediction
    from geotag.geo.grid import Grid
    from geotag.train.runs import Run


@dataclass(frozen=True)
class PredictOptions:
    run: str | None = None
    top_k: int = 5
    fuse: bool = False
    batch_size: int = 32
    device: str = "auto"
    workers: int | None = None  # default: none for a few photos, else one per spare core
    map: Path | None = None  # draw the first prediction's top cells and point here
    neighbours: int = 0  # list this many of the training images retrieval leaned on
    coverage: float = 0.9  # the regions' target (recalibrated from each fold's scores)
    min_confidence: float | None = None  # below it, answer "not sure" with the region
    regions: bool = True  # False: no region or confidence (plain prediction)


@dataclass(frozen=True)
class PredictResult:
    run: str
    predictor: str  # top_cell, weighted, knn or refined (geotag.evaluate.metrics)
    predictions: tuple[Prediction, ...]
    bad: tuple[tuple[str, str], ...] = field(default=())  # (path, why)
    map: Path | None = None
    notes: tuple[tuple[str, str], ...] = field(default=())  # (path, what): used, with a caveat
    caveat: str | None = None  # about every answer, e.g. a run without calibration


def _true_location(path: Path) -> tuple[float, float] | None:
    from PIL import Image

    from geotag.exif import read_exif

    try:
        with Image.open(path) as image:
            info = read_exif(image)
    except Exception:  # the pixels were read; an odd header only costs the true location
        return None
    return (info.lat, info.lon) if info.lat is not None and info.lon is not None else None


def _headline_predictor(run: Run) -> str:
    """The predictor chosen on the run's inner validation splits; for a run trained before
    those, the one its evaluation found better; the weighted mean by default."""
    from geotag.errors import GeotagError
    from geotag.evaluate.summary import EvalMetrics

    if run.config.predictor is not None:
        return run.config.predictor
    try:
        headline = EvalMetrics.read(run.metrics_path()).headline
    except GeotagError:  # not evaluated yet, or a damaged metrics.json
        return "weighted"
    return "top_cell" if headline == "top_cell" else "weighted"


def run_predict(
    workspace: Workspace,
    inputs: Sequence[Path],
    options: PredictOptions,
    *,
    progress: Progress | None = None,
) -> PredictResult:
    import numpy as np
    import reverse_geocode

    from geotag.evaluate.inference import infer
    from geotag.evaluate.metrics import RETRIEVAL_PREDICTORS, WEIGHTED_NEAR_CELLS, predicted_points
    from geotag.evaluate.prediction import CellGuess, Prediction
    from geotag.geo.distance import haversine_km
    from geotag.gridfile import load_grid
    from geotag.images import FIRST_FRAME, animated, usable_images
    from geotag.retrieval.predictors import top_cell_ids
    from geotag.train.data import inference_workers
    from geotag.train.device import resolve_device
    from geotag.train.runs import open_run

    progress = progress or NullProgress()
    if options.top_k < 1:
        raise InputError(f"--top-k must be at least 1; got {options.top_k}")
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1; got {options.batch_size}")
    if options.neighbours < 0:
        raise InputError(f"--neighbours must be zero or more; got {options.neighbours}")
    from geotag.doubt.conformal import check_coverage

    check_coverage(options.coverage, "--coverage")
    least = options.min_confidence
    if least is not None and not (0.0 <= least <= 1.0):  # NaN fails too
        raise InputError(f"--min-confidence must lie in [0, 1]; got {least:g}")
    if not inputs:
        raise InputError("name at least one image or folder")
    run = open_run(workspace, options.run)
    run.check_version()
    usable, bad = usable_images(inputs, "predict", progress)
    folds = run.trained_folds()
    if not folds:
        raise InputError(f"run {run.name} has no trained fold yet")
    models = [run.build_model(fold) for fold in folds]
    # Folds with cells of their own vote in the run's cells (each fold class in the run
    # cell its point lies in).
    class_maps = run.class_maps(folds)
    device = resolve_device(options.device)
    classes = run.classes
    views = [(str(p.resolve()),) * run.views for p in usable]
    predictor = _headline_predictor(run)
    retrieving = predictor in RETRIEVAL_PREDICTORS or options.neighbours > 0
    indexes = _indexes(run, folds, predictor) if retrieving else {}
    calibrations, caveat = _calibrations(run, folds, options)
    done = infer(
        models, Path("/"), views, run.preprocessing, features=bool(indexes),
        class_maps=class_maps, per_model=calibrations is not None, batch_size=options.batch_size,
        workers=inference_workers(options.workers, len(views), device), device=device,
        progress=progress,
    )  # fmt: skip
    probs, ok = done.probs, done.ok
    bad.extend(
        (str(p), "cannot decode (truncated or damaged)")
        for p, good in zip(usable, ok, strict=True)
        if not good
    )
    usable = [p for p, good in zip(usable, ok, strict=True) if good]
    if not usable:
        raise InputError("no image could be decoded: " + "; ".join(f"{p}: {w}" for p, w in bad[:3]))
    probs = probs[ok]
    # An animated GIF (PNG, WebP) is predicted from its first frame, as Pillow decodes it
    # and as it is when named alone; the user is told, since later frames may differ.
    notes = tuple((str(p), FIRST_FRAME) for p in usable if animated(p))
    groups: list[tuple[Path, ...]] = [(p,) for p in usable]
    features = [f[ok] for f in done.features]
    # What each fold ranks its own cells by: its own probabilities, or the shared ones.
    fold_probs = [p[ok] for p in done.model_probs] or [probs] * len(folds)
    fused = options.fuse and len(usable) > 1
    if fused:
        probs = probs.mean(axis=0, keepdims=True)
        fold_probs = [p.mean(axis=0, keepdims=True) for p in fold_probs]
        features = [_unit(_unit(f).sum(axis=0, keepdims=True)) for f in features]
        groups = [tuple(usable)]
    centre_lat, centre_lon = classes.centres()
    near_km = WEIGHTED_NEAR_CELLS * run.config.cell_km
    grid = load_grid(workspace) if workspace.grid_parquet.exists() else None
    region = grid.region.geometry if grid is not None else None
    points = predicted_points(
        probs, centre_lat, centre_lon, top_k=options.top_k, near_km=near_km, region=region
    )
    similar: list[list[Any]] = [[] for _ in groups]
    if indexes:
        fold_top = [
            top_cell_ids(p, run.fold_classes(fold).cell_ids)
            for p, fold in zip(fold_probs, folds, strict=True)
        ]
        lat, lon, similar = _retrieve(indexes, folds, features, fold_top, predictor, points)
    else:
        lat, lon = points[predictor]
    # Regions are drawn in the run's cells: a grid run's are the workspace grid's (or its
    # own copy, cells.parquet, when the grid has changed since), the others' their own.
    has_cells = run.cells().is_file() or grid is not None
    regions = None
    if calibrations is not None and has_cells:
        grid_id = workspace.stage_settings("grid").get("grid_id")
        regions = _regions(
            run, folds, grid, grid_id, fold_probs, calibrations, fused, options.coverage
        )
    if calibrations is not None and not has_cells:
        caveat = f"no grid in {workspace.root} and no cells in run {run.name}: no region"
    elif calibrations is not None:
        caveat = _too_few(calibrations, fused, options.coverage)
    places = reverse_geocode.search([(float(a), float(b)) for a, b in zip(lat, lon, strict=True)])
    predictions = []
    ids = np.asarray(classes.cell_ids)
    k = min(options.top_k, len(classes))
    for i, group in enumerate(groups):
        order = np.argsort(-probs[i])[:k]
        truths = [t for t in (_true_location(p) for p in group) if t is not None]
        truth = truths[0] if truths else None
        error = float(haversine_km(truth[0], truth[1], lat[i], lon[i])) if truth else None
        predictions.append(
            Prediction(
                paths=tuple(str(p) for p in group),
                top_k=tuple(
                    CellGuess(
                        int(ids[j]), float(probs[i, j]), float(centre_lat[j]), float(centre_lon[j])
                    )
                    for j in order
                ),
                lat=float(lat[i]),
                lon=float(lon[i]),
                place=places[i].get("city"),
                country=places[i].get("country"),
                true_lat=truth[0] if truth else None,
                true_lon=truth[1] if truth else None,
                error_km=error,
                neighbours=_nearest(similar[i], float(lat[i]), float(lon[i]), options.neighbours),
                doubt=_doubt(regions[i], least, truth) if regions is not None else None,
            )
        )
    if options.map is not None:
        _draw_map(
            workspace, run, grid or load_grid(workspace), predictions[0], options.map,
            regions[0].lonlat if regions is not None else None,
        )  # fmt: skip
    return PredictResult(
        run.name, predictor, tuple(predictions), tuple(bad), options.map, notes, caveat
    )


def _calibrations(
    run: Run, folds: list[int], options: PredictOptions
) -> tuple[dict[int, Any] | None, str | None]:
    """Each fold's calibration when regions are asked for and every fold has one; else
    None, and why (a run from before calibration cannot answer --min-confidence)."""
    from geotag.doubt import calibration

    if not options.regions:
        if options.min_confidence is not None:
            raise InputError("--min-confidence needs the regions: ask for both or neither")
        return None, None
    found = {fold: calibration.read(run.calibration(fold)) for fold in folds}
    if run.config.confidence_score is not None and all(c is not None for c in found.values()):
        return found, None
    why = (
        f"run {run.name} was trained before geotag calibrated its doubt; `geotag train "
        f"--name {run.name} --resume` calibrates it without training again"
    )
    if options.min_confidence is not None:
        raise InputError(f"--min-confidence needs a calibrated run; {why}")
    return None, f"no prediction region: {why}"


def _regions(
    run: Run, folds: list[int], grid: Grid | None, grid_id: str | None, fold_probs: list[Any],
    calibrations: dict[int, Any], fused: bool, coverage: float,
) -> list[Any]:  # fmt: skip
    """Per prediction, the union of the folds' calibrated regions and the confidence."""
    from geotag.doubt.answer import FoldPart, photo_regions
    from geotag.doubt.regions import CellShapes
    from geotag.errors import DataError

    parts = []
    shared = None
    if not run.own_fold_cells:  # a grid run's folds share their cells: made once
        # The workspace's grid, already loaded, when it is the one the run was trained on;
        # else the run's own copy of its cells (reading it costs a grid run ~20 ms).
        trained_on = run.config.grid_id
        if grid is not None and trained_on in (None, grid_id):
            cells, projection = grid.cells, grid.projection
        elif run.cells().is_file():
            partition = run.partition()
            cells, projection = partition.cells, partition.projection
        else:
            raise DataError(f"run {run.name} has no cells.parquet and its grid is gone")
        shared = CellShapes.from_cells(cells, run.classes.cell_ids, projection)
    for fold, probs in zip(folds, fold_probs, strict=True):
        classes = run.fold_classes(fold)
        if shared is None:
            partition = run.partition(fold)
            shapes = CellShapes.from_cells(partition.cells, classes.cell_ids, partition.projection)
        else:
            shapes = shared
        parts.append(FoldPart(probs, calibrations[fold].split(fused), shapes, *classes.centres()))
    kind = run.config.confidence_score
    if kind is None:  # _calibrations gives none for such a run: a caller's mistake
        raise DataError(f"run {run.name} has no confidence score in its config.json")
    return photo_regions(parts, coverage, kind)


def _too_few(calibrations: dict[int, Any], fused: bool, coverage: float) -> str | None:
    """Why a region is every cell: a fold calibrated on too few photos for the target."""
    import math

    short = {f: c.split(fused) for f, c in calibrations.items()}
    short = {f: s for f, s in short.items() if math.isinf(s.threshold(coverage))}
    if not short:
        return None
    counts = ", ".join(f"fold {f}: {s.n}" for f, s in short.items())
    return (
        f"--coverage {coverage:g} needs at least {math.ceil(coverage / (1 - coverage)):,} "
        f"calibration {'places' if fused else 'photos'} per fold ({counts}): such a fold's "
        "region is every cell"
    )


def _doubt(region: Any, least: float | None, truth: tuple[float, float] | None) -> Any:
    from geotag.evaluate.prediction import Doubt

    return Doubt(
        region=region.lonlat,
        region_km2=region.area_km2,
        coverage=region.coverage,
        confidence=region.confidence,
        sure=least is None or region.confidence >= least,
        cells=region.cells,
        truth_in_region=region.contains(*truth) if truth is not None else None,
    )


def _indexes(run: Run, folds: list[int], predictor: str) -> dict[int, Any]:
    """Each trained fold's (index, settings), when every fold has them; {} otherwise (a
    run from before retrieval), which a run answering with retrieval cannot be."""
    from geotag.retrieval.predictors import fold_retrieval

    found = {}
    for fold in folds:
        retrieval = fold_retrieval(run, fold, predictor)
        if retrieval is None:
            return {}
        found[fold] = retrieval
    return found


def _retrieve(
    indexes: dict[int, Any], folds: list[int], features: list[Any], top_cells: list[Any],
    predictor: str, points: dict[str, Any],
) -> tuple[Any, Any, list[list[Any]]]:  # fmt: skip
    """The retrieval answer (every fold's index, pooled), or the cell point it falls back on
    where nothing was found; and the neighbours it leaned on. With a cell predictor the
    answer stays the cell point and the neighbours are the refined search's."""
    import numpy as np

    from geotag.evaluate.metrics import RETRIEVAL_PREDICTORS
    from geotag.retrieval.predictors import FoldRetrieval, pooled_answer

    parts = [
        FoldRetrieval(fold, indexes[fold][0], features[i], indexes[fold][1], top_cells[i])
        for i, fold in enumerate(folds)
    ]
    searched = predictor if predictor in RETRIEVAL_PREDICTORS else "refined"
    lat, lon, neighbours = pooled_answer(parts, searched)
    fallback_lat, fallback_lon = points["weighted"] if searched == predictor else points[predictor]
    if searched != predictor:
        return fallback_lat, fallback_lon, neighbours
    found = np.isfinite(lat)
    return np.where(found, lat, fallback_lat), np.where(found, lon, fallback_lon), neighbours


def _nearest(found: list[Any], lat: float, lon: float, count: int) -> tuple[Any, ...]:
    """The ``count`` most similar training images, with their distance from the answer."""
    from geotag.evaluate.prediction import SimilarImage
    from geotag.geo.distance import haversine_km

    best = sorted(found, key=lambda n: -n.similarity)[:count]
    return tuple(
        SimilarImage(
            n.path, n.lat, n.lon, n.similarity, float(haversine_km(lat, lon, n.lat, n.lon)), n.fold
        )
        for n in best
    )


def _unit(vectors: Any) -> Any:
    import numpy as np

    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _draw_map(
    workspace: Workspace, run: Run, grid: Grid, prediction: Prediction, path: Path,
    region: Any = None,
) -> None:  # fmt: skip
    """The first prediction over the run's cells (the grid's, for a run from before
    ``cells.parquet``), with its region (EPSG:4326) when it has one."""
    import geopandas as gpd

    from geotag.report.prediction import plot_prediction

    outline = (
        gpd.read_parquet(workspace.region_parquet) if workspace.region_parquet.exists() else None
    )
    cells = run.partition().cells if run.cells().is_file() else grid.cells
    plot_prediction(cells, outline, prediction, path, region)
