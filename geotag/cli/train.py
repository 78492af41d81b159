"""``geotag train``: a timm classifier over the grid cells, cross-validated by location."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotag.cli.common import (
    DeviceOption,
    WorkersOption,
    WorkspaceOption,
    console,
    locked,
    progress_bar,
    reporting_errors,
    warn,
)
from geotag.stages.train import TrainOptions
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.train.loop import EpochResult

#: ``geotag train``'s defaults are the library's, not a copy of them.
TRAIN_DEFAULTS = TrainOptions()


def train(
    workspace: WorkspaceOption = Path("."),
    model: Annotated[
        str, typer.Option("--model", help="Any timm architecture name.")
    ] = TRAIN_DEFAULTS.model,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="Start from the model's pretrained weights (downloaded once; needs internet).",
        ),
    ] = True,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Local .safetensors/.pth weights for offline machines."),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Input side in pixels.", show_default="the model's"),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", help="Passes over the training folds.")
    ] = TRAIN_DEFAULTS.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Images per step.")
    ] = TRAIN_DEFAULTS.batch_size,
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (AdamW).")
    ] = TRAIN_DEFAULTS.lr,
    patience: Annotated[
        int | None,
        typer.Option("--patience", help="Stop after this many epochs without a better val top-1."),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", help="Cross-validation folds.")
    ] = TRAIN_DEFAULTS.folds,
    fold: Annotated[
        str, typer.Option("--fold", help="Fold to validate on, or 'all' for every fold in turn.")
    ] = TRAIN_DEFAULTS.fold,
    split: Annotated[
        str,
        typer.Option(
            "--split", help="group: by panorama/place; spatial: by coarse H3 block (stricter)."
        ),
    ] = TRAIN_DEFAULTS.split,
    cells: Annotated[
        str,
        typer.Option(
            "--cells",
            help="Classes: grid (the workspace's cells), adaptive (grid cells split where "
            "training images crowd, merged where sparse) or admin (states/provinces, split "
            "and merged alike). adaptive/admin cells are made per fold from its training "
            "images only.",
        ),
    ] = TRAIN_DEFAULTS.cells,
    min_images_per_cell: Annotated[
        int,
        typer.Option(
            "--min-images-per-cell",
            help="grid: cells with fewer images are no class; adaptive/admin: such cells are "
            "merged into a neighbour.",
        ),
    ] = TRAIN_DEFAULTS.min_images_per_cell,
    max_images_per_cell: Annotated[
        int,
        typer.Option(
            "--max-images-per-cell",
            help="adaptive/admin: cells with more training images are split (quadtree, or "
            "H3 children).",
        ),
    ] = TRAIN_DEFAULTS.max_images_per_cell,
    mask_bottom: Annotated[
        float,
        typer.Option(
            "--mask-bottom", help="Blank this bottom fraction of every image (0-0.9), everywhere."
        ),
    ] = TRAIN_DEFAULTS.mask_bottom,
    hflip: Annotated[
        bool, typer.Option("--hflip", help="Random horizontal flips (swaps the driving side).")
    ] = False,
    label_smoothing: Annotated[
        str, typer.Option("--label-smoothing", help="none, or haversine (PIGEON).")
    ] = TRAIN_DEFAULTS.label_smoothing,
    tau_km: Annotated[
        float | None,
        typer.Option(
            "--tau-km",
            help="Haversine smoothing temperature, km.",
            show_default="0.32 x the cell side: the true cell keeps half the target",
        ),
    ] = TRAIN_DEFAULTS.tau_km,
    buffer_km: Annotated[
        float | None,
        typer.Option(
            "--buffer-km",
            help="Leave out of each fold's training the images this close to its held-out ones.",
            show_default="a quarter cell side with --split spatial, else 0",
        ),
    ] = TRAIN_DEFAULTS.buffer_km,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help="Share of each fold's training places kept aside to stop early, pick the "
            "best epoch and the predicted point on; the held-out fold is eval's alone.",
        ),
    ] = TRAIN_DEFAULTS.val_fraction,
    views: Annotated[
        int, typer.Option("--views", help="Headings per sample (multi-view training).")
    ] = TRAIN_DEFAULTS.views,
    fusion: Annotated[
        str, typer.Option("--fusion", help="mean (PIGEON) or concat (DeepGeo) of view features.")
    ] = TRAIN_DEFAULTS.fusion,
    workers: WorkersOption = None,
    device: DeviceOption = "auto",
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (GPU; slow start).")
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for folds, init and order.")
    ] = TRAIN_DEFAULTS.seed,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Run name under runs/.", show_default="a timestamp"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run --name.")
    ] = False,
) -> None:
    """Train a timm classifier over the grid cells, cross-validated by location.

    Each fold's training places are split again: early stopping, the best epoch and the
    predicted point are chosen on that inner split, never on the fold eval scores.
    Writes runs/NAME/: config.json, folds.csv and per fold model.safetensors (best on the
    inner split), last.ckpt, history.csv and inner_scores.json. Runs data-parallel under torchrun.

    Example:

        geotag train -w india --model resnet18 --image-size 128 --epochs 5

        torchrun --nproc_per_node 4 -m geotag train -w india --fold all
    """
    from geotag.stages.train import run_train

    options = TrainOptions(
        model=model,
        pretrained=pretrained,
        weights=weights,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        folds=folds,
        fold=fold,
        split=split,
        cells=cells,
        min_images_per_cell=min_images_per_cell,
        max_images_per_cell=max_images_per_cell,
        mask_bottom=mask_bottom,
        hflip=hflip,
        label_smoothing=label_smoothing,
        tau_km=tau_km,
        val_fraction=val_fraction,
        buffer_km=buffer_km,
        views=views,
        fusion=fusion,
        workers=workers,
        device=device,
        compile=compile_model,
        seed=seed,
        name=name,
        resume=resume,
    )
    main = int(os.environ.get("RANK", "0")) == 0

    def show_epoch(r: EpochResult) -> None:
        console.print(
            f"fold {r.fold} epoch {r.epoch}/{r.epochs}: train loss {r.train_loss:.3f}, "
            f"inner val loss {r.val_loss:.3f}, top-1 {r.val_top1:.1%}, top-5 {r.val_top5:.1%}, "
            f"median {r.val_median_km:,.0f} km, {r.images_per_s:.0f} img/s"
            + (" *" if r.best else ""),
            highlight=False,
        )

    # Under torchrun every rank runs this command; the first holds the lock for them all.
    lock = locked(workspace, "train") if main else contextlib.nullcontext()
    with reporting_errors(), lock, progress_bar(disable=not main) as progress:
        result = run_train(
            Workspace(workspace),
            options,
            progress=progress,
            on_epoch=show_epoch if main else None,
            on_notice=warn,
        )
    if not main:
        return
    table = Table(title=f"run {result.name}", title_justify="left")
    for column in ("fold", "best epoch", "inner top-1", "inner top-5", "median km", "stopped"):
        table.add_column(column, justify="right")
    for fold_id, outcome in result.outcomes.items():
        best = outcome.history[outcome.best_epoch - 1] if outcome.best_epoch else None
        table.add_row(
            str(fold_id),
            str(outcome.best_epoch),
            f"{best['val_top1']:.1%}" if best else "-",
            f"{best['val_top5']:.1%}" if best else "-",
            f"{best['val_median_km']:,.0f}" if best else "-",
            "early" if outcome.stopped_early else "",
        )
    console.print(table)
    chance = 1 / result.classes
    console.print(
        f"{result.classes} classes (chance {chance:.1%}), {result.samples:,} samples, "
        f"device {result.device}, {result.seconds:.0f} s. Files in {result.folder}."
    )
