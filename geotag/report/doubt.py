"""The plots of ``geotag eval`` about doubt: reliability, area against coverage, selective.

- ``reliability.png``: accuracy against the top probability in 15 bins, before and after
  temperature scaling, over every fold's held-out photos (the diagonal is honest);
- ``coverage_curve.png``: empirical coverage of the prediction regions against their mean
  area (as a share of the region), for targets 0.5-0.99, per fold (faint) and mean;
- ``selective_curve.png``: top-1 accuracy and median km of the photos answered against the
  share answered, surest first, per fold (faint) and mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from geotag.doubt.temperature import Reliability
from geotag.errors import InputError
from geotag.report.evaluation import _pyplot, _save

KINDS = {"image": "per image", "location": "per location (headings fused)"}


def plot_reliability(before: Reliability, after: Reliability, path: Path) -> Path:
    """Accuracy against confidence in each bin, before and after temperature scaling; a
    bar's width is the bin, its height the accuracy, the dots the mean confidence."""
    plt = _pyplot()
    from matplotlib.ticker import PercentFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), dpi=120, sharey=True)
    try:
        for ax, bins, name in ((axes[0], before, "before"), (axes[1], after, "after")):
            used = bins.count > 0
            left, width = bins.edges[:-1], np.diff(bins.edges)
            ax.bar(left[used], bins.accuracy[used], width=width[used], align="edge",
                   color="#4c72b0", edgecolor="white", alpha=0.85, label="accuracy")  # fmt: skip
            ax.plot(bins.confidence[used], bins.confidence[used], "o", color="#dd8452",
                    markersize=4, label="mean confidence")  # fmt: skip
            ax.plot([0, 1], [0, 1], "--", color="#555555", linewidth=0.8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.xaxis.set_major_formatter(PercentFormatter(1.0))
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_xlabel("top probability (confidence)")
            ax.set_title(
                f"{name} temperature scaling: ECE {bins.ece:.3f} ({int(bins.count.sum()):,} photos)"
            )
            ax.grid(alpha=0.25)
        axes[0].set_ylabel("share right (top-1)")
        axes[0].legend(loc="upper left")
        fig.tight_layout()
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def plot_coverage_curve(
    curves: Mapping[str, Sequence[Mapping[str, np.ndarray]]], target: float, path: Path
) -> Path:
    """Coverage against mean region area for each kind ("image", "location"): one faint
    line per fold and the folds' mean; each target is a dash at its coverage beside the
    point measured for it, and ``target``'s point is circled."""
    if not any(curves.values()):
        raise InputError("there is no coverage curve to plot")
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (kind, folds) in enumerate(curves.items()):
            if not folds:
                continue
            colour = colours[i % len(colours)]
            for fold in folds:
                ax.plot(fold["region_share"], fold["coverage"], color=colour, alpha=0.3, lw=0.8)
            share = np.mean([f["region_share"] for f in folds], axis=0)
            covered = np.mean([f["coverage"] for f in folds], axis=0)
            targets = folds[0]["target"]
            ax.plot(share, covered, "o-", color=colour, lw=2, ms=4, label=KINDS.get(kind, kind))
            ax.plot(share, targets, "_", color=colour, ms=12, mew=1.5)  # the target, beside
            at = np.flatnonzero(np.isclose(targets, target))
            if len(at):
                ax.plot(share[at], covered[at], "o", ms=11, mfc="none", color=colour)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_at_1_2_5("{:.3g}%", 100)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_at_1_2_5("{:.3g}%", 100)))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("mean area of the region (share of the whole region, log)")
        ax.set_ylabel("share of photos whose true cell is in the region")
        ax.set_title(
            f"Prediction regions: coverage against area, targets 0.5-0.99 (dashes: the target; "
            f"circled: {target:g})",
            fontsize=10,
        )
        ax.grid(alpha=0.25, which="both")
        ax.legend(loc="lower right")
        fig.tight_layout()
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def plot_selective_curve(
    curves: Mapping[str, Sequence[Mapping[str, np.ndarray]]], path: Path
) -> Path:
    """Top-1 accuracy (left) and median km (right) against the share answered."""
    if not any(curves.values()):
        raise InputError("there is no selective curve to plot")
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), dpi=120)
    try:
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (kind, folds) in enumerate(curves.items()):
            if not folds:
                continue
            colour = colours[i % len(colours)]
            share = folds[0]["share"]
            for ax, figure in ((axes[0], "top1"), (axes[1], "median_km")):
                for fold in folds:
                    ax.plot(share, fold[figure], color=colour, alpha=0.3, lw=0.8)
                mean = np.mean([f[figure] for f in folds], axis=0)
                ax.plot(share, mean, color=colour, lw=2, label=KINDS.get(kind, kind))
        axes[0].set_ylabel("top-1 accuracy of the photos answered")
        axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
        axes[1].set_ylabel("median error of the photos answered (km)")
        axes[1].set_yscale("log")
        axes[1].yaxis.set_major_formatter(FuncFormatter(_at_1_2_5("{:,.0f}")))
        axes[1].yaxis.set_minor_formatter(FuncFormatter(_at_1_2_5("{:,.0f}")))
        for ax in axes:
            ax.set_xlabel("share of photos answered (surest first)")
            ax.xaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.25, which="both")
        axes[0].legend(loc="upper right")
        fig.suptitle("Selective prediction: answering only the surest photos")
        fig.tight_layout()
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def _at_1_2_5(form: str, scale: float = 1.0) -> Callable[[float, object], str]:
    """A log axis's tick labeller: ``form`` of value x ``scale``, only at 1, 2 and 5 times
    a power of 10 (the others stay unlabelled)."""

    def label(value: float, _: object) -> str:
        if value <= 0:
            return ""
        mantissa = value / 10 ** np.floor(np.log10(value))
        if not any(np.isclose(mantissa, m) for m in (1.0, 2.0, 5.0)):
            return ""
        return form.format(value * scale)

    return label
