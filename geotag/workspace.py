"""The workspace: one folder holding every stage's files, and the settings they ran with.

Every path a stage reads or writes is named here, so no module builds workspace paths of
its own. ``geotag.toml`` records, per stage, the settings that stage ran with; later stages
read them instead of asking the user to repeat flags.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from geotag.atomic import write_text
from geotag.errors import DataError, WorkspaceError

if TYPE_CHECKING:
    from geotag.train.bands import Band

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SETTINGS_FILE = "geotag.toml"
#: A fold's best weights and the checkpoint a stopped training resumes from.
BEST_WEIGHTS = "model.safetensors"
LAST_CHECKPOINT = "last.ckpt"


@dataclass(frozen=True)
class Workspace:
    """Paths of a workspace rooted at ``root``. Creating one touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser())

    # -- stage files -------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def region_parquet(self) -> Path:
        return self.root / "region.parquet"

    @property
    def grid_parquet(self) -> Path:
        return self.root / "grid.parquet"

    @property
    def grid_geojson(self) -> Path:
        return self.root / "grid.geojson"

    @property
    def grid_png(self) -> Path:
        return self.root / "grid.png"

    @property
    def points_parquet(self) -> Path:
        return self.root / "points.parquet"

    @property
    def points_png(self) -> Path:
        return self.root / "points.png"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.sqlite"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def images_parquet(self) -> Path:
        return self.root / "images.parquet"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name

    def run_folder(self, name: str) -> RunFolder:
        """The paths of run ``name`` (which need not exist yet)."""
        return RunFolder(self.run_dir(name))

    # -- checks ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make sure the workspace folder exists and is a folder (called before writing)."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} is a file, not a folder")
        self.root.mkdir(parents=True, exist_ok=True)

    def require(self, path: Path, hint: str) -> Path:
        """Return ``path`` if it exists, else raise with ``hint`` (what to run first)."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} is a file, not a folder")
        if not path.exists():
            raise WorkspaceError(f"{path.name} not found in workspace {self.root}; {hint}")
        return path

    # -- recorded settings -------------------------------------------------------------
    def settings(self) -> dict[str, dict[str, Any]]:
        """All recorded settings, by stage; empty when nothing was recorded yet."""
        if not self.settings_path.is_file():
            return {}
        try:
            return tomllib.loads(self.settings_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.settings_path} is not valid TOML: {exc}") from None

    def stage_settings(self, stage: str) -> dict[str, Any]:
        """The settings ``stage`` last ran with, or an empty dict."""
        return dict(self.settings().get(stage, {}))

    def record(self, stage: str, settings: dict[str, Any]) -> None:
        """Replace ``stage``'s recorded settings, keeping every other stage's."""
        everything = self.settings()
        everything[stage] = _toml_ready(settings)
        self.prepare()
        write_text(self.settings_path, tomli_w.dumps(everything))


@dataclass(frozen=True)
class RunFolder:
    """Every path of one run, ``runs/<name>/``: what train, eval and explain write there.

    Layout::

        config.json                  the run's contract (RunConfig)
        folds.csv                    path,group,fold for every image
        cells.parquet                the run's cells (GeoParquet): predict's classes
        fold-<k>/model.safetensors   the fold's best weights; last.ckpt, history.csv
        fold-<k>/cells.parquet       the fold's own cells (--cells adaptive, admin)
        eval/ (eval-<side>-<fraction>/ with a mask)   metrics.json, predictions.parquet, plots
        explain/                     overlays, audit.json, audit.md, pictures
    """

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def config_path(self) -> Path:
        return self.folder / "config.json"

    @property
    def folds_path(self) -> Path:
        return self.folder / "folds.csv"

    def fold_dir(self, fold: int) -> Path:
        return self.folder / f"fold-{fold}"

    def cells(self, fold: int | None = None) -> Path:
        """The cells a run's classes are (``cells.parquet``), or those of one fold, made from
        that fold's training images only."""
        return (self.folder if fold is None else self.fold_dir(fold)) / "cells.parquet"

    def weights(self, fold: int) -> Path:
        """The fold's best weights (safetensors)."""
        return self.fold_dir(fold) / BEST_WEIGHTS

    def last_checkpoint(self, fold: int) -> Path:
        """What a stopped training resumes from."""
        return self.fold_dir(fold) / LAST_CHECKPOINT

    def history(self, fold: int) -> Path:
        return self.fold_dir(fold) / "history.csv"

    def inner_val(self, fold: int) -> Path:
        """The images of the fold's inner validation split (one ``path`` per line)."""
        return self.fold_dir(fold) / "inner_val.csv"

    def inner_scores(self, fold: int) -> Path:
        """Each predictor scored on the fold's inner validation split."""
        return self.fold_dir(fold) / "inner_scores.json"

    def calibration(self, fold: int) -> Path:
        """What the fold's inner split calibrated (geotag.doubt.calibration)."""
        return self.fold_dir(fold) / "calibration.json"

    def eval_dir(self, mask: Band | None = None, images: Path | None = None) -> Path:
        """``eval/`` for the held-out folds; ``eval-images-<table's name>`` for a separate
        test set, so that scoring one never replaces the other; ``-<side>-<fraction>``
        added for an evaluation with a band blanked."""
        name = "eval"
        if images is not None:
            # Only characters safe in a folder name on every system; the rest become "_".
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(images).stem)[:60].strip("._") or "table"
            name += f"-images-{stem}"
        if mask is not None:
            name += f"-{mask.side}-{mask.fraction:g}"
        return self.folder / name

    def metrics_path(self, mask: Band | None = None, images: Path | None = None) -> Path:
        return self.eval_dir(mask, images) / "metrics.json"

    @property
    def explain_dir(self) -> Path:
        return self.folder / "explain"

    @property
    def audit_path(self) -> Path:
        return self.explain_dir / "audit.json"


def _toml_ready(value: Any) -> Any:
    """TOML has no null and no tuples: drop ``None`` values, turn tuples and paths plain."""
    if isinstance(value, dict):
        return {str(k): _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
