"""Is the statement of doubt honest? Calibration, 90% regions and selective prediction on
the demo's data (issue 17).

On the demo's workspace (``geotag demo``: India, 400 km cells, the simulator's street views
at 64 px), a model trained as the demo's masked one (resnet10t from scratch, the bottom
strip blanked) on every fold of ``--folds`` (default 3) is evaluated; each fold's
temperature, conformal threshold and confidence score were fitted on its inner validation
split at training time, so every figure here is on photos none of them saw. Printed per
fold, per image and per location (the headings of a place fused): ECE (15 bins) before and
after temperature scaling, empirical coverage of the regions at ``--coverage``, their mean
and median area, the worst tenth of cells' coverage, and selective prediction at 50%, 80%
and 100% answered.

Targets: coverage at 0.9 within [0.87, 0.95] on every fold, per image and per location; ECE
after at most half of the ECE before, or under 0.03.

What the data allow is printed beside them: the interval a fold's coverage falls in 95 times
in 100 when conformal prediction works as promised (eval's ``coverage_low``/``high``: the
finite-sample law Beta(k, n+1-k) of its n calibration photos, k = ceil((n+1) q), then the
Beta-binomial noise of its scored photos, both sizes divided by the design effect of
photos sharing a place), the chance that every fold lands in the target range if it does,
and the ECE a perfectly calibrated model would show on as many photos (binned ECE is biased
upwards on a finite sample). Then the oracle: each fold's ECE with the temperature chosen on
its scored photos themselves (by NLL, and the lowest ECE of any on a grid), which no
calibration may use but none can beat. ``--val-fraction`` sets the inner split, which is the
calibration set (geotag's default 0.1).

    .venv/bin/python benchmarks/bench_doubt.py                      # ~15 min on 2 cores
    .venv/bin/python benchmarks/bench_doubt.py --workspace demo-workspace   # reuse a demo
    .venv/bin/python benchmarks/bench_doubt.py --quick              # the --fast demo, 2 folds
    .venv/bin/python benchmarks/bench_doubt.py --val-fraction 0.2   # a larger calibration set
    .venv/bin/python benchmarks/bench_doubt.py --fresh 20           # + 20 new points a cell

``--fresh N`` also scores places no fold ever saw: N new points a cell in the same world
(panoramas the demo has are dropped), each fold's regions by ``eval --images`` (written to
the run's ``eval-images-fresh/``) and ``predict``'s union of the folds' regions.

Prints machine facts, the tables and one PASS/MISS line per target; always exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine_line  # benchmarks/machine.py

from geotag.demo import FAST, FULL, IMAGE_SIZE, MASK_BOTTOM, MODEL

RUN = "doubt-masked"
COVERAGE_RANGE = (0.87, 0.95)
ECE_FLOOR = 0.03


def geotag(*args: str) -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geotag", *args], check=True, stdout=subprocess.DEVNULL)
    print(f"  geotag {args[0]} ... {time.perf_counter() - started:.0f} s", flush=True)


def chance_in_range(n_cal: float, n_test: float, target: float) -> float:
    """The chance that one fold's coverage lands in :data:`COVERAGE_RANGE` when its
    calibration is valid: the Beta-binomial law geotag's ``coverage_range`` uses, at the
    fold's effective sizes."""
    from scipy.stats import betabinom

    from geotag.doubt.conformal import coverage_distribution

    a, b = coverage_distribution(math.floor(n_cal), target)
    m = max(1, math.floor(n_test))
    if a == 0.0:
        return float(COVERAGE_RANGE[0] <= 1.0 <= COVERAGE_RANGE[1])
    low, high = math.ceil(COVERAGE_RANGE[0] * m - 1e-9), math.floor(COVERAGE_RANGE[1] * m + 1e-9)
    return float(betabinom.cdf(high, m, a, b) - betabinom.cdf(low - 1, m, a, b))


def table(metrics: dict, summary: str) -> list[tuple[str, dict]]:
    """Print one row per fold and the mean; return (name, doubt) per fold, each with the
    photos it scored (``n``)."""
    part = metrics[summary]
    folds = [(f"fold {k}", {**v["doubt"], "n": v["n"]}) for k, v in part["per_fold"].items()]
    rows = [*folds, ("mean", part["mean"]["doubt"])]
    print(f"\n{summary.replace('_', ' ')}: target {rows[0][1]['target']:g}")
    head = ("", "n cal", "T", "ECE before", "ECE after", "ECE floor", "coverage", "mean km²",
            "median km²", "mean share", "worst 10%", "top-1 @50%", "top-1 @100%", "km @50%",
            "km @100%")  # fmt: skip
    print("".join(f"{h:>12}" for h in head))
    for name, d in rows:
        s = d["selective"]
        cells = (
            name, f"{d['calibration_n']:.0f}", f"{d['temperature']:.2f}",
            f"{d['ece_before']:.3f}", f"{d['ece_after']:.3f}", f"{d['ece_floor']:.3f}",
            f"{d['coverage']:.3f}",
            f"{d['region_km2_mean']:,.0f}", f"{d['region_km2_median']:,.0f}",
            f"{d['region_share_mean']:.1%}", f"{d['worst_cells_coverage']:.3f}",
            f"{s['50']['top1']:.1%}", f"{s['100']['top1']:.1%}",
            f"{s['50']['median_km']:,.0f}", f"{s['100']['median_km']:,.0f}",
        )  # fmt: skip
        print("".join(f"{c:>12}" for c in cells))
    curve = part["mean"]["doubt"]["curve"]
    print("  coverage at each target (mean over folds): "
          + ", ".join(f"{t}: {v['coverage']:.3f}" for t, v in curve.items()))  # fmt: skip
    return folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a finished demo to reuse")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--quick", action="store_true", help="the --fast demo, 2 folds")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument(
        "--fresh", type=int, default=0, help="also score N new points a cell no fold ever saw"
    )
    args = parser.parse_args()
    run = RUN if args.val_fraction == 0.1 else f"{RUN}-val{args.val_fraction:g}"
    size = FAST if args.quick else FULL
    folds = 2 if args.quick else args.folds
    print(f"{machine_line()}; {folds} folds, {size.epochs} epochs")
    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or Path(tmp) / "demo"
        if not (ws / "images.parquet").is_file():
            geotag("demo", str(ws), *(["--fast"] if args.quick else []))
        geotag(
            "train", "-w", str(ws), "--model", MODEL, "--no-pretrained", "--image-size",
            str(IMAGE_SIZE), "--epochs", str(size.epochs), "--lr", f"{size.lr:g}",
            "--folds", str(folds), "--fold", "all", "--seed", "0", "--mask-bottom",
            f"{MASK_BOTTOM:g}", "--val-fraction", f"{args.val_fraction:g}", "--name", run,
            *(["--resume"] if (ws / "runs" / run / "config.json").is_file() else []),
        )  # fmt: skip
        geotag("eval", "-w", str(ws), "--run", run, "--coverage", f"{args.coverage:g}")
        metrics = json.loads((ws / "runs" / run / "eval" / "metrics.json").read_text())
        print(f"\n{metrics['images']:,} images; --val-fraction {args.val_fraction:g}; confidence "
              f"score chosen on the inner splits: {metrics['confidence_score']}")  # fmt: skip
        for summary in ("per_image", "per_location"):
            verdicts(table(metrics, summary), summary, args.coverage)
            pooled = metrics["pooled_calibration"][summary]
            halved = pooled["ece_after"] <= pooled["ece_before"] / 2
            verdict = "PASS" if halved or pooled["ece_after"] < ECE_FLOOR else "MISS"
            print(
                f"{verdict}  {summary}, every fold's {pooled['photos']:,} photos together: ECE "
                f"{pooled['ece_before']:.3f} -> {pooled['ece_after']:.3f} (a perfectly calibrated "
                f"model: {pooled['ece_floor']:.3f})"
            )
        oracle_temperatures(ws, run)
        if args.fresh:
            fresh_photos(ws, Path(tmp) / "fresh", run, args.fresh, args.coverage)


def oracle_temperatures(ws: Path, run_name: str) -> None:
    """What temperature scaling could do at best here: each fold's held-out photos scaled
    by the temperature chosen on those very photos (an oracle no calibration may use; by
    their NLL, and the one with the lowest ECE on a grid), beside the fold's own."""
    import torch

    from geotag.dataset import GROUP, group_views
    from geotag.doubt import calibration, temperature
    from geotag.evaluate.held_out import held_out_sets, image_root
    from geotag.evaluate.inference import infer
    from geotag.evaluate.metrics import fuse_by_group
    from geotag.train.runs import open_run
    from geotag.workspace import Workspace

    workspace = Workspace(ws)
    run = open_run(workspace, run_name)
    sets = held_out_sets(workspace, run, None)
    root = image_root(workspace, None, next(iter(sets.values())))
    grid = np.round(np.linspace(0.5, 2.5, 201), 3)
    print("\noracle: ECE with the temperature chosen on the scored photos themselves")
    pooled: dict[str, list[tuple[temperature.Reliability, ...]]] = {}
    for fold, frame in sets.items():
        fold_calibration = calibration.read(run.calibration(fold))
        if fold_calibration is None:
            print(f"  fold {fold}: not calibrated")
            continue
        views, frame = group_views(frame, run.views)
        done = infer([run.build_model(fold)], root, views, run.preprocessing,
                     device=torch.device("cpu"))  # fmt: skip
        probs, frame = done.probs[done.ok], frame[done.ok].reset_index(drop=True)
        labels = run.fold_classes(fold).index_of(frame["cell_id"]).astype(np.int64)
        fused, _, first = fuse_by_group(probs, frame[GROUP].to_numpy())
        for kind, p, y, split in (
            ("per_image", probs, labels, fold_calibration.per_image),
            ("per_location", fused, labels[first], fold_calibration.per_location),
        ):
            known = y >= 0

            def ece(t: float, p: np.ndarray = p[known], y: np.ndarray = y[known]) -> float:
                return temperature.reliability(temperature.scale(p, t), y).ece

            by_nll = temperature.fit_temperature(p[known], y[known])
            best = min(grid, key=ece)
            print(
                f"  fold {fold} {kind}: T=1 {ece(1.0):.3f}; its calibration's T "
                f"{split.temperature:.2f} {ece(split.temperature):.3f}; oracle T by NLL "
                f"{by_nll:.2f} {ece(by_nll):.3f}; lowest ECE of any T ({best:.2f}) {ece(best):.3f}"
            )
            pooled.setdefault(kind, []).append(
                tuple(
                    temperature.reliability(temperature.scale(p[known], t), y[known])
                    for t in (1.0, split.temperature, by_nll)
                )
            )
    for kind, rows in pooled.items():
        eces = [temperature.Reliability.pooled(list(r)).ece for r in zip(*rows, strict=True)]
        print(
            f"  every fold together, {kind}: T=1 {eces[0]:.3f}; the folds' own {eces[1]:.3f}; "
            f"each fold's oracle T by NLL {eces[2]:.3f}"
        )


def fresh_photos(ws: Path, fresh: Path, run: str, per_cell: int, target: float) -> None:
    """Score photos of new places no fold trained, stopped or calibrated on: new points of
    the same world (panoramas the demo already has are dropped), each fold's regions by
    ``eval --images`` and predict's union of the folds' regions photo by photo."""
    import pandas as pd

    from geotag.stages.predict import PredictOptions, run_predict
    from geotag.workspace import Workspace

    settings = json.loads(json.dumps(Workspace(ws).stage_settings("grid")))
    geotag("grid", "-w", str(fresh), "--country", str(settings["region"]),
           "--cell-km", f"{settings['cell_km']:g}", "--shape", str(settings["shape"]))  # fmt: skip
    if Workspace(fresh).stage_settings("grid").get("grid_id") != settings.get("grid_id"):
        print("MISS  the fresh workspace's grid differs from the demo's: not compared")
        return
    geotag("sample", "-w", str(fresh), "--per-cell", str(per_cell), "--seed", "1017")
    geotag("scrape", "-w", str(fresh), "--provider", "sim", "--source", "default",
           "--photospheres", "0.8", "--size", "64", "--headings", "0,180", "--radius",
           "20000", "--rate", "2000", "--concurrency", "16")  # fmt: skip
    known = set(pd.read_parquet(ws / "images.parquet")["pano_id"])
    images = pd.read_parquet(fresh / "images.parquet")
    images = images[~images["pano_id"].isin(known)].reset_index(drop=True)
    table_path = fresh / "fresh.parquet"
    images.to_parquet(table_path, index=False)
    geotag("eval", "-w", str(ws), "--run", run, "--images", str(table_path),
           "--coverage", f"{target:g}")  # fmt: skip
    metrics_path = Workspace(ws).run_folder(run).metrics_path(images=table_path)
    metrics = json.loads(metrics_path.read_text())
    print(f"\nfresh places: {len(images):,} images of {images['pano_id'].nunique():,} panoramas "
          "the demo does not have")  # fmt: skip
    for summary in ("per_image", "per_location"):
        folds = metrics[summary]["per_fold"]
        print(f"  each fold's regions, {summary.replace('_', ' ')}: coverage "
              + ", ".join(f"{f['doubt']['coverage']:.3f}" for f in folds.values()))  # fmt: skip
    result = run_predict(
        Workspace(ws), [fresh / p for p in images["path"]],
        PredictOptions(run=run, device="cpu", coverage=target),
    )  # fmt: skip
    cell_of = dict(zip(images["path"].map(lambda p: Path(p).name), images["cell_id"], strict=True))
    inside = [
        int(cell_of[Path(p.paths[0]).name]) in (p.doubt.cells or ()) for p in result.predictions
    ]
    area = np.mean([p.doubt.region_km2 for p in result.predictions])
    verdict = "PASS" if np.mean(inside) >= target - 0.02 else "MISS"
    print(
        f"{verdict}  predict's union of the folds' regions: coverage {np.mean(inside):.3f} "
        f"(target {target:g}), mean {area:,.0f} km² per image"
    )


def verdicts(folds_doubt: list[tuple[str, dict]], summary: str, target: float) -> None:
    """The issue's two targets, each beside what these sample sizes allow."""
    low, high = COVERAGE_RANGE
    inside = [low <= d["coverage"] <= high for _, d in folds_doubt]
    print(
        f"{'PASS' if all(inside) else 'MISS'}  {summary}: coverage in [{low}, {high}] on "
        f"{sum(inside)} of {len(inside)} folds"
    )
    chance = 1.0
    for name, d in folds_doubt:
        a, b, effect = d["coverage_low"], d["coverage_high"], d["design_effect"]
        lawful = "inside" if a <= d["coverage"] <= b else "OUTSIDE"
        chance *= chance_in_range(d["calibration_n"] / effect, d["n"] / effect, target)
        print(
            f"      {name}: {d['coverage']:.3f}; with {d['calibration_n']:.0f} calibration and "
            f"{d['n']:.0f} scored (design effect {effect:.2f}), a valid calibration gives "
            f"[{a:.3f}, {b:.3f}] 95 times in 100: {lawful}"
        )
    print(
        f"      chance that every fold lands in [{low}, {high}] with a valid calibration of "
        f"these sizes: {chance:.2f}"
    )
    halved = [
        d["ece_after"] <= d["ece_before"] / 2 or d["ece_after"] < ECE_FLOOR for _, d in folds_doubt
    ]
    print(
        f"{'PASS' if all(halved) else 'MISS'}  {summary}: ECE after <= half before or "
        f"< {ECE_FLOOR} on {sum(halved)} of {len(halved)} folds ("
        + ", ".join(
            f"{d['ece_before']:.3f} -> {d['ece_after']:.3f}, floor {d['ece_floor']:.3f}"
            for _, d in folds_doubt
        )
        + ")"
    )


if __name__ == "__main__":
    main()
