"""The demo's script: the public commands a newcomer would type, and the story they tell.

A careless collector scrapes the simulator with user-contributed photospheres kept, trains
a small model, and the audit catches it reading the photographer strip (SHORTCUT); the
same model retrained with the strip masked passes, at its honest accuracy. This module
plans the commands, runs them through a callback (``geotag demo`` passes its own
command line, so the demo types exactly what a user would) and reads back what they wrote.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geotag.errors import GeotagError, InputError
from geotag.explain.verdict import Verdict
from geotag.lock import LOCK_FILE, workspace_lock
from geotag.workspace import SETTINGS_FILE, RunFolder, Workspace

#: Written first into the demo's folder: only a folder holding it is ever cleaned.
MARKER = "demo.json"
CARELESS_RUN = "careless"
MASKED_RUN = "masked"
MASK_BOTTOM = 0.12
#: The demo's --min-confidence: the least sure fifth of photos get "not sure".
MIN_CONFIDENCE = 0.2


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: the full one takes about five minutes on 2 CPU cores, ``--fast``
    under three. Both are big enough for the careless model to learn the strip."""

    cell_km: float
    per_cell: int
    headings: str
    epochs: int
    lr: float


FULL = DemoSize(cell_km=400, per_cell=40, headings="0,180", epochs=12, lr=4e-3)
# ``--fast`` samples as many points as the full demo and trains for fewer epochs: with 30
# points per cell (7 or 10 epochs) the careless model no longer leant on the strip
# enough for the audit to call it, once the world's hills and landmarks gave the top band
# (the audit's control) something to read too (README).
FAST = DemoSize(cell_km=400, per_cell=40, headings="0,180", epochs=8, lr=4e-3)

COUNTRY = "India"
IMAGE_SIZE = 64
MODEL = "resnet10t"
#: A careless collector's dataset: most panoramas are user photospheres with a strip. At a
#: realistic 30% (or 50% for --fast) the demo's small model does not learn the strip in
#: its few minutes of training, and the audit rightly finds nothing (README, issue 14).
PHOTOSPHERES = 0.8


@dataclass(frozen=True)
class DemoStep:
    """One command of the demo: what it does, its arguments, and the files proving it ran."""

    title: str
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    # Steps that cost little (or resume by themselves) run again on a rerun.
    always: bool = False
    # A training step: its run, and the epochs its history must reach to be finished.
    run: str | None = None
    epochs: int = 0


def prepare(folder: Path, *, fresh: bool, seed: int, fast: bool) -> bool:
    """Make ``folder`` ready for the demo; True when an earlier demo's files are kept.

    ``fresh`` removes an earlier demo's folder first. A folder that holds anything but a
    demo is never touched: the demo would mix its files with the user's.
    """
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; choose a folder for the demo")
    # The lock file exists only while a command runs there: not the user's file.
    has_files = folder.is_dir() and any(p.name != LOCK_FILE for p in folder.iterdir())
    if has_files and not marker.is_file():
        raise InputError(
            f"{folder} holds files that are not a geotag demo; choose an empty or new folder"
        )
    wanted = {"seed": seed, "fast": fast}
    if has_files and not fresh:
        try:
            earlier = json.loads(marker.read_text())
        except ValueError:
            raise InputError(f"{marker} is damaged; pass --fresh to start the demo again") from None
        if not isinstance(earlier, dict) or {k: earlier.get(k) for k in wanted} != wanted:
            raise InputError(
                f"{folder} holds a demo made with {earlier}; pass --fresh to start it again "
                f"with {wanted}"
            )
        return True
    if has_files:
        # Held while emptying, so a command still running in the old demo is not pulled
        # from under; the lock file itself stays until the lock is released.
        with workspace_lock(Workspace(folder), "demo --fresh"):
            for child in folder.iterdir():
                if child.name == LOCK_FILE:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({**wanted, "environment": environment()}, indent=2) + "\n")
    return False


def environment() -> dict[str, object]:
    """What the demo's figures depend on besides the seed.

    On one machine the demo is bit-for-bit repeatable. Across machines its numbers move:
    float sums in convolutions and matrix products come out in another order with another
    CPU's vector units, BLAS library or thread count, and a few training images that land
    the other side of a decision change the epochs after them. These facts are recorded in
    demo.json so that a figure can be traced to the machine that gave it.
    """
    import os
    import platform

    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    from geotag import __version__

    return {
        "geotag": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "blas": sorted(
            f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('num_threads')} threads)"
            for pool in threadpool_info()
        ),
    }


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows elsewhere (the
    benchmarks name their machine with it too)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pipeline_steps(folder: Path, *, fast: bool, seed: int) -> list[DemoStep]:
    """Grid to audit, twice: the careless model, then the one trained with the strip masked."""
    size = FAST if fast else FULL
    w = ("-w", str(folder))
    train = (
        "train", *w, "--model", MODEL, "--no-pretrained", "--image-size", str(IMAGE_SIZE),
        "--epochs", str(size.epochs), "--lr", f"{size.lr:g}", "--folds", "5", "--seed", str(seed),
    )  # fmt: skip
    scrape = (
        "scrape", *w, "--provider", "sim", "--source", "default", "--photospheres",
        f"{PHOTOSPHERES:g}", "--size", str(IMAGE_SIZE), "--headings", size.headings,
        "--radius", "20000", "--rate", "2000", "--concurrency", "16", "--seed", str(seed),
    )  # fmt: skip
    return [
        DemoStep(
            f"an equal-area grid of {size.cell_km:g} km cells over {COUNTRY}",
            ("grid", *w, "--country", COUNTRY, "--cell-km", f"{size.cell_km:g}"),
            ("grid.parquet", "grid.png"),
        ),
        DemoStep(
            "uniform points in every cell",
            ("sample", *w, "--per-cell", str(size.per_cell), "--seed", str(seed)),
            ("points.parquet", "points.png"),
        ),
        DemoStep(
            "street-level images from the offline simulator, over real HTTP, user "
            "photospheres kept (as a careless collector would)",
            scrape,
            ("images.parquet", "manifest.sqlite"),
            always=True,
        ),
        *_train_eval_audit(
            w,
            (*train, "--name", CARELESS_RUN),
            CARELESS_RUN,
            size.epochs,
            (
                "a small CNN from scratch on the CPU",
                "accuracy against chance, km errors, maps",
                "the shortcut audit: does the model read the photographer strip?",
            ),
        ),
        *_train_eval_audit(
            w,
            (*train, "--mask-bottom", f"{MASK_BOTTOM:g}", "--name", MASKED_RUN),
            MASKED_RUN,
            size.epochs,
            (
                "the same model with the bottom strip blanked in every image",
                "its honest accuracy",
                "the audit again",
            ),
        ),
    ]


def _train_eval_audit(
    w: tuple[str, str],
    train: tuple[str, ...],
    run: str,
    epochs: int,
    titles: tuple[str, str, str],
) -> list[DemoStep]:
    files = _relative_run(run)
    return [
        DemoStep(
            titles[0],
            train,
            (str(files.config_path), str(files.weights(0))),
            run=run,
            epochs=epochs,
        ),
        DemoStep(
            titles[1],
            ("eval", *w, "--run", run),
            (str(files.metrics_path()), str(files.eval_dir() / "accuracy_map.png")),
        ),
        DemoStep(
            titles[2],
            ("explain", *w, "--audit", "--run", run),
            (str(files.audit_path), str(files.explain_dir / "mean_cam.png")),
        ),
    ]


def _relative_run(run: str) -> RunFolder:
    """A run's paths relative to the workspace, as step outputs name them."""
    return Workspace(Path()).run_folder(run)


def photo_steps(
    folder: Path, photos: list[str], sure_and_unsure: tuple[str, str] | None = None
) -> list[DemoStep]:
    """Predict held-out photos with the fixed model; Grad-CAM of both models on them; and
    the fixed model's surest and least sure held-out photo with their 90% regions."""
    w = ("-w", str(folder))
    pictures = (("surest", "sure.png"), ("least sure", "unsure.png"))
    doubt = [
        DemoStep(
            f"how sure: the {which} held-out photo, with its 90% region",
            (
                "predict",
                *w,
                "--run",
                MASKED_RUN,
                str(folder / photo),
                "--min-confidence",
                f"{MIN_CONFIDENCE:g}",
                "--map",
                str(folder / picture),
            ),
            (picture,),
            always=True,
        )
        for (which, picture), photo in zip(pictures, sure_and_unsure or (), strict=False)
    ]
    paths = tuple(str(folder / p) for p in photos)
    overlays = [Path(p).stem + "-gradcam.png" for p in photos]
    return [
        DemoStep(
            "where were these held-out photos taken?",
            ("predict", *w, "--run", MASKED_RUN, *paths, "--map", str(folder / "predict.png")),
            ("predict.png",),
            always=True,
        ),
        DemoStep(
            "where the careless model looks (the first is a photosphere)",
            ("explain", *w, "--run", CARELESS_RUN, *paths),
            tuple(str(_relative_run(CARELESS_RUN).explain_dir / name) for name in overlays),
            always=True,
        ),
        DemoStep(
            "and where the fixed model looks",
            ("explain", *w, "--run", MASKED_RUN, *paths),
            tuple(str(_relative_run(MASKED_RUN).explain_dir / name) for name in overlays),
            always=True,
        ),
        *doubt,
    ]


def sure_and_unsure_photos(folder: Path) -> tuple[str, str] | None:
    """The fixed model's surest and least sure photo of its first scored fold, by the
    confidence eval gave them (calibrated on the inner split, blind to the truth); None
    for a run without calibration."""
    import pandas as pd

    predictions = Workspace(folder).run_folder(MASKED_RUN).eval_dir() / "predictions.parquet"
    frame = pd.read_parquet(predictions)
    if "confidence" not in frame:
        return None
    frame = frame[frame["fold"] == frame["fold"].min()].sort_values(["confidence", "path"])
    return str(frame["path"].iloc[-1]), str(frame["path"].iloc[0])


def held_out_photos(folder: Path, count: int = 3) -> list[str]:
    """Held-out photos to predict and explain, relative to the workspace: first the one
    the careless model's audit found the most heat in the band of, then others from
    different cells. Fixed by the data, not drawn by chance."""
    from geotag.evaluate.held_out import held_out_sets
    from geotag.explain.report import AuditReport
    from geotag.train.runs import open_run

    workspace = Workspace(folder)
    audit = AuditReport.read(workspace.run_folder(CARELESS_RUN).audit_path)
    held_out = held_out_sets(workspace, open_run(workspace, MASKED_RUN), None)
    frame = held_out[min(held_out)].sort_values("path")
    hottest = [item.path for item in audit.most_band_heat[:1]]
    first = frame[frame["path"].isin(hottest)]
    others = frame[~frame["cell_id"].isin(first["cell_id"])].drop_duplicates("cell_id")
    return [str(p) for p in [*first["path"], *others["path"]][:count]]


def is_done(folder: Path, step: DemoStep) -> bool:
    if not all((folder / name).exists() for name in step.outputs):
        return False
    if step.run is None:
        return True
    # A training stopped half-way has weights already: only a full history means done.
    history = Workspace(folder).run_folder(step.run).history(0)
    return history.is_file() and len(history.read_text().splitlines()) - 1 >= step.epochs


def command_for(folder: Path, step: DemoStep) -> tuple[str, ...]:
    """The step's arguments, with ``--resume`` for a training an earlier demo left half done."""
    if step.run is not None and Workspace(folder).run_folder(step.run).config_path.is_file():
        return (*step.args, "--resume")
    return step.args


@dataclass(frozen=True)
class Story:
    """What the two audits and evaluations found: the demo's point in numbers."""

    careless_verdict: Verdict
    masked_verdict: Verdict
    careless_top1: float
    masked_top1: float
    careless_median_km: float
    masked_median_km: float
    chance: float
    #: The band's effect on the strip images (None: no strip image, or the band masked).
    careless_effect: float | None
    masked_effect: float | None

    @property
    def holds(self) -> bool:
        return self.careless_verdict is Verdict.SHORTCUT and self.masked_verdict is Verdict.PASS


def read_story(folder: Path) -> Story:
    """The verdicts and headline figures of both runs, from their audit.json and metrics.json."""
    from geotag.evaluate.summary import EvalMetrics
    from geotag.explain.report import AuditReport

    workspace = Workspace(folder)
    careless, masked = (workspace.run_folder(r) for r in (CARELESS_RUN, MASKED_RUN))
    careless_audit, masked_audit = (AuditReport.read(r.audit_path) for r in (careless, masked))

    def scores(run: RunFolder) -> tuple[float, float, float]:
        metrics = EvalMetrics.read(run.metrics_path())
        mean = metrics.per_image.mean
        return mean.top1, mean.distance(metrics.headline, "median_km"), metrics.chance_top1

    def effect(audit: AuditReport) -> float | None:
        return None if audit.headline is None else audit.headline.effect.value

    careless_top1, careless_km, chance = scores(careless)
    masked_top1, masked_km, _ = scores(masked)
    return Story(
        careless_audit.verdict,
        masked_audit.verdict,
        careless_top1,
        masked_top1,
        careless_km,
        masked_km,
        chance,
        effect(careless_audit),
        effect(masked_audit),
    )


#: The closing table: what each stage wrote, relative to the workspace.
WRITTEN = (
    ("grid", f"grid.parquet, grid.geojson, grid.png, {SETTINGS_FILE}"),
    ("sample", "points.parquet, points.png"),
    ("scrape", "images/, images.parquet, manifest.sqlite"),
    ("train", "runs/<run>/config.json, folds.csv, fold-<k>/model.safetensors, history.csv"),
    ("eval", "runs/<run>/eval/metrics.json, confusion_matrix.png, accuracy_map.png, ..."),
    ("explain --audit", "runs/<run>/explain/audit.md, audit.json, mean_cam.png, ..."),
    ("predict", "predict.png (the first photo's top cells), sure.png and unsure.png (90% regions)"),
    ("explain", "runs/<run>/explain/<photo>-gradcam.png"),
)


class StepFailed(GeotagError):
    """A command of the demo exited non-zero; it has already said why."""

    def __init__(self, command: str, code: int) -> None:
        super().__init__(f"`{command}` exited with code {code}")
        self.code = code


@dataclass(frozen=True)
class DemoResult:
    story: Story
    resumed: bool
    seconds: float


def run_demo(
    folder: Path,
    *,
    fast: bool,
    fresh: bool,
    seed: int,
    run_command: Callable[[tuple[str, ...]], int],
    on_step: Callable[[DemoStep, str, bool], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run every step with ``run_command`` (arguments after ``geotag``; returns the exit
    code), skipping steps an earlier demo in ``folder`` finished.

    ``on_step(step, command, skipped)`` is told of each step before it runs. A step that
    exits non-zero stops the demo with :class:`StepFailed`.
    """
    started = time.perf_counter()
    notify = on_step or (lambda step, command, skipped: None)
    resumed = prepare(folder, fresh=fresh, seed=seed, fast=fast)
    if resumed and on_notice is not None:
        on_notice(f"Going on with the demo in {folder} (--fresh starts it again).")

    def run_steps(steps: list[DemoStep]) -> None:
        for step in steps:
            if resumed and not step.always and is_done(folder, step):
                notify(step, shlex.join(["geotag", *step.args]), True)
                continue
            args = command_for(folder, step)
            command = shlex.join(["geotag", *args])
            notify(step, command, False)
            code = run_command(args)
            if code:
                raise StepFailed(command, int(code))

    run_steps(pipeline_steps(folder, fast=fast, seed=seed))
    run_steps(photo_steps(folder, held_out_photos(folder), sure_and_unsure_photos(folder)))
    return DemoResult(read_story(folder), resumed, time.perf_counter() - started)
