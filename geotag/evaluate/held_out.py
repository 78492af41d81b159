"""Which images each fold of a run is scored on: eval and the audit read the same ones."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geotag.errors import DataError, InputError
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from geotag.train.runs import Run


def held_out_sets(
    workspace: Workspace, run: Run, images_file: Path | None
) -> dict[int, pd.DataFrame]:
    """Per trained fold, the images it is scored on (images.parquet columns + ``fold``):
    its own held-out fold from folds.csv, or all of a separate test set ``images_file``.
    ``cell_id`` is the cell of the fold's classes, ``grid_cell`` the workspace grid's
    (:meth:`~geotag.train.runs.Run.with_fold_cells`)."""
    import pandas as pd

    from geotag.dataset import conform, read_images
    from geotag.train.folds import read_folds

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
        return {fold: run.with_fold_cells(fold, table.assign(fold=fold)) for fold in folds}
    images = read_images(workspace)
    assignment = read_folds(run.folds_path)
    joined = assignment[["path", "fold"]].merge(images, on="path", how="inner")
    if len(joined) < len(assignment):
        raise DataError(
            f"{len(assignment) - len(joined):,} image(s) of folds.csv are gone from "
            "images.parquet; evaluate with --images, or retrain"
        )
    return {
        fold: run.with_fold_cells(fold, joined[joined["fold"] == fold].reset_index(drop=True))
        for fold in folds
    }


def image_root(workspace: Workspace, images_file: Path | None, frame: pd.DataFrame) -> Path:
    """Where relative image paths start: the workspace, or for a separate test set whose
    paths are not under the workspace, the folder of its table."""
    if images_file is None or (workspace.root / str(frame["path"].iloc[0])).exists():
        return workspace.root
    return Path(images_file).parent


def training_sets(workspace: Workspace, run: Run) -> dict[int, pd.DataFrame]:
    """Per trained fold, the images its model was trained on (every other fold of
    folds.csv): what baselines and "was this cell ever seen" are judged against; cells as
    :func:`held_out_sets` gives them."""
    from geotag.dataset import read_images
    from geotag.train.folds import read_folds

    assignment = read_folds(run.folds_path)
    joined = assignment[["path", "fold"]].merge(read_images(workspace), on="path", how="inner")
    return {
        fold: run.with_fold_cells(fold, joined[joined["fold"] != fold].reset_index(drop=True))
        for fold in run.trained_folds()
    }
