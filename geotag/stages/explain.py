"""The ``explain`` stage: Grad-CAM for photos, and the audit that catches a cheating model.

``run_explain`` saves an overlay per photo. ``run_audit`` measures, on held-out images,
where the model looks (heat in a band), what the band is worth (masking ablation against
an equal-area control band, and the band alone), and whether the copyright strings give
the location away, then gives a verdict (see ``geotag.explain.verdict``).
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
    import torch

    from geotag.explain.report import AuditReport
    from geotag.train.data import Preprocessing

CONTACT_SHEET = 18


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


def _picture(tensor: torch.Tensor, pre: Preprocessing) -> np.ndarray:
    """The model's input back as the uint8 RGB picture it saw."""
    mean = np.asarray(pre.mean)[:, None, None]
    std = np.asarray(pre.std)[:, None, None]
    pixels = (tensor.detach().cpu().numpy() * std + mean).clip(0, 1)
    return (pixels.transpose(1, 2, 0) * 255).round().astype(np.uint8)


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
    from geotag.explain.overlay import save_overlay
    from geotag.images import usable_images
    from geotag.train.runs import open_run

    progress = progress or NullProgress()
    run = open_run(workspace, options.run)
    run.check_version()
    usable, bad = usable_images(images, "explain", progress)
    classes = run.classes
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
    fold = run.trained_folds()[0] if run.trained_folds() else 0
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
                    _picture(batch.images[row], pre),
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
    import pandas as pd

    from geotag import contracts
    from geotag.atomic import write_text
    from geotag.dataset import image_groups, read_images
    from geotag.evaluate.held_out import held_out_sets, image_root
    from geotag.evaluate.inference import class_probabilities
    from geotag.explain import ablation, heat, verdict
    from geotag.explain.cam import compute_cams
    from geotag.explain.metadata import copyright_leak
    from geotag.explain.overlay import save_contact_sheet, save_mean_cam
    from geotag.explain.report import Ablation, AuditReport, BandHeat
    from geotag.train.device import resolve_device
    from geotag.train.runs import open_run

    started = time.perf_counter()
    progress = progress or NullProgress()
    if options.limit < 10:
        raise InputError(f"--limit must be at least 10 images; got {options.limit}")
    run = open_run(workspace, options.run)
    run.check_version()
    sets = held_out_sets(workspace, run, options.images)
    fold = min(sets)
    frame = sets[fold]
    if len(frame) > options.limit:
        frame = frame.sample(options.limit, random_state=options.seed).sort_index()
    frame = frame.reset_index(drop=True)
    root = image_root(workspace, options.images, frame)
    model = run.build_model(fold)
    pre = run.preprocessing
    classes = run.fold_classes(fold)
    centre_lat, centre_lon = classes.centres()
    true_class = classes.index_of(frame["cell_id"])
    device = resolve_device(options.device)
    paths = [str(p) for p in frame["path"]]
    band = options.band
    control = band.opposite()

    # 1. Heat in the band.
    size = pre.input_size
    masses = np.full(len(paths), np.nan)
    hits = np.zeros(len(paths), dtype=bool)
    # The CAM pass's own forward gives the unmasked predictions: no second pass for "full".
    full = np.full((len(paths), len(classes)), 1.0 / len(classes))
    mean_map = np.zeros((size, size))
    per_class_maps: dict[int, np.ndarray] = {}
    per_class_count: dict[int, int] = {}
    tiles: list[tuple[float, np.ndarray, np.ndarray, str, str]] = []
    progress.start("Grad-CAM over held-out images", len(paths))
    for batch in _loader(root, paths, pre, options.batch_size):
        if len(batch.indices) == 0:
            continue
        result = compute_cams(model, batch.images, None, options.method, options.layer)
        rows = batch.indices.numpy()
        masses[rows] = heat.band_mass(result.maps, band)
        hits[rows] = heat.pointing_game(result.maps, band)
        full[rows] = result.probabilities
        for row, index in enumerate(rows):
            if result.all_zero[row]:
                continue
            cam = result.maps[row]
            mean_map += cam
            cell = int(frame["cell_id"].iloc[index])
            per_class_maps[cell] = per_class_maps.get(cell, 0) + cam
            per_class_count[cell] = per_class_count.get(cell, 0) + 1
            tiles.append(
                (float(masses[index]), _picture(batch.images[row], pre), cam,
                 f"cell {cell}, {masses[index]:.0%} in band", paths[index])
            )  # fmt: skip
            tiles = sorted(tiles, key=lambda t: -t[0])[:CONTACT_SHEET]
        progress.advance(len(rows))
    area = heat.band_area_share(band, size, size)
    heat_figures = heat.heat_summary(masses, area, frame["cell_id"].to_numpy(), hits=hits)

    # 2. Masking ablation.
    conditions: dict[str, dict[str, Any]] = {
        "band_blanked": {"blank": band},
        "control_blanked": {"blank": control},
        "band_only": {"blank": band, "keep_only": True},
    }
    scored = {"full": full}
    for name, kwargs in conditions.items():
        probs, ok = class_probabilities(
            [model], root, [(p,) for p in paths], pre, batch_size=options.batch_size,
            device=device, progress=progress, task=f"ablation: {name.replace('_', ' ')}",
            **kwargs,
        )  # fmt: skip
        scored[name] = np.where(ok[:, None], probs, 1.0 / len(classes))
    correct, errors = {}, {}
    for name, probs in scored.items():
        correct[name], errors[name] = ablation.correct_and_errors(
            probs, true_class, frame["lat"].to_numpy(), frame["lon"].to_numpy(), centre_lat,
            centre_lon,
        )  # fmt: skip
    figures = ablation.ablation_figures(correct, errors, 1.0 / len(classes), options.seed)
    figures["band"], figures["control"] = str(band), str(control)
    ablation_figures = contracts.parse(Ablation, figures, "the masking ablation")

    # 3. Does the metadata leak? Over every image of the dataset, before any model.
    table = read_images(workspace) if options.images is None else pd.read_parquet(options.images)
    groups = image_groups(table)
    leak = None
    if groups.nunique() >= 2:
        leak = copyright_leak(
            table["copyright"].tolist(), table["cell_id"].tolist(), groups=groups.tolist(),
            seed=options.seed,
        )  # fmt: skip

    outcome, reasons = verdict.decide(ablation_figures, heat_figures)
    warning = verdict.data_warning(leak)
    out = run.explain_dir
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "mean_cam.png", out / "top_band_heat.png", out / "mean_cam_per_class.png"]
    measured = int(np.isfinite(masses).sum())
    save_mean_cam(files[0], mean_map / max(measured, 1),
                  f"mean Grad-CAM over {measured} images, band {band}", band)  # fmt: skip
    # The contact sheet's images, by name: where to look first.
    most_band_heat = tuple(BandHeat(path=t[4], band_mass=t[0]) for t in tiles)
    if tiles:
        save_contact_sheet(files[1], [(t[1], t[2], t[3]) for t in tiles])
    else:
        files.remove(out / "top_band_heat.png")
    grey = np.full((size, size, 3), 128, np.uint8)
    class_tiles = [
        (grey, per_class_maps[c] / per_class_count[c], f"cell {c} (n={per_class_count[c]})")
        for c in sorted(per_class_maps)
    ]
    if class_tiles:
        save_contact_sheet(files[2], class_tiles[:60], columns=8)
    else:
        files.remove(out / "mean_cam_per_class.png")
    report = AuditReport(
        verdict=outcome,
        reasons=tuple(reasons),
        next_step=verdict.NEXT_STEPS[outcome],
        data_warning=warning,
        run=run.name,
        fold=fold,
        images=len(paths),
        method=options.method,
        band=str(band),
        thresholds={
            "excess_drop": verdict.EXCESS_DROP,
            "heat_ratio": verdict.HEAT_RATIO,
            "heat_share": verdict.HEAT_SHARE,
        },
        heat=heat_figures,
        most_band_heat=most_band_heat,
        ablation=ablation_figures,
        metadata=leak,
    )
    write_text(run.audit_path, contracts.dumps(report))
    write_text(out / "audit.md", report.markdown([f.name for f in files]))
    files = [run.audit_path, out / "audit.md", *files]
    return AuditResult(report, out, tuple(files), time.perf_counter() - started)
