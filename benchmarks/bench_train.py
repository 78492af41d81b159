"""Benchmark training throughput: geotag's input pipeline against the compute-only limit.

What it measures, side by side in one run:

1. **geotag**: ``run_train`` end to end on JPEGs on disk (simulator images scraped over
   loopback at 256 px), through geotag's DataLoader (decode, mask, random-resized crop,
   colour jitter, default workers) and training loop. The figure is the training
   images/s of the last epoch that ``history.csv`` records (workers are persistent, so
   it excludes their start-up).
2. **in memory**: the same model, batch size, resolution, optimiser (AdamW), loss and
   AMP setting on a batch of tensors already in memory: the compute-only limit.

The ratio geotag / in-memory says whether the input pipeline is the bottleneck.
Target (issue #5): ratio >= 0.9 for resnet18 at 128 px on a 2-core CPU. Runs alternate
and the table reports medians of ``--repeats`` runs; on a GPU both use AMP.

Run it with::

    .venv/bin/python benchmarks/bench_train.py [--model resnet18] [--image-size 128]
    .venv/bin/python benchmarks/bench_train.py --quick     # tiny model, one repeat

Prints machine facts, the table and a PASS/MISS line; always exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from machine import machine_line  # benchmarks/machine.py

from geotag.scrape.providers.base import ImageOptions
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.stages.train import TrainOptions, run_train
from geotag.train.device import resolve_device
from geotag.train.loop import amp_dtype
from geotag.train.model import create_classifier
from geotag.workspace import Workspace

TARGET_RATIO = 0.9


def make_dataset(root: Path, per_cell: int) -> Workspace:
    """India in 500 km cells, two 256 px headings per panorama, from the simulator."""
    ws = Workspace(root)
    run_grid(ws, country="India", cell_km=500)
    run_sample(ws, per_cell=per_cell, seed=0)
    run_scrape(
        ws,
        ScrapeOptions(
            provider="sim",
            image=ImageOptions(headings=(0.0, 180.0), size=256, radius_m=20000, source="default"),
            rate=5000,
        ),
    )
    return ws


def geotag_rate(ws: Workspace, options: TrainOptions, name: str) -> float:
    run_train(ws, replace(options, name=name))
    history = pd.read_csv(ws.run_dir(name) / "fold-0" / "history.csv")
    shutil.rmtree(ws.run_dir(name))
    return float(history["images_per_s"].iloc[-1])


def in_memory_rate(options: TrainOptions, classes: int, images: int) -> float:
    """Train steps on one fixed batch in memory, as many images as an epoch has."""
    device = resolve_device(options.device)
    torch.manual_seed(0)
    model = create_classifier(options.model, classes, pretrained=False).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.05)
    size = options.image_size or 224
    x = torch.randn(options.batch_size, 3, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (options.batch_size,), device=device)
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps = max(1, images // options.batch_size)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * options.batch_size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-cell", type=int, default=16, help="points per 500 km cell")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny model, small data, 1 run")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.image_size, args.per_cell, args.repeats = "resnet10t", 64, 6, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    device = resolve_device(args.device)
    print(machine_line())
    print(f"torch: {torch.__version__}  device: {device}")
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}  amp: {amp_dtype(device)}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ws = make_dataset(Path(tmp) / "ws", args.per_cell)
        frame = pd.read_parquet(ws.images_parquet)
        classes = frame["cell_id"].nunique()
        print(
            f"data: {len(frame):,} JPEGs (256 px) in {classes} cells, scraped in "
            f"{time.perf_counter() - started:.0f} s; {args.model} at {args.image_size} px, "
            f"batch {args.batch_size}, {args.epochs} epochs per run (last epoch timed), "
            f"fold 0 of 5 held out"
        )
        options = TrainOptions(
            model=args.model,
            pretrained=False,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=args.batch_size,
            folds=5,
            workers=args.workers,
            device=args.device,
        )
        train_images = int(len(frame) * 0.8)
        disk, memory = [], []
        for repeat in range(args.repeats):
            # Alternate which goes first, so neither always runs on a cooler machine.
            for case in ("disk", "memory") if repeat % 2 == 0 else ("memory", "disk"):
                if case == "disk":
                    disk.append(geotag_rate(ws, options, f"bench{repeat}"))
                else:
                    memory.append(in_memory_rate(options, classes, train_images))
    workers = args.workers if args.workers is not None else "default"
    d, m = statistics.median(disk), statistics.median(memory)
    ratio = d / m
    print()
    header = f"{'case':<44} {'img/s (median)':>15} {'runs':>28}"
    print(header)
    print("-" * len(header))
    runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    print(
        f"{'geotag: JPEGs on disk, loader workers ' + str(workers):<44} {d:>15.1f} {runs(disk):>28}"
    )
    print(f"{'in memory: compute-only limit':<44} {m:>15.1f} {runs(memory):>28}")
    print(f"{'ratio geotag / in memory':<44} {ratio:>15.2f}")
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    print(
        f"\n{verdict}  input pipeline ratio >= {TARGET_RATIO} ({ratio:.2f}) "
        f"for {args.model} at {args.image_size} px"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
