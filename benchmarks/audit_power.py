"""How the shortcut audit fares as user photospheres become a minority: the pooled rule of
geotag 0.1 against the stratified rule, side by side, on models trained for the purpose.

Two experiments on the simulator (India; the demo's cells, points per cell, image size,
model, epochs and learning rate: resnet10t from scratch on the CPU):

1. **A model that reads the strip, audited where strips are rare.** One careless model is
   trained where photospheres are common (80%) and learns the strip; it is audited
   (``--images``) on held-out test sets drawn from the same world at 10, 20, 50 and 80%
   photospheres (new sample points; panoramas seen in training dropped). The model is the
   same in every row; only the share of strip images the audit sees changes, which is the
   dilution the stratified audit exists for.
2. **Models trained at each share** (every fold, audited on their own held-out images):
   whether a small model learns the strip at all from few strip images, and what each rule
   says when it does not. Then two controls: the 20% data trained with the strip masked
   (``--mask-bottom 0.12``), and data scraped with ``--source outdoor``.

Columns: **pooled (old)** is the rule geotag used before issue 14, on every audited
image: the band's cost minus the control's (``excess``) at least 5 points with its
interval above zero and the band alone above 1/K -> SHORTCUT; any one sign -> SUSPECT;
else PASS (computed from the same figures; its original intervals resampled images,
which only made them narrower). **stratified (new)** is the audit's verdict, with its
strip-stratum effect, 95% interval and the smallest effect it could have detected.

    .venv/bin/python benchmarks/audit_power.py                  # about 45 min on 2 cores
    .venv/bin/python benchmarks/audit_power.py --only-reader    # experiment 1, ~8 min
    .venv/bin/python benchmarks/audit_power.py --quick          # a smoke run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from machine import machine_line  # benchmarks/machine.py

from geotag.demo import FULL, IMAGE_SIZE, MODEL
from geotag.explain.report import AuditReport, Stratum
from geotag.explain.verdict import EFFECT
from geotag.scrape.providers.base import ImageOptions
from geotag.stages.explain import AuditOptions, run_audit
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.stages.train import TrainOptions, run_train
from geotag.workspace import Workspace


def pooled_rule(pooled: Stratum, classes: int) -> str:
    """geotag 0.1's verdict: pooled excess and the band alone against 1/K."""
    reads = pooled.excess.ci[0] > 0
    informs = pooled.conditions["band_only"].accuracy_ci[0] > 1 / classes
    if reads and pooled.excess.value >= EFFECT and informs:
        return "SHORTCUT"
    return "SUSPECT" if reads or informs else "PASS"


def scraped(
    root: Path, fraction: float, args: argparse.Namespace, *, source: str = "default",
    sample_seed: int | None = None,
) -> Workspace:  # fmt: skip
    ws = Workspace(root)
    run_grid(ws, country="India", cell_km=args.cell_km)
    run_sample(ws, per_cell=args.per_cell, seed=args.seed if sample_seed is None else sample_seed)
    image = ImageOptions(headings=(0.0, 180.0), size=args.image_size, radius_m=20000,
                         source=source)  # fmt: skip
    world = {"photospheres": fraction, "seed": args.seed}
    run_scrape(ws, ScrapeOptions(provider="sim", image=image, concurrency=16, rate=5000,
                                 provider_options=world))  # fmt: skip
    return ws


def test_set(root: Path, fraction: float, trained_on: Workspace, args: argparse.Namespace) -> Path:
    """Held-out images from the same world at another share of photospheres: new sample
    points, and no panorama the model was trained on."""
    ws = scraped(root, fraction, args, sample_seed=args.seed + 1)
    table = pd.read_parquet(ws.images_parquet)
    seen = set(pd.read_parquet(trained_on.images_parquet)["pano_id"])
    path = root / "test.parquet"
    table[~table["pano_id"].isin(seen)].reset_index(drop=True).to_parquet(path)
    return path


def trained(
    ws: Workspace, name: str, args: argparse.Namespace, *, mask: float = 0.0, fold: str = "all"
) -> None:
    options = TrainOptions(
        model=MODEL, pretrained=False, image_size=args.image_size, epochs=args.epochs,
        lr=FULL.lr, folds=args.folds, fold=fold, mask_bottom=mask, workers=0, device="cpu",
        seed=args.seed, name=name,
    )  # fmt: skip
    run_train(ws, options)


def audited(
    ws: Workspace, name: str, args: argparse.Namespace, images: Path | None = None
) -> AuditReport:
    return run_audit(
        ws, AuditOptions(run=name, images=images, limit=args.limit, device="cpu")
    ).report


def row(label: str, report: AuditReport, classes: int) -> list[str]:
    ablation = report.ablation
    if ablation is None:
        return [label, "-", "-", str(report.verdict), "band masked at input", "-", "-"]
    strip = ablation.strata.get("strip")
    pooled = ablation.pooled
    old = f"{pooled_rule(pooled, classes)} ({pooled.excess.value:+.1%})"
    if strip is None:
        return [label, "0", old, str(report.verdict), "no strip images", "-", "-"]
    low, high = strip.effect.ci
    return [
        label, f"{strip.images} ({strip.panoramas})", old, str(report.verdict),
        f"{strip.effect.value:+.1%} ({low:+.1%} to {high:+.1%})",
        f"{strip.detectable:.1%}", f"{strip.conditions['band_only'].accuracy:.1%} vs "
        f"{strip.baseline:.1%}",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", default="0.1,0.2,0.5,0.8")
    parser.add_argument("--reader-fraction", type=float, default=0.8,
                        help="photospheres in the data the strip reader is trained on")  # fmt: skip
    # The demo's recipe (its careless model is the README's strip reader).
    parser.add_argument("--cell-km", type=float, default=FULL.cell_km)
    parser.add_argument("--per-cell", type=int, default=FULL.per_cell)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only-reader", action="store_true",
                        help="experiment 1 only: the strip reader on every test set")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one small test set, one epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.fractions, args.per_cell, args.epochs, args.cell_km = "0.2", 8, 1, 600
        args.only_reader = True
    fractions = [float(f) for f in args.fractions.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"{machine_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"India, {args.cell_km:g} km cells, {args.per_cell} points per cell, two headings, "
          f"{args.image_size} px; resnet10t from scratch, {args.epochs} epochs; audit of "
          f"bottom:0.1, --limit {args.limit}")  # fmt: skip
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        reader_ws = scraped(base / "reader", args.reader_fraction, args)
        trained(reader_ws, "reader", args, fold="0")
        classes = _classes(reader_ws)
        for fraction in fractions:
            images = test_set(base / f"test{fraction:g}", fraction, reader_ws, args)
            label = f"reader ({args.reader_fraction:g}) on test set {fraction:g}"
            rows.append(row(label, audited(reader_ws, "reader", args, images), classes))
        if not args.only_reader:
            for fraction in fractions:
                ws = scraped(base / f"p{fraction:g}", fraction, args)
                trained(ws, "careless", args)
                rows.append(row(f"trained at {fraction:g}", audited(ws, "careless", args),
                                _classes(ws)))  # fmt: skip
                if fraction == 0.2:
                    trained(ws, "masked", args, mask=0.12)
                    rows.append(row("trained at 0.2, --mask-bottom 0.12",
                                    audited(ws, "masked", args), _classes(ws)))  # fmt: skip
            outdoor = scraped(base / "outdoor", 0.2, args, source="outdoor")
            trained(outdoor, "outdoor", args)
            rows.append(row("trained on --source outdoor", audited(outdoor, "outdoor", args),
                            _classes(outdoor)))  # fmt: skip
    header = ["model, data", "strip images (panoramas)", "pooled rule (old), excess",
              "stratified verdict (new)", "strip effect (95% CI)", "detectable",
              "band alone vs baseline"]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    print(f"total {time.perf_counter() - started:.0f} s")


def _classes(ws: Workspace) -> int:
    from geotag.train.runs import open_run

    return len(open_run(ws).classes)


if __name__ == "__main__":
    main()
