"""The ``train`` stage: images.parquet -> runs/<name>/ (a timm classifier over grid cells).

Folds are grouped by place (or by coarse spatial block with ``split="spatial"``), so the
headings of one panorama never sit on both sides of a split. Runs under ``torchrun`` as
data-parallel training; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotag import __version__, contracts
from geotag.errors import DataError, InputError
from geotag.progress import NullProgress, Progress
from geotag.train.device import DEVICES
from geotag.workspace import RunFolder, Workspace

if TYPE_CHECKING:
    import numpy as np
    import torch

    from geotag.train.loop import EpochResult, FoldOutcome
    from geotag.train.runs import ClassPoints

#: A strong default for a GPU: ConvNeXt-T pretrained on ImageNet-22k transfers well to
#: scene recognition, runs ~1,000 img/s in AMP on one modern GPU, and as a CNN gives crisp
#: Grad-CAM maps for the shortcut audit. Tests and the demo pass tiny models instead.
DEFAULT_MODEL = "convnext_tiny.fb_in22k_ft_in1k"
SPLITS = ("group", "spatial")
#: A spatial split's default buffer, in cell sides. A held-out fold's blocks are scattered
#: over the region, so a buffer of a whole cell side left nothing to train on (every
#: training image of the 500 km India test grid lay within one side of a held-out block);
#: a quarter side still removes the images across the street from a held-out block.
BUFFER_CELL_SIDES = 0.25
SMOOTHING = ("none", "haversine")
FUSIONS = ("mean", "concat")


@contracts.contract
@dataclass(frozen=True)
class TrainOptions:
    model: str = DEFAULT_MODEL
    pretrained: bool = True
    weights: Path | None = None
    image_size: int | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int | None = None
    folds: int = 10
    fold: str = "0"  # a fold number, or "all"
    split: str = "group"
    min_images_per_cell: int = 1
    #: The classes: ``grid`` cells, or ``adaptive`` / ``admin`` cells that follow the
    #: training images (geotag.geo.partition), split above this many images per cell.
    cells: str = "grid"
    max_images_per_cell: int = 1000
    mask_bottom: float = 0.0
    hflip: bool = False
    label_smoothing: str = "none"
    tau_km: float | None = None  # default: 0.32 cell sides (train.targets.default_tau_km)
    #: Share of each outer fold's training places set aside to stop, select and calibrate on.
    val_fraction: float = 0.1
    #: With ``split="spatial"``: training images this close to a held-out block are left
    #: out of that fold's training. None: a quarter cell side for a spatial split, else 0.
    buffer_km: float | None = None
    views: int = 1
    fusion: str = "mean"
    workers: int | None = None
    device: str = "auto"
    compile: bool = False
    seed: int = 0
    name: str | None = None
    resume: bool = False


@dataclass(frozen=True)
class TrainResult:
    name: str
    folder: Path
    outcomes: dict[int, FoldOutcome]
    classes: int
    samples: int
    images_left_out: int  # in grid cells with fewer than --min-images-per-cell images
    bad_images: int
    device: str
    seconds: float
    files: tuple[Path, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())  # where the cells could not keep the limits


def _check_options(options: TrainOptions, runs: Path) -> None:
    """Refuse unusable options with one line naming the option (``runs``: the runs folder)."""
    from geotag.geo.partition import KINDS
    from geotag.train.runs import check_run_name

    o = options
    if o.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1; got {o.batch_size}")
    if o.epochs < 1:
        raise InputError(f"--epochs must be at least 1; got {o.epochs}")
    if not (o.lr > 0 and math.isfinite(o.lr)):
        raise InputError(f"--lr must be a positive number; got {o.lr}")
    if not 0.0 <= o.mask_bottom <= 0.9:
        raise InputError(f"--mask-bottom must lie in [0, 0.9]; got {o.mask_bottom:g}")
    if o.folds < 2:
        raise InputError(f"--folds must be at least 2; got {o.folds}")
    if o.fold != "all":
        try:
            fold = int(o.fold)
        except ValueError:
            raise InputError(f"--fold must be a number or 'all'; got {o.fold!r}") from None
        if not 0 <= fold < o.folds:
            raise InputError(f"--fold must lie in 0..{o.folds - 1} (--folds {o.folds}); got {fold}")
    if o.cells not in KINDS:
        raise InputError(f"--cells must be one of {', '.join(KINDS)}; got {o.cells!r}")
    if o.min_images_per_cell < 1:
        raise InputError(f"--min-images-per-cell must be at least 1; got {o.min_images_per_cell}")
    if o.cells != "grid" and o.max_images_per_cell < o.min_images_per_cell:
        raise InputError(
            f"--max-images-per-cell ({o.max_images_per_cell}) must be at least "
            f"--min-images-per-cell ({o.min_images_per_cell})"
        )
    if o.split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}; got {o.split!r}")
    if o.label_smoothing not in SMOOTHING:
        raise InputError(
            f"--label-smoothing must be one of {', '.join(SMOOTHING)}; got {o.label_smoothing!r}"
        )
    if o.tau_km is not None and not (math.isfinite(o.tau_km) and o.tau_km > 0):
        raise InputError(f"--tau-km must be positive; got {o.tau_km}")
    if o.buffer_km is not None and not (math.isfinite(o.buffer_km) and o.buffer_km >= 0):
        raise InputError(f"--buffer-km must be zero or more; got {o.buffer_km}")
    if not 0.0 < o.val_fraction <= 0.5:
        raise InputError(f"--val-fraction must lie in (0, 0.5]; got {o.val_fraction:g}")
    if o.views < 1:
        raise InputError(f"--views must be at least 1; got {o.views}")
    if o.fusion not in FUSIONS:
        raise InputError(f"--fusion must be one of {', '.join(FUSIONS)}; got {o.fusion!r}")
    if o.device not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}; got {o.device!r}")
    if o.image_size is not None and not 16 <= o.image_size <= 1024:
        raise InputError(f"--image-size must lie in 16..1024; got {o.image_size}")
    if o.patience is not None and o.patience < 1:
        raise InputError(f"--patience must be at least 1; got {o.patience}")
    if o.workers is not None and o.workers < 0:
        raise InputError(f"--workers must be zero or more; got {o.workers}")
    if o.weights is not None and not Path(o.weights).is_file():
        raise InputError(f"--weights {o.weights} is not a file")
    if o.name is not None:
        check_run_name(o.name, "--name", runs)


def _check_recorded(options: TrainOptions, runs: Path, source: Path) -> None:
    """The options a run recorded (config.json's ``arguments``), checked as given ones are;
    a bad one is one line naming the field. The weights only start a fold: a resumed run
    needs them no more, and a fold that does need them says so itself."""
    try:
        _check_options(replace(options, weights=None), runs)
    except InputError as exc:
        option = str(exc).partition(" ")[0]
        field = "arguments"
        if option.startswith("--"):
            field += "." + option.removeprefix("--").replace("-", "_")
        raise DataError(f"{source}: field {field!r}: {exc}") from None


# -- samples and folds --------------------------------------------------------------------
def _fold_groups(
    samples_groups: np.ndarray, latlon: np.ndarray, split: str, cell_km: float
) -> np.ndarray:
    if split == "group":
        return samples_groups
    from geotag.train.folds import spatial_groups

    return spatial_groups(latlon[:, 0], latlon[:, 1], cell_km)


def _folds_for(
    run: RunFolder,
    samples_views: list[tuple[str, ...]],
    groups: np.ndarray,
    labels: np.ndarray,
    options: TrainOptions,
    resume: bool,
) -> np.ndarray:
    import numpy as np

    from geotag.train.folds import assign_folds, read_folds

    if resume:
        recorded = read_folds(run.folds_path)
        by_path = dict(zip(recorded["path"].astype(str), recorded["fold"].astype(int), strict=True))
        try:
            return np.array([by_path[v[0]] for v in samples_views], dtype=np.int64)
        except KeyError as exc:
            raise InputError(
                f"images.parquet changed since the run started ({exc.args[0]} is new); "
                "start a new run instead of --resume"
            ) from None
    return assign_folds(groups, options.folds, seed=options.seed, labels=labels)


# -- the stage ----------------------------------------------------------------------------
def run_train(
    workspace: Workspace,
    options: TrainOptions,
    *,
    progress: Progress | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the fold(s) ``options`` names; returns each fold's history and best epoch."""
    import numpy as np
    import torch

    from geotag.dataset import GROUP, group_views, read_images
    from geotag.geo.partition import grid_partition
    from geotag.geo.points import partition_points
    from geotag.gridfile import load_grid
    from geotag.train import distributed
    from geotag.train.classes import ClassMap, choose_classes
    from geotag.train.data import check_bad_share, find_bad_images, preprocessing_for
    from geotag.train.model import check_architecture, create_classifier
    from geotag.train.runs import ClassPoints, RunConfig, read_config, write_config
    from geotag.train.targets import default_tau_km, tau_warning

    started = time.perf_counter()
    progress = progress or NullProgress()
    notice = on_notice or (lambda text: None)
    _check_options(options, workspace.runs_dir)
    workspace.require(workspace.images_parquet, "run `geotag scrape` or `geotag import` first")
    grid = load_grid(workspace)
    cell_area = grid.cell_area_km2 if math.isfinite(grid.cell_area_km2) else grid.cell_km**2

    resume = options.resume
    if resume:
        if options.name is None:
            raise InputError("--resume needs --name: the run to continue")
        run = workspace.run_folder(options.name)
        if not run.folder.is_dir():
            raise InputError(f"no run named {options.name!r} to resume in {workspace.runs_dir}")
        earlier = read_config(run)
        if not earlier.selected_on_inner_split:
            raise InputError(
                f"run {options.name!r} was started before geotag chose its epochs on an inner "
                "validation split, and cannot go on the new way; train a new run"
            )
        saved = contracts.parse(TrainOptions, earlier.arguments, f"{run.config_path} (arguments)")
        # The run continues as it started; only where it runs may change.
        options = replace(
            saved,
            name=options.name,
            resume=True,
            workers=options.workers,
            device=options.device,
        )
        _check_recorded(options, workspace.runs_dir, run.config_path)
    else:
        check_architecture(options.model)

    from geotag.train.device import resolve_device

    device = resolve_device(options.device)
    ranks = distributed.start(device)
    if device.type == "cuda" and ranks.distributed:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    # A new run is unfinished until its first epoch is saved: should the command fail
    # before then, the run goes, and the workspace is left as it was.
    unfinished: _Unfinished | None = None
    try:
        name = distributed.agree(
            options.name or datetime.datetime.now().strftime("%Y%m%d-%H%M%S"), ranks
        )
        run = workspace.run_folder(name)
        if not resume:
            _check_free(run)

        images = read_images(workspace)
        grid_cells = options.cells == "grid"
        left_out = 0
        if grid_cells:
            classes, left_out = choose_classes(images, grid.cells, options.min_images_per_cell)
            images = images[classes.index_of(images["cell_id"]) >= 0].reset_index(drop=True)
        views, rows = group_views(images, options.views)
        sample_cells = rows["cell_id"].to_numpy()
        # What folds and inner splits are balanced by: the classes, or (cells of a fold's
        # own, not made yet) the workspace grid's cells.
        sample_labels = (
            classes.index_of(sample_cells)
            if grid_cells
            else np.unique(sample_cells, return_inverse=True)[1]
        )
        latlon = rows[["lat", "lon"]].to_numpy(dtype=np.float64)
        # The groups folds are made of, and folds.csv records: places, or spatial blocks.
        places = rows[GROUP].to_numpy()
        groups = _fold_groups(places, latlon, options.split, grid.cell_km)
        folds = _folds_for(run, views, groups, sample_labels, options, resume)

        fold_list = list(range(options.folds)) if options.fold == "all" else [int(options.fold)]
        # Only the images these folds train on are opened: an outer fold stays unread
        # until eval (which counts its unreadable images itself).
        trained_on = set(range(options.folds))
        if len(fold_list) == 1:
            trained_on -= set(fold_list)
        used = np.isin(folds, sorted(trained_on))
        progress.start("checking images", None)
        bad = find_bad_images(
            workspace.root, sorted({p for v, u in zip(views, used, strict=True) if u for p in v})
        )
        check_bad_share(len(bad), len(images))
        if bad:
            notice(f"{len(bad):,} image(s) missing or unreadable, left out (first: {bad[0].path})")
            bad_paths = {b.path for b in bad}
            keep = np.array([not (set(v) & bad_paths) for v in views])
            views = [v for v, k in zip(views, keep, strict=True) if k]
            sample_labels, sample_cells, latlon, groups, places, folds = (
                sample_labels[keep],
                sample_cells[keep],
                latlon[keep],
                groups[keep],
                places[keep],
                folds[keep],
            )
        samples = _Samples(views, sample_labels, sample_cells, latlon, groups, folds, places)
        # Each fold's inner validation split, and the points its classes answer with: the
        # mean location of their images in the fold's inner training split.
        buffer_km = options.buffer_km
        if buffer_km is None:
            buffer_km = (
                BUFFER_CELL_SIDES * math.sqrt(cell_area) if options.split == "spatial" else 0.0
            )
        splits, buffered = {}, {}
        for fold in fold_list:
            splits[fold], buffered[str(fold)] = _split(samples, fold, options, buffer_km)
            if buffered[str(fold)]:
                notice(
                    f"fold {fold}: {buffered[str(fold)]:,} training sample(s) within "
                    f"{buffer_km:,.0f} km of its held-out blocks left out (--buffer-km)"
                )
        # The smoothing temperature follows the cells unless the user set one.
        tau_km = options.tau_km if options.tau_km is not None else default_tau_km(cell_area)
        notes: tuple[str, ...] = ()
        if grid_cells:
            own: dict[int, _FoldCells] = {}
            cells = grid_partition(grid, latlon[:, 0], latlon[:, 1])
            fold_points = {
                str(fold): _points(grid, classes, samples, train_idx)
                for fold, (train_idx, _) in splits.items()
            }
            # For predicting new photos (every fold voting): the points of all the images.
            points = _points(grid, classes, samples, np.arange(len(views)))
        else:
            progress.start(f"making {options.cells} cells", None)
            own = {
                fold: _fold_cells(grid, options, samples, splits[fold], tau_km)
                for fold in fold_list
            }
            splits = {fold: mine.split for fold, mine in own.items()}
            fold_points = {str(fold): mine.points for fold, mine in own.items()}
            # New photos are answered by every fold at once, in cells of every image.
            cells = _make_cells(grid, options, latlon[:, 0], latlon[:, 1])
            point_lat, point_lon = partition_points(
                grid, cells, cells.locate(latlon[:, 0], latlon[:, 1]), latlon[:, 0], latlon[:, 1]
            )
            points = ClassPoints(tuple(map(float, point_lat)), tuple(map(float, point_lon)))
            classes = ClassMap(tuple(range(len(cells.cells))), points.lat, points.lon)
            notes = tuple(
                dict.fromkeys(
                    f"fold {fold}'s cells: {note}" for fold, c in own.items() for note in c.notes
                )
            )
            for note in notes:
                notice(note)
            if options.tau_km is None:
                tau_km = own[fold_list[0]].tau_km
        if options.label_smoothing == "haversine" and options.tau_km is not None:
            large = tau_warning(options.tau_km, cell_area)
            if large:
                notice(large)

        torch.manual_seed(options.seed)
        probe = create_classifier(
            options.model,
            len(classes),
            pretrained=False,
            views=options.views,
            fusion=options.fusion,
        )
        mask = None
        if options.mask_bottom > 0:
            from geotag.train.bands import Band

            mask = Band("bottom", options.mask_bottom)
        pre = preprocessing_for(probe, options.image_size, mask)
        del probe
        config = RunConfig(
            model=options.model,
            views=options.views,
            fusion=options.fusion,
            classes=classes.cell_ids,
            centre_lat=points.lat,
            centre_lon=points.lon,
            fold_points=fold_points,
            points_from="training images",
            buffer_km=buffer_km,
            buffered=buffered,
            preprocessing=pre.to_json(),
            folds=options.folds,
            folds_trained=tuple(fold_list),
            split=options.split,
            label_smoothing=options.label_smoothing,
            tau_km=tau_km,
            grid_id=workspace.stage_settings("grid").get("grid_id"),
            cell_km=grid.cell_km,
            geotag_version=__version__,
            arguments=contracts.to_json(options),
            val_fraction=options.val_fraction,
            cells=options.cells,
            fold_classes={str(f): c.classes.cell_ids for f, c in own.items()},
            fold_tau_km={str(f): c.tau_km for f, c in own.items()},
        )
        settings = {"run": name, "model": options.model}
        if ranks.is_main:
            if not resume:
                unfinished = _start(workspace, run)
                _write_folds(run.folds_path, views, groups, folds)
            cells.write(run.cells())
            for fold, fold_cells in own.items():
                fold_cells.partition.write(run.cells(fold))
            write_config(run, config)
            if resume:
                workspace.record("train", settings)
        distributed.barrier(ranks)

        def epoch_saved(result: EpochResult) -> None:
            # The first saved epoch makes the run one to resume, evaluate and keep.
            if ranks.is_main and _finish_start(run):
                workspace.record("train", settings)
            if on_epoch is not None:
                on_epoch(result)

        outcomes = {}
        for fold in fold_list:
            if fold in own:
                fold_classes, fold_samples = own[fold].classes, own[fold].samples
                fold_tau = own[fold].tau_km if options.tau_km is None else options.tau_km
            else:
                fold_classes = ClassMap(classes.cell_ids, *fold_points[str(fold)].as_tuples())
                fold_samples, fold_tau = samples, tau_km
            outcomes[fold] = _train_fold(
                workspace, run, options, fold, fold_classes, pre, fold_samples, splits[fold],
                device, ranks, progress, epoch_saved, resume, fold_tau, grid.cell_km,
                grid.region.geometry,
            )  # fmt: skip
        if ranks.is_main:
            write_config(
                run,
                replace(
                    config,
                    predictor=_choose_predictor(run, config),
                    retrieval=_retrieval_choices(run, config),
                    confidence_score=_choose_confidence(run, config),
                ),
            )
            spread = _calibration_spread(run, fold_list)
            if spread:
                notice(spread)
        distributed.barrier(ranks)
        return TrainResult(
            name=name,
            folder=run.folder,
            outcomes=outcomes,
            classes=len(classes),
            samples=len(views),
            images_left_out=left_out,
            notes=notes,
            bad_images=len(bad),
            device=str(device),
            seconds=time.perf_counter() - started,
            files=(run.config_path, run.folds_path),
        )
    except BaseException:
        if unfinished is not None:
            unfinished.discard()
        raise
    finally:
        distributed.stop(ranks)


# -- a new run's folder -------------------------------------------------------------------
def _check_free(run: RunFolder) -> None:
    """Refuse to start run ``run`` where a run is, or a folder that is none; an unfinished
    start of the same name (killed before its first epoch) may be replaced."""
    from geotag.train.runs import incomplete_marker, is_complete

    if is_complete(run):
        raise InputError(
            f"run {run.name!r} exists; pass --resume to continue it or --name for a new one"
        )
    if incomplete_marker(run).is_file():
        return
    if run.folder.exists() and (not run.folder.is_dir() or any(run.folder.iterdir())):
        raise InputError(f"{run.folder} exists and holds no run; remove it or pass another --name")


@dataclass(frozen=True)
class _Unfinished:
    """A run this command started, until its first epoch is saved: what to remove, and
    what to put back, should the command fail before then."""

    run: RunFolder
    runs_dir_made: bool  # runs/ itself was made for it
    folder_was_empty: bool  # an empty runs/NAME was there before

    def discard(self) -> None:
        import shutil

        from geotag.train.runs import incomplete_marker

        if not incomplete_marker(self.run).is_file():
            return  # its first epoch was saved: a run to resume, not to remove
        shutil.rmtree(self.run.folder, ignore_errors=True)
        if self.folder_was_empty:
            self.run.folder.mkdir()
        elif self.runs_dir_made:
            with contextlib.suppress(OSError):  # not empty: another run started meanwhile
                self.run.folder.parent.rmdir()


def _start(workspace: Workspace, run: RunFolder) -> _Unfinished:
    """Make the run's folder with its marker of an unfinished run (replacing an earlier
    unfinished start of the same name): the run is nobody's latest until the marker goes."""
    import shutil

    from geotag.atomic import write_text
    from geotag.train.runs import incomplete_marker

    made = not workspace.runs_dir.exists()
    empty = run.folder.is_dir() and not any(run.folder.iterdir())
    if run.folder.exists():
        shutil.rmtree(run.folder)
    run.folder.mkdir(parents=True)
    write_text(
        incomplete_marker(run),
        "This run has not saved its first epoch yet; geotag train removes this file then.\n",
    )
    return _Unfinished(run, made, empty)


def _finish_start(run: RunFolder) -> bool:
    """Remove the marker of an unfinished run, once its first epoch is saved; whether it
    was there."""
    from geotag.train.runs import incomplete_marker

    marker = incomplete_marker(run)
    if not marker.is_file():
        return False
    marker.unlink()
    return True


def _write_folds(
    path: Path, views: list[tuple[str, ...]], groups: np.ndarray, folds: np.ndarray
) -> None:
    import numpy as np

    from geotag.train.folds import write_folds

    paths = [p for v in views for p in dict.fromkeys(v)]
    per_path_groups = [g for v, g in zip(views, groups, strict=True) for _ in dict.fromkeys(v)]
    per_path_folds = [f for v, f in zip(views, folds, strict=True) for _ in dict.fromkeys(v)]
    write_folds(path, paths, per_path_groups, np.asarray(per_path_folds))


def _train_fold(
    workspace: Workspace,
    run: RunFolder,
    options: TrainOptions,
    fold: int,
    classes: Any,
    pre: Any,
    samples: _Samples,
    split: tuple[np.ndarray, np.ndarray],
    device: torch.device,
    ranks: Any,
    progress: Progress,
    on_epoch: Callable[[EpochResult], None] | None,
    resume: bool,
    tau_km: float,
    cell_km: float,
    region: Any,
) -> FoldOutcome:
    import torch

    from geotag.train.data import (
        EpochSampler,
        ImageDataset,
        build_transform,
        default_workers,
        make_loader,
    )
    from geotag.train.loop import FoldData, FoldTrainer, LoopSettings
    from geotag.train.model import create_classifier

    views, labels, latlon = samples.views, samples.labels, samples.latlon
    train_idx, val_idx = split
    workers = default_workers(device) if options.workers is None else options.workers
    pin = device.type == "cuda"

    def dataset(index: np.ndarray, training: bool) -> ImageDataset:
        return ImageDataset(
            workspace.root,
            [views[i] for i in index],
            labels[index],
            pre,
            build_transform(pre, training, options.hflip),
        )

    train_sampler = EpochSampler(
        len(train_idx),
        shuffle=True,
        seed=options.seed + fold,
        rank=ranks.rank,
        world_size=ranks.world_size,
    )
    val_sampler = EpochSampler(
        len(val_idx),
        shuffle=False,
        seed=0,
        rank=ranks.rank,
        world_size=ranks.world_size,
        pad=False,
    )
    data = FoldData(
        train=make_loader(
            dataset(train_idx, True),
            train_sampler,
            options.batch_size,
            workers,
            training=True,
            pin_memory=pin,
        ),
        val=make_loader(
            dataset(val_idx, False),
            val_sampler,
            options.batch_size,
            workers,
            training=False,
            pin_memory=pin,
        ),
        train_sampler=train_sampler,
        train_latlon=latlon[train_idx],
        val_latlon=latlon[val_idx],
    )

    # Everything random is seeded: weights, and (without workers) the augmentation's
    # draws from Python's and torch's global generators.
    random.seed(options.seed + fold)
    torch.manual_seed(options.seed + fold)
    fresh = not (resume and run.last_checkpoint(fold).is_file())
    model = create_classifier(
        options.model,
        len(classes),
        pretrained=options.pretrained and fresh and options.weights is None,
        weights=options.weights if fresh else None,
        views=options.views,
        fusion=options.fusion,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            model, device_ids=[ranks.local_rank] if device.type == "cuda" else None
        )
    if options.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    folder = run.fold_dir(fold)
    if ranks.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        _write_inner_val(run.inner_val(fold), [views[i] for i in val_idx])
    trainer = FoldTrainer(
        model,
        data,
        classes,
        LoopSettings(
            epochs=options.epochs,
            lr=options.lr,
            weight_decay=options.weight_decay,
            warmup_epochs=options.warmup_epochs,
            patience=options.patience,
            label_smoothing=options.label_smoothing,
            tau_km=tau_km,
        ),
        device,
        ranks,
        folder,
        fold,
        metadata={"model": options.model, "fold": str(fold), "geotag": __version__},
    )
    if not fresh:
        trainer.resume()
    outcome = trainer.run(progress, on_epoch)
    if ranks.is_main and outcome.best_epoch:
        _score_predictors(run, workspace.root, fold, options, classes, pre, samples, split,
                          device, workers, progress, cell_km, region)  # fmt: skip
    return outcome


def _write_inner_val(path: Path, views: list[tuple[str, ...]]) -> None:
    """The inner validation split's images, so that anyone can check what was chosen on."""
    from geotag.atomic import write_text

    paths = dict.fromkeys(p for v in views for p in v)
    write_text(path, "path\n" + "".join(f"{p}\n" for p in paths))


@dataclass(frozen=True)
class _Samples:
    """What the folds train on: one entry per sample (an image, or a place's V views)."""

    views: list[tuple[str, ...]]
    labels: np.ndarray  # class index
    cells: np.ndarray  # cell id
    latlon: np.ndarray  # (n, 2) true location
    groups: np.ndarray  # what folds keep together: places, or spatial blocks
    folds: np.ndarray  # outer fold
    places: np.ndarray  # the place each sample shows (its headings are fused in eval)


def _split(
    samples: _Samples, fold: int, options: TrainOptions, buffer_km: float
) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """The fold's training samples, split into those it fits on and its inner validation
    split (whole groups, balanced by cell): the outer fold is eval's alone. Training
    samples within ``buffer_km`` of the outer fold are left out; how many is returned."""
    import numpy as np

    from geotag.train.folds import inner_split, within_buffer

    held = samples.folds == fold
    outer_train = np.flatnonzero(~held)
    if len(outer_train) == 0 or not held.any():
        raise InputError(f"fold {fold} leaves nothing to train or validate on; use fewer --folds")
    near = within_buffer(samples.latlon[outer_train], samples.latlon[held], buffer_km)
    outer_train = outer_train[~near]
    if len(outer_train) == 0:
        raise InputError(
            f"--buffer-km {buffer_km:g} leaves fold {fold} nothing to train on; lower it"
        )
    inner = inner_split(
        samples.groups[outer_train], samples.labels[outer_train], options.val_fraction,
        seed=options.seed + fold,
    )  # fmt: skip
    return (outer_train[~inner], outer_train[inner]), int(near.sum())


def _points(grid: Any, classes: Any, samples: _Samples, index: np.ndarray) -> ClassPoints:
    from geotag.geo.points import data_points
    from geotag.train.runs import ClassPoints

    lat, lon = data_points(
        grid, classes.cell_ids, samples.cells[index], samples.latlon[index, 0],
        samples.latlon[index, 1],
    )  # fmt: skip
    return ClassPoints(tuple(float(v) for v in lat), tuple(float(v) for v in lon))


@dataclass(frozen=True)
class _FoldCells:
    """A fold's own cells (``--cells adaptive``/``admin``), made from its training samples
    alone, and what follows from them: its classes, labels, split and smoothing."""

    partition: Any  # geotag.geo.partition.Partition
    classes: Any  # ClassMap: the cells, with the points of the fold's inner training split
    samples: _Samples  # labels and cells located in these cells
    split: tuple[np.ndarray, np.ndarray]  # less any sample outside every cell
    points: ClassPoints
    tau_km: float
    notes: tuple[str, ...]


def _make_cells(grid: Any, options: TrainOptions, lat: np.ndarray, lon: np.ndarray) -> Any:
    from geotag.geo.partition import make_partition

    return make_partition(
        options.cells, grid, lat, lon,
        max_images=options.max_images_per_cell, min_images=options.min_images_per_cell,
    )  # fmt: skip


def _fold_cells(
    grid: Any, options: TrainOptions, samples: _Samples, split: tuple[np.ndarray, np.ndarray],
    tau_km: float,
) -> _FoldCells:  # fmt: skip
    """Fold cells from the samples the fold trains on (its inner validation split too: only
    the outer fold is eval's), never from the samples it is scored on."""
    import numpy as np

    from geotag.geo.points import partition_points
    from geotag.train.classes import ClassMap
    from geotag.train.runs import ClassPoints
    from geotag.train.targets import default_tau_km

    train_idx, val_idx = split
    outer = np.concatenate([train_idx, val_idx])
    lat, lon = samples.latlon[:, 0], samples.latlon[:, 1]
    partition = _make_cells(grid, options, lat[outer], lon[outer])
    if len(partition.cells) < 2:
        raise InputError(
            f"--cells {options.cells} makes one cell of the training images; lower "
            f"--min-images-per-cell ({options.min_images_per_cell}) or collect more images"
        )
    # A partition's cells are numbered 0..n-1: a sample's cell id is its class (-1: none).
    labels = partition.locate(lat, lon)
    ids = tuple(range(len(partition.cells)))
    train_idx, val_idx = train_idx[labels[train_idx] >= 0], val_idx[labels[val_idx] >= 0]
    point_lat, point_lon = partition_points(
        grid, partition, labels[train_idx], lat[train_idx], lon[train_idx]
    )
    points = ClassPoints(tuple(map(float, point_lat)), tuple(map(float, point_lon)))
    median_area = float(np.median(partition.cells["area_km2"].to_numpy()))
    return _FoldCells(
        partition,
        ClassMap(ids, points.lat, points.lon),
        replace(samples, labels=labels, cells=labels),
        (train_idx, val_idx),
        points,
        tau_km if options.tau_km is not None else default_tau_km(median_area),
        partition.notes,
    )


def _score_predictors(
    run: RunFolder, root: Path, fold: int, options: TrainOptions, classes: Any, pre: Any,
    samples: _Samples, split: tuple[np.ndarray, np.ndarray], device: torch.device,
    workers: int, progress: Progress, cell_km: float, region: Any,
) -> None:  # fmt: skip
    """Index the fold's training images (their pooled features, by its best checkpoint),
    choose the retrieval settings, and score every predicted point, all on the fold's inner
    validation split, for the run's choice of predictor (never on the outer fold)."""
    from geotag.evaluate import metrics as m
    from geotag.evaluate.inference import infer
    from geotag.retrieval.index import LocationIndex
    from geotag.retrieval.predictors import choose, retrieval_points
    from geotag.retrieval.search import make_search
    from geotag.train.runs import InnerScores, Run, read_config, write_inner_scores

    train_idx, val_idx = split
    model = Run(run.folder, config=read_config(run)).build_model(fold)

    def pooled(index: np.ndarray, task: str) -> Any:
        return infer(
            [model], root, [samples.views[i] for i in index], pre, features=True,
            batch_size=options.batch_size, workers=workers, device=device, progress=progress,
            task=f"fold {fold}: {task}",
        )  # fmt: skip

    val = pooled(val_idx, "choosing the predicted point on the inner split")
    ok = val.ok
    if not ok.any():
        return
    indexed = pooled(train_idx, f"indexing {len(train_idx):,} training images")
    keep = train_idx[indexed.ok]
    index = LocationIndex.build(
        indexed.features[0][indexed.ok], samples.latlon[keep, 0], samples.latlon[keep, 1],
        samples.cells[keep], [str(g) for g in samples.groups[keep]],
        [samples.views[i][0] for i in keep], fuse=False,
    )  # fmt: skip
    index.save(run.fold_dir(fold))
    search = make_search(index)
    probs, latlon = val.probs[ok], samples.latlon[val_idx][ok]
    queries = val.features[0][ok]
    centre_lat, centre_lon = classes.centres()
    choice, grid = choose(search, queries, probs, classes, latlon[:, 0], latlon[:, 1])
    scored = m.score(
        probs, samples.labels[val_idx][ok], latlon[:, 0], latlon[:, 1], centre_lat, centre_lon,
        cell_km, near_km=m.WEIGHTED_NEAR_CELLS * cell_km, region=region,
        retrieval=retrieval_points(search, queries, probs, classes, choice),
    )  # fmt: skip
    predictors = scored.metrics["predictors"]
    _calibrate(run, fold, probs, samples.labels[val_idx][ok], samples.places[val_idx][ok], classes)
    write_inner_scores(
        run, fold,
        InnerScores(
            images=int(ok.sum()),
            median_km={name: float(p["median_km"]) for name, p in predictors.items()},
            geoscore={name: float(p["geoscore"]) for name, p in predictors.items()},
            retrieval=choice,
            retrieval_grid=grid,
        ),
    )  # fmt: skip


def _calibrate(
    run: RunFolder, fold: int, probs: np.ndarray, labels: np.ndarray, places: np.ndarray,
    classes: Any,
) -> None:  # fmt: skip
    """Calibrate the fold on its inner validation split (geotag.doubt): single photos, and
    places with their headings fused as eval fuses them."""
    from geotag.doubt import calibration
    from geotag.evaluate.metrics import fuse_by_group

    lat, lon = classes.centres()
    fused, _, first = fuse_by_group(probs, places)
    calibration.write(
        run.calibration(fold),
        calibration.FoldCalibration(
            per_image=calibration.fit(probs, labels, lat, lon),
            per_location=calibration.fit(fused, labels[first], lat, lon),
        ),
    )


def _choose_confidence(run: RunFolder, config: Any) -> str | None:
    """The confidence score that ranked the folds' inner-split photos best (mean over the
    trained folds of each score's accuracy over the shares answered)."""
    from geotag.doubt import calibration
    from geotag.doubt.confidence import choose_score

    found = [calibration.read(run.calibration(fold)) for fold in config.folds_trained]
    selective = [c.per_image.selective for c in found if c is not None]
    return choose_score(selective) if selective else None


def _calibration_spread(run: RunFolder, folds: list[int]) -> str | None:
    """How far regions may stray with the fewest places a fold calibrated on (or None)."""
    from geotag.doubt import calibration

    found = [calibration.read(run.calibration(fold)) for fold in folds]
    return calibration.spread_notice(
        min((c.per_location.n for c in found if c is not None), default=0)
    )


def _retrieval_choices(run: RunFolder, config: Any) -> dict[str, Any]:
    """Each trained fold's retrieval settings, as its inner split chose them."""
    from geotag.train.runs import read_inner_scores

    choices = {}
    for fold in config.folds_trained:
        scores = read_inner_scores(run, fold)
        if scores is not None and scores.retrieval is not None:
            choices[str(fold)] = scores.retrieval
    return choices


def _choose_predictor(run: RunFolder, config: Any) -> str | None:
    """The predicted point with the lower median km on the folds' inner splits (mean over
    the trained folds; then the higher GeoScore): what predict and eval's headline use."""
    from geotag.evaluate.metrics import choose_headline
    from geotag.train.runs import read_inner_scores

    scores = [read_inner_scores(run, fold) for fold in config.folds_trained]
    found = [s for s in scores if s is not None]
    if not found:
        return None
    names = list(found[0].median_km)
    means = {
        name: {
            "median_km": sum(s.median_km[name] for s in found) / len(found),
            "geoscore": sum(s.geoscore[name] for s in found) / len(found),
        }
        for name in names
    }
    return choose_headline(means)
