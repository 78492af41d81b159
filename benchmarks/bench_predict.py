"""Benchmark ``geotag predict`` over a folder of JPEGs against inference-only throughput.

What it measures, side by side in one run:

1. **predict**: ``run_predict`` on a folder of simulator JPEGs (256 px, as scraped): the
   header check, decoding, the run's preprocessing, the model, top-k, the predicted point
   and the offline place lookup, timed end to end after one untimed warm-up run (which
   pays the one-off imports).
2. **in memory**: the same model, batch size and resolution on tensors already in memory,
   under ``torch.no_grad``: the inference-only limit.

3. **regions** (issue #17): ``run_predict`` with the statement of doubt (each fold's
   calibrated region, their union as GeoJSON with its area, the confidence) against
   ``regions=False``, each with its answers turned into JSON records (what ``predict
   --json`` prints), alternating the two in the same rounds, once for the folder and once
   for a single photo (the CLI's common case). The untrained run is given India's grid at
   250 km and a calibration fitted on its own answers to the photos (labels drawn at
   random); with ``--workspace W --run R`` a trained, calibrated run and its own photos are
   timed instead (the demo's: regions of real doubt, a small model that makes them cost
   the most).

Targets: predict/in-memory >= 0.9 on this CPU for resnet18 at 224 px (issue #6); regions at
most 10% more than plain prediction (issue #17). The run is made by hand (config + freshly
initialised weights): speed does not depend on training.

    .venv/bin/python benchmarks/bench_predict.py [--images 256] [--repeats 3]
    .venv/bin/python benchmarks/bench_predict.py --quick
    .venv/bin/python benchmarks/bench_predict.py --workspace demo-workspace --run masked

Prints machine facts, the tables and PASS/MISS lines; always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from machine import machine_line  # benchmarks/machine.py
from untrained_run import write_untrained_run

from geotag.sim import World
from geotag.stages.predict import PredictOptions, run_predict
from geotag.workspace import Workspace

TARGET_RATIO = 0.9
CLASSES = 58  # the original study's India grid
REGION_TARGET = 1.10
REGION_CELL_KM = 250


def make_photos(folder: Path, count: int) -> None:
    """Simulator views around Bangalore, 256 px, as a scrape would have saved them."""
    world = World(0)
    folder.mkdir(parents=True)
    made = 0
    step = 0
    while made < count:
        pano = world.nearest(12.5 + (step % 20) * 0.05, 77.0 + (step // 20) * 0.05, 5000)
        step += 1
        if pano is None:
            continue
        for heading in (0, 90, 180, 270):
            if made < count:
                data = world.render(pano.pano_id, heading, 0, 90, 256, 256)
                (folder / f"{made:05d}.jpg").write_bytes(data)
                made += 1


def make_run(ws: Workspace, model_name: str, size: int) -> torch.nn.Module:
    return write_untrained_run(
        ws,
        model_name,
        size,
        range(CLASSES),
        [8.0 + 0.5 * i for i in range(CLASSES)],
        [70.0 + 0.4 * i for i in range(CLASSES)],
    )


def make_calibrated_run(ws: Workspace, model_name: str, size: int, photos: Path) -> None:
    """Run "bench-regions": untrained weights over India's grid, with a calibration fitted
    on the model's own answers to ``photos`` (labels drawn at random, seeded)."""
    import numpy as np

    from geotag.doubt import calibration
    from geotag.evaluate.inference import class_probabilities
    from geotag.gridfile import load_grid
    from geotag.stages.grid import run_grid
    from geotag.train.runs import open_run, write_config

    run_grid(ws, country="India", cell_km=REGION_CELL_KM)
    cells = load_grid(ws).cells
    lat, lon = cells["center_lat"].to_numpy(), cells["center_lon"].to_numpy()
    write_untrained_run(ws, model_name, size, cells["cell_id"], lat, lon, name="bench-regions")
    run = open_run(ws, "bench-regions")
    paths = sorted(str(p) for p in photos.glob("*.jpg"))
    probs, _ = class_probabilities([run.build_model(0)], Path("/"), [(p,) for p in paths],
                                   run.preprocessing)  # fmt: skip
    labels = np.random.default_rng(0).integers(0, len(cells), len(paths))
    split = calibration.fit(probs, labels, lat, lon)
    calibration.write(run.calibration(0), calibration.FoldCalibration(split, split))
    write_config(run, replace(run.config, confidence_score="top_probability"))


def region_cost(ws: Workspace, photos: list[Path], run: str, repeats: int, label: str) -> None:
    """Plain prediction against prediction with regions, interleaved; median and ratio."""
    plain = PredictOptions(run=run, device="cpu", workers=0, regions=False)
    doubt = PredictOptions(run=run, device="cpu", workers=0)
    answered = run_predict(ws, photos, doubt)  # warm-up of both
    if any(p.doubt is None for p in answered.predictions):
        print(f"MISS  {label}: run {run} gave no region (not calibrated?)")
        return
    run_predict(ws, photos, plain)
    times: dict[str, list[float]] = {"plain": [], "regions": []}
    for repeat in range(repeats):
        order = (("plain", plain), ("regions", doubt))
        for name, options in order if repeat % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            # What `predict --json` does: the answers, and each as its JSON record.
            records = [p.to_json() for p in run_predict(ws, photos, options).predictions]
            times[name].append(time.perf_counter() - started)
            assert ("region" in records[0]) == (name == "regions")
    plain_s, regions_s = statistics.median(times["plain"]), statistics.median(times["regions"])
    ratio = regions_s / plain_s
    print(
        f"{label:<40} {plain_s * 1000:>12,.0f} {regions_s * 1000:>12,.0f} {ratio:>8.3f}"
        f"   mean region {np.mean([p.doubt.region_km2 for p in answered.predictions]):,.0f} km²"  # type: ignore[union-attr]
    )
    verdict = "PASS" if ratio <= REGION_TARGET else "MISS"
    print(f"{verdict}  {label}: regions cost {ratio - 1:+.1%} (target <= +10%)")


def region_table(ws: Workspace, photos: list[Path], run: str, repeats: int) -> None:
    print(f"\nregions: {repeats} interleaved runs after a warm-up, run {run}")
    print(f"{'case':<40} {'plain ms':>12} {'regions ms':>12} {'ratio':>8}")
    region_cost(ws, photos, run, repeats, f"{len(photos)} photos, one call")
    region_cost(ws, photos[:1], run, repeats, "1 photo, one call")


def in_memory_rate(model: torch.nn.Module, size: int, batch: int, images: int) -> float:
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        model(x)
        steps = max(1, images // batch)
        started = time.perf_counter()
        for _ in range(steps):
            model(x)
    return steps * batch / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small model, few images, 1 run")
    parser.add_argument("--workspace", type=Path, help="time regions on this trained workspace")
    parser.add_argument("--run", default="masked", help="its calibrated run (with --workspace)")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.image_size, args.images, args.repeats = "resnet10t", 96, 64, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(machine_line())
    print(f"torch: {torch.__version__}  device: cpu")
    if args.workspace is not None:
        ws = Workspace(args.workspace)
        photos = sorted((args.workspace / "images").rglob("*.jpg"))[: args.images]
        region_table(ws, photos, args.run, max(args.repeats, 5))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        photos = Path(tmp) / "photos"
        make_photos(photos, args.images)
        model = make_run(ws, args.model, args.image_size)
        options = PredictOptions(
            run="bench", batch_size=args.batch_size, device="cpu", workers=args.workers
        )
        print(
            f"{args.images} JPEGs (256 px); {args.model} at {args.image_size} px, "
            f"batch {args.batch_size}, {args.repeats} interleaved runs after a warm-up"
        )
        run_predict(ws, [photos], options)  # warm-up: imports, place index
        predict, memory = [], []
        for repeat in range(args.repeats):
            for case in ("predict", "memory") if repeat % 2 == 0 else ("memory", "predict"):
                if case == "predict":
                    started = time.perf_counter()
                    result = run_predict(ws, [photos], options)
                    predict.append(len(result.predictions) / (time.perf_counter() - started))
                else:
                    memory.append(
                        in_memory_rate(model, args.image_size, args.batch_size, args.images)
                    )
        make_calibrated_run(ws, args.model, args.image_size, photos)
        region_table(ws, sorted(photos.glob("*.jpg")), "bench-regions", max(args.repeats, 3))
    p, m = statistics.median(predict), statistics.median(memory)
    ratio = p / m

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    print()
    header = f"{'case':<40} {'img/s (median)':>15} {'runs':>24}"
    print(header)
    print("-" * len(header))
    print(f"{'geotag predict, folder of JPEGs':<40} {p:>15.1f} {runs(predict):>24}")
    print(f"{'in memory: inference-only limit':<40} {m:>15.1f} {runs(memory):>24}")
    print(f"{'ratio predict / in memory':<40} {ratio:>15.2f}")
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    print(
        f"\n{verdict}  predict ratio >= {TARGET_RATIO} ({ratio:.2f}) "
        f"for {args.model} at {args.image_size} px"
    )


if __name__ == "__main__":
    main()
