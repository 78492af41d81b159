"""Copy the README's pictures out of a finished demo, shrunk to a few tens of kB each.

Usage (from the repository root, after ``make demo``)::

    .venv/bin/python scripts/readme_pictures.py demo-workspace

Writes ``docs/images/*.png``; the README shows them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

OUT = Path("docs/images")
#: Longest side in pixels: enough to read, small enough to commit.
MAX_SIDE = 720


def pictures(demo: Path) -> dict[str, Path]:
    audit = json.loads((demo / "runs/careless/explain/audit.json").read_text())
    photo = Path(audit["most_band_heat"][0]["path"]).stem
    return {
        "grid.png": demo / "grid.png",
        "careless_gradcam.png": demo / f"runs/careless/explain/{photo}-gradcam.png",
        "masked_gradcam.png": demo / f"runs/masked/explain/{photo}-gradcam.png",
        "careless_mean_cam.png": demo / "runs/careless/explain/mean_cam.png",
        "careless_top_band_heat.png": demo / "runs/careless/explain/top_band_heat.png",
        "masked_confusion_matrix.png": demo / "runs/masked/eval/confusion_matrix.png",
        "masked_accuracy_map.png": demo / "runs/masked/eval/accuracy_map.png",
        "sure.png": demo / "sure.png",
        "unsure.png": demo / "unsure.png",
        "masked_reliability.png": demo / "runs/masked/eval/reliability.png",
        "masked_coverage_curve.png": demo / "runs/masked/eval/coverage_curve.png",
        "masked_selective_curve.png": demo / "runs/masked/eval/selective_curve.png",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished demo workspace")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, source in pictures(args.demo).items():
        with Image.open(source) as image:
            small = image.convert("RGB")
            small.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            # A palette keeps flat figures small; photos and heatmaps survive 256 colours.
            small.quantize(256, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
        print(f"{OUT / name}: {(OUT / name).stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main()
