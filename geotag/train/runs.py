"""A trained run on disk: ``runs/<name>/`` with its config, folds and per-fold weights.

``config.json`` is :class:`RunConfig`, written and read through one dataclass: every
default lives there, and an unknown or ill-typed field, or a value no run can have, is
refused with one line naming it. Later stages (eval, predict, explain) build the model
from it alone. A run is opened by a plain name under ``runs/``, and one that has not saved
its first epoch is nobody's latest. The run's paths are
:class:`~geotag.workspace.RunFolder`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotag import contracts
from geotag.errors import DataError, InputError
from geotag.workspace import RunFolder, Workspace

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from geotag.geo.partition import Partition
    from geotag.train.classes import ClassMap
    from geotag.train.data import Preprocessing


@contracts.contract
@dataclass(frozen=True)
class ClassPoints:
    """The point each class answers with, in class order (degrees)."""

    lat: tuple[float, ...]
    lon: tuple[float, ...]

    def as_tuples(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.lat, self.lon


@contracts.contract
@dataclass(frozen=True)
class RetrievalChoice:
    """A fold's retrieval settings, chosen on its inner validation split (geotag.retrieval):
    ``refined`` searches the training entries of the top ``refined_k`` cells, ``knn`` the
    whole index; each answers the weighted medoid of its ``m`` nearest entries, weighted
    by softmax(cosine similarity / temperature)."""

    entries: int  # entries in the fold's index
    refined_k: int
    refined_m: int
    refined_temperature: float
    knn_m: int
    knn_temperature: float

    def problem(self) -> tuple[str, str] | None:
        """(field, why) of the first value no choice can have, or None."""
        for name in ("entries", "refined_k", "refined_m", "knn_m"):
            if getattr(self, name) < 1:
                return name, f"must be at least 1; got {getattr(self, name)}"
        for name in ("refined_temperature", "knn_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                return name, f"must be a positive number; got {value}"
        return None


@contracts.contract
@dataclass(frozen=True)
class RunConfig:
    """``runs/<name>/config.json``: what a run is, for every stage that reads it."""

    model: str  # the timm architecture
    classes: tuple[int, ...]  # class index -> cell id
    #: Each class's point for predicting new photos (see ``points_from``).
    centre_lat: tuple[float, ...]
    centre_lon: tuple[float, ...]
    preprocessing: dict[str, Any]  # Preprocessing.to_json()
    views: int = 1
    fusion: str = "mean"
    folds: int = 10
    folds_trained: tuple[int, ...] = ()
    split: str = "group"
    label_smoothing: str = "none"
    tau_km: float = 75.0
    grid_id: str | None = None
    cell_km: float = 100.0
    geotag_version: str = "0"
    #: The training options as given (TrainOptions' fields): what ``--resume`` restarts with.
    arguments: dict[str, Any] = field(default_factory=dict)
    #: Share of each fold's training places that early stopping, the best checkpoint and
    #: the predictor were chosen on. None: a run from before the inner split, whose
    #: checkpoints were picked on the very folds eval scores.
    val_fraction: float | None = None
    #: The predicted point (``top_cell``, ``weighted``) chosen on the inner splits.
    predictor: str | None = None
    #: "training images": a class's point is where its training images are (geo.points);
    #: "grid centroids" for a run from before, which answered with the cells' centroids.
    points_from: str = "grid centroids"
    #: Per trained fold, its classes' points from that fold's inner training split only:
    #: what eval scores the fold with and its label smoothing used.
    fold_points: dict[str, ClassPoints] = field(default_factory=dict)
    #: Training samples this close to a fold's held-out samples were left out of it, and
    #: how many per fold (a spatial split's buffer).
    buffer_km: float = 0.0
    buffered: dict[str, int] = field(default_factory=dict)
    #: Per trained fold with an index (``fold-<k>/index.safetensors``), its retrieval
    #: settings; empty for a run from before retrieval, which has no knn/refined point.
    retrieval: dict[str, RetrievalChoice] = field(default_factory=dict)
    #: What the classes are (geotag.geo.partition.KINDS): ``grid`` cells (``classes`` are
    #: grid cell ids, every fold alike), or ``adaptive`` / ``admin`` cells made per fold
    #: from its training images alone (``fold-<k>/cells.parquet``, the fold's class ids
    #: in ``fold_classes``), with the run's own (``cells.parquet``, from every image) for
    #: predicting new photos.
    cells: str = "grid"
    fold_classes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Per trained fold, the smoothing temperature its cells gave (--cells adaptive, admin).
    fold_tau_km: dict[str, float] = field(default_factory=dict)
    #: The confidence score (geotag.doubt.confidence) chosen on the inner splits; None for
    #: a run from before calibration (``fold-<k>/calibration.json``).
    confidence_score: str | None = None

    @property
    def selected_on_inner_split(self) -> bool:
        return self.val_fraction is not None

    def check(self, source: str) -> None:
        """Refuse values of the right type that no run can have, with one line naming the
        field (``source`` names the file); pydantic has already checked the types."""
        from geotag.evaluate.metrics import PREDICTORS
        from geotag.train.data import Preprocessing
        from geotag.train.model import FUSIONS, check_architecture

        def bad(name: str, why: str) -> DataError:
            return DataError(f"{source}: field {name!r}: {why}")

        try:  # the architecture only: its pretrained tag is never loaded from a run
            check_architecture(self.model.partition(".")[0])
        except InputError as exc:
            raise bad("model", str(exc)) from None
        if len(self.classes) < 2:
            raise bad("classes", f"a run has at least two classes; got {len(self.classes)}")
        if len(set(self.classes)) != len(self.classes):
            raise bad("classes", "names a cell id twice")
        _check_points(bad, "centre_", self.centre_lat, self.centre_lon, len(self.classes))
        Preprocessing.from_json(self.preprocessing, source)
        if self.views < 1:
            raise bad("views", f"must be at least 1; got {self.views}")
        if self.fusion not in FUSIONS:
            raise bad("fusion", f"must be one of {', '.join(FUSIONS)}; got {self.fusion!r}")
        if self.folds < 2:
            raise bad("folds", f"must be at least 2; got {self.folds}")
        for i, fold in enumerate(self.folds_trained):
            if not 0 <= fold < self.folds:
                raise bad(f"folds_trained.{i}", f"must lie in 0..{self.folds - 1}; got {fold}")
        if len(set(self.folds_trained)) != len(self.folds_trained):
            raise bad("folds_trained", "names a fold twice")
        for name, value in (("tau_km", self.tau_km), ("cell_km", self.cell_km)):
            if not (math.isfinite(value) and value > 0):
                raise bad(name, f"must be a positive number; got {value}")
        if not (math.isfinite(self.buffer_km) and self.buffer_km >= 0):
            raise bad("buffer_km", f"must be zero or more; got {self.buffer_km}")
        if self.val_fraction is not None and not 0.0 < self.val_fraction <= 0.5:
            raise bad("val_fraction", f"must lie in (0, 0.5]; got {self.val_fraction}")
        if self.predictor is not None and self.predictor not in PREDICTORS:
            raise bad(
                "predictor", f"must be one of {', '.join(PREDICTORS)}; got {self.predictor!r}"
            )
        if self.points_from not in POINTS_FROM:
            raise bad(
                "points_from",
                f"must be one of {', '.join(map(repr, POINTS_FROM))}; got {self.points_from!r}",
            )
        from geotag.geo.partition import KINDS

        if self.cells not in KINDS:
            raise bad("cells", f"must be one of {', '.join(KINDS)}; got {self.cells!r}")
        if self.fold_classes and self.cells == "grid":
            raise bad("fold_classes", "a run over grid cells has one class list")
        for key, ids in self.fold_classes.items():
            _check_fold_key(bad, "fold_classes", key, self.folds)
            if len(ids) < 2 or len(set(ids)) != len(ids):
                raise bad(f"fold_classes.{key}", "needs two or more distinct cell ids")
        for key, points in self.fold_points.items():
            _check_fold_key(bad, "fold_points", key, self.folds)
            count = len(self.fold_classes.get(key, self.classes))
            _check_points(bad, f"fold_points.{key}.", points.lat, points.lon, count)
        for key, tau in self.fold_tau_km.items():
            _check_fold_key(bad, "fold_tau_km", key, self.folds)
            if not (math.isfinite(tau) and tau > 0):
                raise bad(f"fold_tau_km.{key}", f"must be a positive number; got {tau}")
        for key, count in self.buffered.items():
            _check_fold_key(bad, "buffered", key, self.folds)
            if count < 0:
                raise bad(f"buffered.{key}", f"must be zero or more; got {count}")
        from geotag.doubt.confidence import CONFIDENCE_SCORES

        if self.confidence_score is not None and self.confidence_score not in CONFIDENCE_SCORES:
            raise bad(
                "confidence_score",
                f"must be one of {', '.join(CONFIDENCE_SCORES)}; got {self.confidence_score!r}",
            )
        for key, choice in self.retrieval.items():
            _check_fold_key(bad, "retrieval", key, self.folds)
            problem = choice.problem()
            if problem is not None:
                raise bad(f"retrieval.{key}.{problem[0]}", problem[1])


#: Where a run's class points come from (RunConfig.points_from).
POINTS_FROM = ("training images", "grid centroids")


def _check_points(
    bad: Callable[[str, str], DataError],
    prefix: str,
    lat: tuple[float, ...],
    lon: tuple[float, ...],
    classes: int,
) -> None:
    """One point per class, each a real place: lat in [-90, 90], lon in [-180, 180]
    (``prefix``: the fields' names up to ``lat`` and ``lon``)."""
    for name, values, limit in ((f"{prefix}lat", lat, 90.0), (f"{prefix}lon", lon, 180.0)):
        if len(values) != classes:
            raise bad(name, f"holds {len(values)} value(s) but 'classes' holds {classes}")
        for i, value in enumerate(values):
            if not (math.isfinite(value) and -limit <= value <= limit):
                raise bad(f"{name}.{i}", f"must lie in [-{limit:g}, {limit:g}]; got {value}")


def _check_fold_key(bad: Callable[[str, str], DataError], name: str, key: str, folds: int) -> None:
    if not (key.isdigit() and int(key) < folds):
        raise bad(f"{name}.{key}", f"is no fold of 0..{folds - 1}")


@contracts.contract
@dataclass(frozen=True)
class InnerScores:
    """``fold-<k>/inner_scores.json``: each predictor on the fold's inner validation split."""

    images: int
    median_km: dict[str, float]
    geoscore: dict[str, float]
    #: The retrieval settings chosen there, with every combination tried (None: no index).
    retrieval: RetrievalChoice | None = None
    retrieval_grid: list[dict[str, float]] = field(default_factory=list)


def write_inner_scores(run: RunFolder, fold: int, scores: InnerScores) -> None:
    from geotag.atomic import write_text

    write_text(run.inner_scores(fold), contracts.dumps(scores))


def read_inner_scores(run: RunFolder, fold: int) -> InnerScores | None:
    path = run.inner_scores(fold)
    return contracts.read(InnerScores, path) if path.is_file() else None


def write_config(run: RunFolder, config: RunConfig) -> None:
    from geotag.atomic import write_text

    write_text(run.config_path, contracts.dumps(config))


def read_config(run: RunFolder) -> RunConfig:
    """The run's config.json, its types and values checked (one line naming a bad field)."""
    path = run.config_path
    if not path.is_file():
        raise DataError(f"{path} is missing: the run did not start properly")
    config = contracts.read(RunConfig, path)
    config.check(str(path))
    return config


#: A run that has not saved its first epoch holds this file: train writes it before
#: config.json and removes it once the first fold's first epoch is saved (from then on the
#: run can be resumed). A train that fails before then removes the whole run; one killed
#: outright leaves the marker: such a run is never the latest, and a new train replaces it.
INCOMPLETE = "incomplete"


def incomplete_marker(run: RunFolder) -> Path:
    return run.folder / INCOMPLETE


def is_complete(run: RunFolder) -> bool:
    """Whether ``run`` is a run to read: config.json written, first epoch saved."""
    return run.config_path.is_file() and not incomplete_marker(run).exists()


def check_run_name(name: str, option: str, runs_dir: Path) -> None:
    """Refuse a run name that is no plain folder of ``runs_dir``: an absolute path, ``..``
    or a path separator would read or write outside the workspace's runs, and ``.``, a
    hidden name or an empty one names no run. One rule for train's ``--name`` and every
    stage's ``--run``; ``option`` names the option in the message."""
    if not name.strip():
        raise InputError(f"{option} must be the name of a run in {runs_dir}; got {name!r}")
    if name.startswith(".") or any(c in name for c in "/\\\0") or Path(name).is_absolute():
        raise InputError(f"{option} must be the name of a run in {runs_dir}, not a path: {name!r}")


@dataclass(frozen=True)
class Run(RunFolder):
    """A run whose config was read: its classes, preprocessing and models."""

    config: RunConfig = field(kw_only=True)

    @property
    def classes(self) -> ClassMap:
        """The classes with the points new photos are answered with."""
        from geotag.train.classes import ClassMap

        return ClassMap.from_config(self.config)

    def fold_classes(self, fold: int) -> ClassMap:
        """The classes with the points fold ``fold`` was trained and is scored with."""
        from geotag.train.classes import ClassMap

        ids = self.config.fold_classes.get(str(fold), self.config.classes)
        points = self.config.fold_points.get(str(fold))
        if points is None:
            if ids != self.config.classes:
                raise DataError(f"config.json has no points for fold {fold}'s own cells")
            return self.classes
        if len(points.lat) != len(ids) or len(points.lon) != len(points.lat):
            raise DataError(f"config.json's points of fold {fold} do not match its classes")
        return ClassMap(ids, points.lat, points.lon)

    @property
    def own_fold_cells(self) -> bool:
        """Whether each fold has cells of its own (``--cells adaptive`` or ``admin``)."""
        return self.config.cells != "grid"

    def partition(self, fold: int | None = None) -> Partition:
        """The run's cells (``cells.parquet``), or fold ``fold``'s own; refused in one line
        when the file is missing (a grid run from before it was written has none)."""
        from geotag.geo.partition import Partition

        path = self.cells(fold if self.own_fold_cells else None)
        if not path.is_file():
            raise DataError(f"run {self.name} has no {path.name} ({path}); retrain it")
        return Partition.read(path)

    def with_fold_cells(self, fold: int, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (images.parquet columns) with ``grid_cell``, the workspace grid's cell,
        and ``cell_id``, the cell of fold ``fold``'s classes it lies in (-1: none): the same
        for a grid run; located in the fold's own cells otherwise."""
        frame = frame.assign(grid_cell=frame["cell_id"].astype("int64"))
        if not self.own_fold_cells or frame.empty:
            return frame
        located = self.partition(fold).locate(frame["lat"].to_numpy(), frame["lon"].to_numpy())
        return frame.assign(cell_id=located.astype("int64"))

    def class_maps(self, folds: list[int]) -> list[np.ndarray] | None:
        """For predicting with folds whose cells differ: per fold, a (fold classes x run
        classes) 0/1 matrix sending each fold class to the run cell its point lies in (the
        nearest run class's point where it lies in none). None when every fold's classes are
        the run's."""
        import numpy as np

        from geotag.geo.distance import haversine_km

        if not self.own_fold_cells:
            return None
        run_lat, run_lon = self.classes.centres()
        position = {cell: i for i, cell in enumerate(self.config.classes)}
        cells = self.partition()
        maps = []
        for fold in folds:
            lat, lon = self.fold_classes(fold).centres()
            matrix = np.zeros((len(lat), len(position)), dtype=np.float32)
            for i, cell in enumerate(cells.locate(lat, lon)):
                column = position.get(int(cell))
                if column is None:
                    column = int(np.argmin(haversine_km(lat[i], lon[i], run_lat, run_lon)))
                matrix[i, column] = 1.0
            maps.append(matrix)
        return maps

    @property
    def preprocessing(self) -> Preprocessing:
        from geotag.train.data import Preprocessing

        return Preprocessing.from_json(self.config.preprocessing, str(self.config_path))

    @property
    def architecture(self) -> str:
        return self.config.model

    @property
    def views(self) -> int:
        return self.config.views

    def trained_folds(self) -> list[int]:
        """Folds whose best weights exist, in order."""
        return [int(f) for f in self.config.folds_trained if self.weights(int(f)).is_file()]

    def check_version(self) -> None:
        """Refuse a run written by another major version of geotag: its files may differ."""
        from geotag import __version__

        theirs = self.config.geotag_version
        if theirs.split(".")[0] != __version__.split(".")[0]:
            raise DataError(
                f"run {self.name} was trained with geotag {theirs}; this is geotag "
                f"{__version__} (another major version): retrain it, or use that version"
            )

    def build_model(self, fold: int) -> torch.nn.Module:
        """The fold's trained model, in eval mode, on the CPU."""
        from geotag.train.checkpoint import load_best
        from geotag.train.model import create_classifier

        path = self.weights(fold)
        if not path.is_file():
            raise DataError(f"run {self.name} has no weights for fold {fold} ({path} is missing)")
        model = create_classifier(
            self.architecture,
            len(self.fold_classes(fold)),
            pretrained=False,
            views=self.views,
            fusion=self.config.fusion,
        )
        load_best(model, path)
        return model.eval()


def open_run(workspace: Workspace, name: str | None = None) -> Run:
    """The named run, or the workspace's latest (by the time its config was written).

    ``name`` must be a plain folder name of ``runs/``: eval and explain write into the run,
    so a path would let them write into another workspace. A run that never finished its
    first epoch is nobody's latest.
    """
    runs = workspace.runs_dir
    if name is not None:
        check_run_name(name, "--run", runs)
    complete = [
        RunFolder(p.parent)
        for p in runs.glob("*/config.json")
        if not p.parent.name.startswith(".")
        and _inside(runs, p.parent)
        and is_complete(RunFolder(p.parent))
    ]
    if name is None:
        if not complete:
            raise InputError(f"no trained run in {runs}; run `geotag train` first")
        folder = max(complete, key=lambda r: r.config_path.stat().st_mtime)
    else:
        folder = workspace.run_folder(name)
        if not folder.config_path.is_file():
            known = sorted(r.name for r in complete)
            hint = f"; runs here: {', '.join(known)}" if known else ""
            raise InputError(f"no run named {name!r} in {runs}{hint}")
        if not _inside(runs, folder.folder):
            raise InputError(
                f"run {name!r} is a link out of {runs}: eval and explain would write there"
            )
        if not is_complete(folder):
            raise InputError(
                f"run {name!r} stopped before its first epoch was saved: continue it with "
                f"`geotag train --name {name} --resume`, or train it again"
            )
    return Run(folder.folder, config=read_config(folder))


def _inside(runs: Path, folder: Path) -> bool:
    """Whether ``folder`` really is a folder of ``runs``, not a link to one elsewhere."""
    return folder.resolve().parent == runs.resolve()
