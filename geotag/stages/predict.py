"""The ``predict`` stage: where were these photos taken?

Every trained fold of the run votes (their probabilities are averaged); with ``fuse`` all
the photos are taken as views of one place. Each prediction names the top cells, a
point, the nearest place from an offline gazetteer and, when the photo's EXIF has GPS
tags, how far the prediction is from the truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geotag.errors import InputError, first_line
from geotag.progress import NullProgress, Progress
from geotag.workspace import Workspace

#: What a folder is searched for (PIL decodes them all).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp"})


@dataclass(frozen=True)
class PredictOptions:
    run: str | None = None
    top_k: int = 5
    fuse: bool = False
    batch_size: int = 32
    device: str = "auto"
    workers: int | None = None  # default: none for a few photos, else one per spare core


@dataclass(frozen=True)
class CellGuess:
    cell_id: int
    probability: float
    lat: float
    lon: float


@dataclass(frozen=True)
class Prediction:
    paths: tuple[str, ...]  # one photo, or every photo of a fused place
    top_k: tuple[CellGuess, ...]
    lat: float
    lon: float
    place: str | None
    country: str | None
    true_lat: float | None = None
    true_lon: float | None = None
    error_km: float | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "path": self.paths[0] if len(self.paths) == 1 else list(self.paths),
            "top_k": [
                {
                    "cell_id": g.cell_id,
                    "probability": round(g.probability, 6),
                    "lat": g.lat,
                    "lon": g.lon,
                }
                for g in self.top_k
            ],
            "lat": self.lat,
            "lon": self.lon,
            "place": self.place,
            "country": self.country,
        }
        if self.true_lat is not None:
            record.update(true_lat=self.true_lat, true_lon=self.true_lon, error_km=self.error_km)
        return record


@dataclass(frozen=True)
class PredictResult:
    run: str
    predictor: str  # "weighted" (spherical mean of the top cells) or "top_cell"
    predictions: tuple[Prediction, ...]
    bad: tuple[tuple[str, str], ...] = field(default=())  # (path, why)


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named, and the images inside folders named (sorted); what cannot be used."""
    files: list[Path] = []
    bad: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                bad.append((str(path), "folder has no images"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            bad.append((str(path), "no such file"))
    return list(dict.fromkeys(files)), bad


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not an image, or None. Only the header is read here: the pixels are
    decoded once, by the loader, which reports a truncated file as undecodable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"cannot decode ({first_line(exc)})"
    return None


def _true_location(path: Path) -> tuple[float, float] | None:
    from PIL import Image

    from geotag.exif import read_exif

    try:
        with Image.open(path) as image:
            info = read_exif(image)
    except (OSError, ValueError, SyntaxError):
        return None
    return (info.lat, info.lon) if info.lat is not None and info.lon is not None else None


def headline_predictor(run_folder: Path) -> str:
    """The predictor the run's evaluation found better; the weighted mean by default."""
    try:
        metrics = json.loads((run_folder / "eval" / "metrics.json").read_text())
        return "top_cell" if metrics.get("headline") == "top_cell" else "weighted"
    except (OSError, ValueError):
        return "weighted"


def run_predict(
    workspace: Workspace,
    inputs: Sequence[Path],
    options: PredictOptions,
    *,
    progress: Progress | None = None,
) -> PredictResult:
    import reverse_geocode

    from geotag.evaluate.inference import class_probabilities
    from geotag.evaluate.metrics import predicted_points
    from geotag.geo.distance import haversine_km
    from geotag.stages.evaluate import check_major_version
    from geotag.train.data import inference_workers
    from geotag.train.device import resolve_device
    from geotag.train.runs import open_run

    progress = progress or NullProgress()
    if options.top_k < 1:
        raise InputError(f"--top-k must be at least 1; got {options.top_k}")
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1; got {options.batch_size}")
    if not inputs:
        raise InputError("name at least one image or folder")
    run = open_run(workspace, options.run)
    check_major_version(run)
    files, bad = collect_images(inputs)
    progress.start("reading images", len(files))
    usable = []
    for path in files:
        why = image_problem(path)
        if why is None:
            usable.append(path)
        else:
            bad.append((str(path), why))
        progress.advance()
    if not usable:
        raise InputError("no image to predict: " + "; ".join(f"{p}: {why}" for p, why in bad[:3]))
    folds = run.trained_folds()
    if not folds:
        raise InputError(f"run {run.name} has no trained fold yet")
    models = [run.build_model(fold) for fold in folds]
    device = resolve_device(options.device)
    classes = run.classes
    views = [(str(p.resolve()),) * run.views for p in usable]
    probs, ok = class_probabilities(
        models, Path("/"), views, run.preprocessing, batch_size=options.batch_size,
        workers=inference_workers(options.workers, len(views), device), device=device,
        progress=progress,
    )  # fmt: skip
    bad.extend(
        (str(p), "cannot decode (truncated or damaged)")
        for p, good in zip(usable, ok, strict=True)
        if not good
    )
    usable = [p for p, good in zip(usable, ok, strict=True) if good]
    if not usable:
        raise InputError("no image could be decoded: " + "; ".join(f"{p}: {w}" for p, w in bad[:3]))
    probs = probs[ok]
    groups: list[tuple[Path, ...]] = [(p,) for p in usable]
    if options.fuse and len(usable) > 1:
        probs = probs.mean(axis=0, keepdims=True)
        groups = [tuple(usable)]
    predictor = headline_predictor(run.folder)
    centre_lat, centre_lon = classes.centres()
    points = predicted_points(probs, centre_lat, centre_lon, top_k=options.top_k)
    lat, lon = points[predictor]
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
            )
        )
    return PredictResult(run.name, predictor, tuple(predictions), tuple(bad))
