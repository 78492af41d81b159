"""Benchmark Grad-CAM against the model's own forward+backward, and the audit's wall time.

What it measures, in one run:

1. **Grad-CAM**: ``compute_cams`` on a batch of in-memory images, seconds per image,
   side by side with a plain forward+backward pass of the same model and batch (what
   Grad-CAM cannot avoid). Target (issue #7): ratio <= 1.5.
2. **audit**: ``run_audit`` over 1,000 simulator images at 128 px (Grad-CAM, four
   masked inference passes, the copyright check, the pictures), wall time.

The run is made by hand (config + freshly initialised weights): speed does not depend on
training. ``--quick`` uses a tiny model and 100 images.

    .venv/bin/python benchmarks/bench_explain.py [--model resnet18] [--repeats 3]
    .venv/bin/python benchmarks/bench_explain.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from machine import machine_line  # benchmarks/machine.py
from untrained_run import write_untrained_run

from geotag.explain.cam import compute_cams
from geotag.gridfile import load_grid
from geotag.scrape.providers.base import ImageOptions
from geotag.stages.explain import AuditOptions, run_audit
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.train.model import create_classifier
from geotag.workspace import Workspace

TARGET_RATIO = 1.5


def seconds_per_image(step: object, batch: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()  # type: ignore[operator]
        times.append((time.perf_counter() - started) / batch)
    return statistics.median(times)


def make_workspace(root: Path, images: int, model_name: str, size: int) -> Workspace:
    ws = Workspace(root)
    run_grid(ws, country="India", cell_km=500)
    cells = load_grid(ws).cells
    # Some points find no panorama: sample a few more than needed.
    run_sample(ws, per_cell=max(1, images // (2 * len(cells)) + 4), seed=0)
    run_scrape(
        ws,
        ScrapeOptions(
            provider="sim",
            image=ImageOptions(headings=(0.0, 180.0), size=size, radius_m=20000, source="default"),
            rate=5000,
        ),
    )
    frame = pd.read_parquet(ws.images_parquet).head(images)
    frame.to_parquet(root / "test.parquet")
    write_untrained_run(
        ws, model_name, size, cells["cell_id"], cells["center_lat"], cells["center_lon"]
    )
    return ws


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.images, args.repeats = "resnet10t", 100, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(machine_line())
    print(f"torch: {torch.__version__}  device: cpu")

    torch.manual_seed(0)
    model = create_classifier(args.model, 24, pretrained=False).eval()
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        model(x).max(dim=1).values.sum().backward()

    def gradcam() -> None:
        compute_cams(model, x, None, "gradcam")

    forward_backward()
    gradcam()  # warm-up: imports and hooks
    fb, cam = [], []
    for repeat in range(args.repeats):
        for case in ("fb", "cam") if repeat % 2 == 0 else ("cam", "fb"):
            if case == "fb":
                fb.append(seconds_per_image(forward_backward, args.batch_size, 1))
            else:
                cam.append(seconds_per_image(gradcam, args.batch_size, 1))
    f, c = statistics.median(fb), statistics.median(cam)
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "ws", args.images, args.model, args.image_size)
        started = time.perf_counter()
        result = run_audit(
            ws,
            AuditOptions(run="bench", images=ws.root / "test.parquet", limit=args.images,
                         device="cpu"),
        )  # fmt: skip
        audit_seconds = time.perf_counter() - started
    print(f"{args.model} at {args.image_size} px, batch {args.batch_size}, {args.repeats} runs")
    print()
    header = f"{'case':<44} {'ms/image (median)':>18}"
    print(header)
    print("-" * len(header))
    print(f"{'forward + backward':<44} {f * 1000:>18.1f}")
    print(f"{'Grad-CAM (compute_cams, gradcam)':<44} {c * 1000:>18.1f}")
    print(f"{'ratio Grad-CAM / forward+backward':<44} {c / f:>18.2f}")
    print(
        f"{'audit over ' + str(result.report.images) + ' images':<44} "
        f"{audit_seconds:>16.1f} s  (verdict {result.report.verdict})"
    )
    verdict = "PASS" if c / f <= TARGET_RATIO else "MISS"
    print(f"\n{verdict}  Grad-CAM ratio <= {TARGET_RATIO} ({c / f:.2f})")


if __name__ == "__main__":
    main()
