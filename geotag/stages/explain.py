"""The ``explain`` stage: Grad-CAM for photos, and the audit that catches a cheating model.

``run_explain`` saves an overlay per photo. ``run_audit`` draws held-out images (every
trained fold's, each scored by the model that never saw it), strip images first (see
``geotag.explain.strata``), measures where the model looks and what blanking the band
costs on each (``geotag.explain.measure``), draws more strip images while too few cannot
decide, and gives a verdict (``geotag.explain.verdict``) beside whether the copyright
strings give the location away.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.errors import InputError
from geotag.progress import NullProgress, Progress
from geotag.train.bands import Band
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.explain.measure import HeatPictures
    from geotag.explain.report import AuditReport
    from geotag.train.data import Preprocessing

#: When the verdict is inconclusive for want of strip images, the audit draws more of them,
#: up to this many times ``--limit`` images in all.
MAX_GROWTH = 4


@dataclass(frozen=True)
class ExplainOptions:
    run: str | None = None
    method: str = "gradcam"
    target: str = "predicted"  # or a cell id
    layer: str | None = None
    out: Path | None = None  # default runs/<name>/explain/
    batch_size: int = 16
    device: str = "auto"


@dataclass(frozen=True)
class Explained:
    path: str
    overlay: Path | None  # None when the map carried no heat
    top3: tuple[tuple[int, float], ...]
    thirds: tuple[float, float, float]  # share of heat: top, middle, bottom
    all_zero: bool


@dataclass(frozen=True)
class ExplainResult:
    run: str
    method: str
    images: tuple[Explained, ...]
    bad: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class AuditOptions:
    run: str | None = None
    images: Path | None = None
    limit: int = 500
    band: Band = field(default_factory=lambda: Band("bottom", 0.1))
    method: str = "gradcam"
    layer: str | None = None
    batch_size: int = 32
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class AuditResult:
    report: AuditReport  # what audit.json holds
    folder: Path
    files: tuple[Path, ...]
    seconds: float


def _loader(root: Path, paths: Sequence[str], pre: Preprocessing, batch_size: int) -> Any:
    from geotag.train.data import EpochSampler, ImageDataset, build_transform, make_loader

    dataset = ImageDataset(
        root, [(p,) for p in paths], [0] * len(paths), pre, build_transform(pre, False)
    )
    sampler = EpochSampler(len(paths), shuffle=False, seed=0)
    return make_loader(dataset, sampler, batch_size, 0, training=False)


def run_explain(
    workspace: Workspace,
    images: Sequence[Path],
    options: ExplainOptions,
    *,
    progress: Progress | None = None,
) -> ExplainResult:
    """Overlay PNGs (photo, heatmap, top-3 cells) for each photo, in ``options.out``."""
    from geotag.explain.cam import compute_cams
    from geotag.explain.heat import thirds
    from geotag.explain.measure import picture
    from geotag.explain.overlay import save_overlay
    from geotag.images import usable_images
    from geotag.train.runs import open_run

    progress = progress or NullProgress()
    run = open_run(workspace, options.run)
    run.check_version()
    usable, bad = usable_images(images, "explain", progress)
    fold = run.trained_folds()[0] if run.trained_folds() else 0
    classes = run.fold_classes(fold)  # the model's own classes
    target: int | None = None
    if options.target != "predicted":
        try:
            target = int(classes.index_of([int(options.target)])[0])
        except ValueError:
            raise InputError(
                f"--target must be 'predicted' or a cell id; got {options.target!r}"
            ) from None
        if target < 0:
            raise InputError(f"cell {options.target} is not one of run {run.name}'s classes")
    model = run.build_model(fold)
    pre = run.preprocessing
    out = Path(options.out) if options.out else run.explain_dir
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(classes.cell_ids)
    done: list[Explained] = []
    paths = [str(p.resolve()) for p in usable]
    progress.start(f"explaining {len(paths)} image(s)", len(paths))
    for batch in _loader(Path("/"), paths, pre, options.batch_size):
        if len(batch.indices) == 0:
            continue
        targets = None if target is None else [target] * len(batch.indices)
        result = compute_cams(model, batch.images, targets, options.method, options.layer)
        shares = thirds(result.maps)
        for row, index in enumerate(batch.indices.tolist()):
            path = Path(paths[index])
            order = np.argsort(-result.probabilities[row])[:3]
            top3 = tuple((int(ids[k]), float(result.probabilities[row, k])) for k in order)
            title = "  ".join(f"cell {c}: {p:.0%}" for c, p in top3)
            zero = bool(result.all_zero[row])
            overlay = None
            if not zero:
                overlay = save_overlay(
                    out / f"{path.stem}-{options.method}.png",
                    picture(batch.images[row], pre),
                    result.maps[row],
                    f"{path.name} ({options.method})\n{title}",
                )
            a, b, c = (float(v) for v in shares[row])
            done.append(Explained(str(path), overlay, top3, (a, b, c), zero))
            progress.advance()
    decoded = {e.path for e in done}
    bad.extend((p, "cannot decode") for p in paths if p not in decoded)
    return ExplainResult(run.name, options.method, tuple(done), tuple(bad))


def run_audit(
    workspace: Workspace, options: AuditOptions, *, progress: Progress | None = None
) -> AuditResult:
    """Audit the run's held-out images (every trained fold's, each scored by its own model)
    for a shortcut through ``options.band``; write audit.json, audit.md and pictures."""
    import pandas as pd

    from geotag import contracts
    from geotag.atomic import write_text
    from geotag.dataset import image_groups, read_images
    from geotag.evaluate.held_out import held_out_sets, image_root, training_sets
    from geotag.explain import heat, verdict
    from geotag.explain.measure import HeatPictures, grid_cells, measure_fold, summarise
    from geotag.explain.metadata import copyright_leak
    from geotag.explain.report import AuditReport, BandHeat
    from geotag.explain.strata import (
        STRATA,
        STRIP,
        STRIP_FREE,
        assign_strata,
        detector_agreement,
        draw_panoramas,
        take,
    )  # fmt: skip
    from geotag.train.device import resolve_device
    from geotag.train.runs import open_run

    started = time.perf_counter()
    progress = progress or NullProgress()
    if options.limit < 10:
        raise InputError(f"--limit must be at least 10 images; got {options.limit}")
    run = open_run(workspace, options.run)
    run.check_version()
    sets = held_out_sets(workspace, run, options.images)
    if options.images is not None:  # one test set for every fold: the first fold scores it
        sets = {min(sets): sets[min(sets)]}
    frame = pd.concat(list(sets.values()), ignore_index=True)
    root = image_root(workspace, options.images, frame)
    pre = run.preprocessing
    band = options.band
    mask = None if pre.mask is None else str(pre.mask)
    audited = band.uncovered_by(pre.mask)  # None: the run's own mask blanks all of it
    heat_band = audited or band

    # Who took each photo, and the panoramas to draw, strip ones first.
    strata = assign_strata(
        frame["copyright"].tolist(), [root / str(p) for p in frame["path"]], band
    )
    frame = frame.assign(
        stratum=strata.labels, by_copyright=strata.by_copyright,
        group=image_groups(frame).to_numpy(),
    )  # fmt: skip
    available = {name: int(strata.rows(name).sum()) for name in STRATA}
    sizes = frame.groupby("group").size().to_dict()
    queues = draw_panoramas(frame["group"].tolist(), strata.labels, options.seed)
    chosen, queues[STRIP] = take(queues[STRIP], sizes, options.limit // 2)
    for name in (STRIP_FREE, STRIP):  # the rest of the budget: official images, then strips
        room = options.limit - sum(sizes[g] for g in chosen)
        more, queues[name] = take(queues[name], sizes, room)
        chosen += more

    device = resolve_device(options.device)
    # What a model answers with no picture, from its data: its training images' commonest cell.
    majority = {
        fold: int(train["cell_id"].value_counts().idxmax())
        for fold, train in training_sets(workspace, run).items()
    }
    models: dict[int, Any] = {}
    pictures = HeatPictures(pre.input_size)

    def measure(groups: list[str]) -> pd.DataFrame:
        parts = []
        for fold, part in frame[frame["group"].isin(set(groups))].groupby("fold", sort=True):
            if fold not in models:
                models[fold] = run.build_model(int(fold))
            parts.append(
                measure_fold(
                    models[fold], run.fold_classes(int(fold)), part.reset_index(drop=True),
                    root, pre, heat_band=heat_band, band=audited,
                    majority_cell=majority[int(fold)], method=options.method,
                    layer=options.layer, batch_size=options.batch_size, device=device,
                    pictures=pictures, progress=progress,
                )
            )  # fmt: skip
        return pd.concat(parts, ignore_index=True)

    measured = measure(chosen)
    size = pre.input_size
    area = heat.band_area_share(heat_band, size, size)
    rounds = 1
    while True:
        ablation = (
            None
            if audited is None
            else summarise(measured, audited, area, available, seed=options.seed)
        )
        outcome, reasons = verdict.decide(ablation, mask)
        room = MAX_GROWTH * options.limit - len(measured)
        if outcome is not verdict.Verdict.INCONCLUSIVE or not queues[STRIP] or room <= 0:
            break
        # Too few strip images to see an effect of the size that counts: draw more of them.
        extra, queues[STRIP] = take(queues[STRIP], sizes, min(options.limit, room))
        measured = pd.concat([measured, measure(extra)], ignore_index=True)
        rounds += 1

    # Does the metadata leak? Over every image of the dataset, before any model.
    table = read_images(workspace) if options.images is None else pd.read_parquet(options.images)
    groups = image_groups(table)
    leak = None
    if groups.nunique() >= 2:
        leak = copyright_leak(
            table["copyright"].tolist(), table["cell_id"].tolist(), groups=groups.tolist(),
            seed=options.seed,
        )  # fmt: skip

    heat_figures = heat.heat_summary(
        measured["mass"].to_numpy(), area, grid_cells(measured),
        hits=measured["hit"].to_numpy(),
    )  # fmt: skip
    out = run.explain_dir
    out.mkdir(parents=True, exist_ok=True)
    files = _audit_pictures(out, pictures, heat_band)
    report = AuditReport(
        verdict=outcome,
        reasons=tuple(reasons),
        next_step=verdict.NEXT_STEPS[outcome],
        data_warning=verdict.data_warning(leak),
        run=run.name,
        folds=tuple(int(f) for f in sorted(measured["fold"].unique())),
        images=len(measured),
        available=available,
        rounds=rounds,
        method=options.method,
        band=str(band),
        mask=mask,
        audited_band=None if audited is None else str(audited),
        thresholds={
            "effect": verdict.EFFECT,
            "unstripped_effect": verdict.UNSTRIPPED_EFFECT,
            "heat_ratio": verdict.HEAT_RATIO,
            "heat_share": verdict.HEAT_SHARE,
        },
        heat=heat_figures,
        most_band_heat=tuple(BandHeat(path=t[4], band_mass=t[0]) for t in pictures.hottest),
        ablation=ablation,
        strip_detector=detector_agreement(
            measured["copyright"].tolist(), [root / str(p) for p in measured["path"]], band
        ),
        metadata=leak,
    )
    write_text(run.audit_path, contracts.dumps(report))
    write_text(out / "audit.md", report.markdown([f.name for f in files]))
    files = [run.audit_path, out / "audit.md", *files]
    return AuditResult(report, out, tuple(files), time.perf_counter() - started)


def _audit_pictures(out: Path, pictures: HeatPictures, band: Band) -> list[Path]:
    """The mean map, the images with the most heat in the band, the mean map per class."""
    from geotag.explain.overlay import save_contact_sheet, save_mean_cam

    size = pictures.size
    files = [
        save_mean_cam(
            out / "mean_cam.png", pictures.mean_map / max(pictures.measured, 1),
            f"mean Grad-CAM over {pictures.measured} images, band {band}", band,
        )
    ]  # fmt: skip
    if pictures.hottest:
        files.append(
            save_contact_sheet(
                out / "top_band_heat.png", [(t[1], t[2], t[3]) for t in pictures.hottest]
            )
        )
    grey = np.full((size, size, 3), 128, np.uint8)
    class_tiles = [
        (grey, pictures.per_class[c] / pictures.per_class_count[c],
         f"cell {c} (n={pictures.per_class_count[c]})")
        for c in sorted(pictures.per_class)
    ]  # fmt: skip
    if class_tiles:
        sheet = out / "mean_cam_per_class.png"
        files.append(save_contact_sheet(sheet, class_tiles[:60], columns=8))
    return files
