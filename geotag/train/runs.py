"""A trained run on disk: ``runs/<name>/`` with its config, folds and per-fold weights.

Layout::

    runs/<name>/config.json        architecture, classes, cell centres, preprocessing, arguments
    runs/<name>/folds.csv          path,group,fold for every image
    runs/<name>/fold-<k>/          model.safetensors (best), last.ckpt, history.csv

Later stages (eval, predict, explain) build the model from ``config.json`` alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotag.errors import DataError, InputError
from geotag.train.classes import ClassMap
from geotag.train.data import Preprocessing
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import torch

CONFIG = "config.json"
FOLDS = "folds.csv"


def fold_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / f"fold-{fold}"


@dataclass(frozen=True)
class Run:
    name: str
    folder: Path
    config: dict[str, Any]

    @property
    def classes(self) -> ClassMap:
        return ClassMap.from_json(self.config)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_json(self.config["preprocessing"])

    @property
    def architecture(self) -> str:
        return str(self.config["model"])

    @property
    def views(self) -> int:
        return int(self.config.get("views", 1))

    def trained_folds(self) -> list[int]:
        """Folds whose best weights exist, in order."""
        return [
            int(f) for f in self.config.get("folds_trained", []) if self.weights(int(f)).is_file()
        ]

    def weights(self, fold: int) -> Path:
        from geotag.train.checkpoint import BEST

        return fold_dir(self.folder, fold) / BEST

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
            fusion=str(self.config.get("fusion", "mean")),
        )
        load_best(model, path)
        return model.eval()


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    from geotag.atomic import write_text

    write_text(run_dir / CONFIG, json.dumps(config, indent=2, default=str) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: the run did not start properly") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict) or "model" not in config:
        raise DataError(f"{path} is not a geotag run config")
    return config


def open_run(workspace: Workspace, name: str | None = None) -> Run:
    """The named run, or the workspace's latest (by the time its config was written)."""
    runs = workspace.runs_dir
    if name is None:
        candidates = sorted(
            (p for p in runs.glob(f"*/{CONFIG}") if p.is_file()), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise InputError(f"no trained run in {runs}; run `geotag train` first")
        folder = candidates[-1].parent
    else:
        folder = workspace.run_dir(name)
        if not (folder / CONFIG).is_file():
            known = sorted(p.parent.name for p in runs.glob(f"*/{CONFIG}"))
            hint = f"; runs here: {', '.join(known)}" if known else ""
            raise InputError(f"no run named {name!r} in {runs}{hint}")
    return Run(folder.name, folder, read_config(folder))
