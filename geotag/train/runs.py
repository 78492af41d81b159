"""A trained run on disk: ``runs/<name>/`` with its config, folds and per-fold weights.

``config.json`` is :class:`RunConfig`, written and read through one dataclass: every
default lives there, and an unknown or ill-typed field is refused with one line naming
it. Later stages (eval, predict, explain) build the model from it alone. The run's paths
are :class:`~geotag.workspace.RunFolder`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geotag import contracts
from geotag.errors import DataError, InputError
from geotag.workspace import RunFolder, Workspace

if TYPE_CHECKING:
    import torch

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

    @property
    def selected_on_inner_split(self) -> bool:
        return self.val_fraction is not None


@contracts.contract
@dataclass(frozen=True)
class InnerScores:
    """``fold-<k>/inner_scores.json``: each predictor on the fold's inner validation split."""

    images: int
    median_km: dict[str, float]
    geoscore: dict[str, float]


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
    path = run.config_path
    if not path.is_file():
        raise DataError(f"{path} is missing: the run did not start properly")
    return contracts.read(RunConfig, path)


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

        points = self.config.fold_points.get(str(fold))
        if points is None:
            return self.classes
        if len(points.lat) != len(self.config.classes) or len(points.lon) != len(points.lat):
            raise DataError(f"config.json's points of fold {fold} do not match its classes")
        return ClassMap(self.config.classes, points.lat, points.lon)

    @property
    def preprocessing(self) -> Preprocessing:
        from geotag.train.data import Preprocessing

        return Preprocessing.from_json(self.config.preprocessing)

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
            len(self.classes),
            pretrained=False,
            views=self.views,
            fusion=self.config.fusion,
        )
        load_best(model, path)
        return model.eval()


def open_run(workspace: Workspace, name: str | None = None) -> Run:
    """The named run, or the workspace's latest (by the time its config was written)."""
    runs = workspace.runs_dir
    configs = [p for p in runs.glob("*/config.json") if p.is_file()]
    if name is None:
        if not configs:
            raise InputError(f"no trained run in {runs}; run `geotag train` first")
        folder = RunFolder(sorted(configs, key=lambda p: p.stat().st_mtime)[-1].parent)
    else:
        folder = workspace.run_folder(name)
        if not folder.config_path.is_file():
            known = sorted(p.parent.name for p in configs)
            hint = f"; runs here: {', '.join(known)}" if known else ""
            raise InputError(f"no run named {name!r} in {runs}{hint}")
    return Run(folder.folder, config=read_config(folder))
