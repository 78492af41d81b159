"""``geotag eval`` and ``geotag predict``: how good a run is, and where a photo was taken."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from geotag.cli.common import (
    DeviceOption,
    RunOption,
    WorkersOption,
    WorkspaceOption,
    console,
    locked,
    progress_bar,
    reporting_errors,
    skipped,
    warn,
)
from geotag.safetext import markup_safe
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.evaluate.summary import EvalMetrics, Scores, Summary


def eval_(
    workspace: WorkspaceOption = Path("."),
    run: RunOption = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="A separate test set (an images.parquet table), scored by every fold; "
            "written to eval-images-NAME/, leaving eval/ as it was.",
        ),
    ] = None,
    mask_bottom: Annotated[
        float | None,
        typer.Option("--mask-bottom", help="Also blank this bottom fraction (ablation)."),
    ] = None,
    mask: Annotated[
        str | None,
        typer.Option("--mask", help="Also blank a band: bottom|top|left|right:FRACTION."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 64,
    workers: WorkersOption = None,
    device: DeviceOption = "auto",
    coverage: Annotated[
        float,
        typer.Option(
            "--coverage", help="Target share of photos whose true cell is in their region."
        ),
    ] = 0.9,
) -> None:
    """Score a trained run: accuracy, km errors, GeoScore, confusion matrix and maps.

    Each fold is scored on its own held-out images, per image and per location (the
    headings of one place fused). Writes runs/NAME/eval/ (eval-BAND/ with a mask,
    eval-images-TABLE/ for a separate test set). A
    calibrated run is also scored on its doubt: calibration error before and after
    temperature scaling, the coverage and area of its prediction regions, and selective
    prediction (reliability.png, coverage_curve.png, selective_curve.png).

    Example:

        geotag eval -w india

        geotag eval -w india --mask bottom:0.1
    """
    from geotag.stages.evaluate import EvalOptions, run_eval
    from geotag.train.bands import Band, parse_band

    with reporting_errors(), locked(workspace, "eval"):
        if mask is not None and mask_bottom is not None:
            from geotag.errors import InputError

            raise InputError("give --mask or --mask-bottom, not both")
        band = parse_band(mask) if mask else (Band("bottom", mask_bottom) if mask_bottom else None)
        with progress_bar() as progress:
            result = run_eval(
                Workspace(workspace),
                EvalOptions(run=run, images=images, mask=band, batch_size=batch_size,
                            workers=workers, device=device, coverage=coverage),
                progress=progress,
            )  # fmt: skip
    _print_metrics(result.metrics)
    console.print(f"Files in {result.folder} ({result.seconds:.0f} s).")


def _print_metrics(metrics: EvalMetrics) -> None:
    """The headline metrics, per image and per location, mean +/- std over folds, beside
    what a model must beat: chance, the majority cell, the training data's mean location
    and a random training image."""
    from geotag.evaluate.metrics import SUMMARY_THRESHOLDS_KM

    headline = metrics.headline
    chance = metrics.chance_top1
    mean = metrics.per_image.mean
    table = Table(title=f"run {metrics.run}: {metrics.test_set}, folds {list(metrics.folds)}")
    table.add_column("metric")
    table.add_column("per image", justify="right")
    table.add_column("per location", justify="right")
    table.add_column("baseline", justify="right")
    single = len(metrics.folds) < 2  # one fold has no spread to show

    def cell(figure: Callable[[Scores], float], summary: Summary, percent: bool) -> str:
        mean, std = figure(summary.mean), figure(summary.std)
        if percent:
            return f"{mean:.1%}" if single else f"{mean:.1%} ± {std:.1%}"
        return f"{mean:,.0f}" if single else f"{mean:,.0f} ± {std:,.0f}"

    base = mean.baselines
    top1_base = f"{chance:.1%} chance"
    median_base = mean_base = ""
    if base is not None:
        top1_base += f", {base.majority_top1:.1%} majority"
        median_base = (
            f"{base.mean_location_median_km:,.0f} centre, {base.random_image_median_km:,.0f} random"
        )
        mean_base = (
            f"{base.mean_location_mean_km:,.0f} centre, {base.random_image_mean_km:,.0f} random"
        )
    own = "" if metrics.cells == "grid" else f" ({metrics.cells} cells)"
    rows: list[tuple[str, Callable[[Scores], float], bool, str]] = [
        (f"top-1{own}", lambda s: s.top1, True, top1_base),
        ("top-5", lambda s: s.top5, True, f"{min(1.0, 5 * chance):.1%} chance"),
        ("balanced accuracy", lambda s: s.balanced_accuracy, True, f"{chance:.1%} chance"),
        (f"median km ({headline})", lambda s: s.distance(headline, "median_km"), False,
         median_base),
        (f"mean km ({headline})", lambda s: s.distance(headline, "mean_km"), False, mean_base),
        (f"GeoScore ({headline})", lambda s: s.distance(headline, "geoscore"), False, ""),
    ]  # fmt: skip
    rows += [
        (f"within {km} km ({headline})", partial(_within, headline, km), True, "")
        for km in SUMMARY_THRESHOLDS_KM
    ]
    if mean.in_grid_cell is not None and headline in mean.in_grid_cell:
        rows.append(
            (f"in the true grid cell ({headline})",
             lambda s: (s.in_grid_cell or {}).get(headline, 0.0), True, "")
        )  # fmt: skip
    if "inside_region" in mean.predictors[headline]:
        rows.append(
            (f"points inside the region ({headline})",
             lambda s: s.distance(headline, "inside_region"), True, "")
        )  # fmt: skip
    for label, figure, percent, baseline in rows:
        table.add_row(
            label,
            cell(figure, metrics.per_image, percent),
            cell(figure, metrics.per_location, percent),
            baseline,
        )
    console.print(table)
    note = PREDICTOR_NOTES.get(headline, headline)
    if metrics.headline_chosen_on == "inner validation split":
        console.print(
            f"Predicted point: {note}, chosen on the inner validation split when training "
            "(every predictor is in metrics.json and predictions.parquet)."
        )
    else:
        console.print(f"Predicted point: {note} (the best here; all in metrics.json).")
    _print_predictors(metrics)
    _print_doubt(metrics)
    if metrics.checkpoint_chosen_on != "inner validation split":
        warn(
            f"run {metrics.run} picked its best epochs on the folds scored here (trained before "
            "geotag had an inner validation split): these figures are optimistic; retrain it"
        )
    if base is not None:
        console.print(
            "Baselines per image, from each fold's own training images: majority = always "
            "the most common cell; centre = always their mean location; random = the "
            "location of a random one.",
            highlight=False,
        )
    unseen = sum(int(f.unseen_cell or 0) for f in metrics.per_image.per_fold.values())
    if unseen:
        warn(
            f"{unseen:,} held-out image(s) are in cells with no training image in their fold: "
            f"no model can place them; without them top-1 is {mean.top1_seen or 0:.1%}, "
            f"median {mean.median_km_seen or 0:,.0f} km."
        )


def _print_doubt(metrics: EvalMetrics) -> None:
    """Calibration, prediction regions and selective prediction, per image and per
    location, mean +/- std over folds (a run from before calibration has none)."""
    image, location = metrics.per_image, metrics.per_location
    if image.mean.doubt is None or location.mean.doubt is None:
        return
    single = len(metrics.folds) < 2
    target = image.mean.doubt.target
    table = Table(title=f"How sure: {target:.0%} regions, calibrated on the inner splits")
    table.add_column("figure")
    table.add_column("per image", justify="right")
    table.add_column("per location", justify="right")

    def show(value: Callable[[Any], float], form: str) -> list[str]:
        out = []
        for summary in (image, location):
            mean, std = value(summary.mean.doubt), value(summary.std.doubt)
            out.append(form.format(mean) + ("" if single else " ± " + form.format(std)))
        return out

    rows: list[tuple[str, Callable[[Any], float], str]] = [
        (f"coverage (target {target:.0%})", lambda d: d.coverage, "{:.1%}"),
        ("region, mean km²", lambda d: d.region_km2_mean, "{:,.0f}"),
        ("region, median km²", lambda d: d.region_km2_median, "{:,.0f}"),
        ("region, mean share of the region", lambda d: d.region_share_mean, "{:.1%}"),
        ("coverage of the worst 10% of cells", lambda d: d.worst_cells_coverage, "{:.1%}"),
        ("ECE before temperature scaling", lambda d: d.ece_before, "{:.3f}"),
        ("ECE after", lambda d: d.ece_after, "{:.3f}"),
        ("ECE of a perfectly calibrated model here", lambda d: d.ece_floor, "{:.3f}"),
        ("top-1, surest 50% answered", lambda d: d.selective["50"].top1, "{:.1%}"),
        ("top-1, all answered", lambda d: d.selective["100"].top1, "{:.1%}"),
        ("median km, surest 50% answered", lambda d: d.selective["50"].median_km, "{:,.0f}"),
        ("median km, all answered", lambda d: d.selective["100"].median_km, "{:,.0f}"),
    ]
    for label, value, form in rows:
        table.add_row(label, *show(value, form))
    console.print(table)
    _print_coverage_ranges(metrics)
    pooled = metrics.pooled_calibration or {}
    for name, figures in pooled.items() if not single else ():
        console.print(
            f"ECE over every fold's photos {name.replace('_', ' ')} ({figures.photos:,}): "
            f"{figures.ece_before:.3f} before, {figures.ece_after:.3f} after; a perfectly "
            f"calibrated model would show {figures.ece_floor:.3f} on as many.",
            highlight=False,
        )
    console.print(
        f"Regions hold the true cell for at least {target:.0%} of photos like the inner "
        f"splits' (on average, not for each photo); confidence ranks by "
        f"{metrics.confidence_score}, chosen there.",
        highlight=False,
    )


def _print_coverage_ranges(metrics: EvalMetrics) -> None:
    """Each fold's coverage beside the range a valid calibration of its size lands in 95
    times in 100; a fold outside it is warned about (its inner split did not resemble its
    held-out photos), one below the target but inside it is the calibration draw's luck."""
    for name, summary in (("per image", metrics.per_image), ("per location", metrics.per_location)):
        figures, outside = [], []
        for fold, scores in summary.per_fold.items():
            doubt = scores.doubt
            if doubt is None or doubt.coverage_low is None or doubt.coverage_high is None:
                return  # a metrics.json from before the ranges
            span = f"{doubt.coverage_low:.0%}-{doubt.coverage_high:.0%}"
            figures.append(f"fold {fold} {doubt.coverage:.1%} ({span})")
            if not doubt.coverage_low <= doubt.coverage <= doubt.coverage_high:
                outside.append(
                    f"fold {fold}'s coverage {name}, {doubt.coverage:.1%}, is outside {span}, "
                    "where a valid calibration of its size lands 95 times in 100: its inner "
                    "split did not resemble its held-out photos"
                )
        console.print(
            f"Coverage {name}: {', '.join(figures)}; in brackets, where it lands 95 times in "
            "100 if the calibration holds, for the photos calibrated on and scored.",
            highlight=False,
        )
        if outside:
            warn(*outside)


PREDICTOR_NOTES = {
    "top_cell": "top cell's point",
    "weighted": "weighted mean of the top cells' points",
    "knn": "nearest training locations (retrieval over the whole index)",
    "refined": "nearest training locations within the top cells (retrieval)",
}


def _print_predictors(metrics: EvalMetrics) -> None:
    """Every predictor side by side, per image (mean over folds)."""
    from geotag.evaluate.metrics import SUMMARY_THRESHOLDS_KM

    mean = metrics.per_image.mean
    if len(mean.predictors) < 2:
        return
    table = Table(title="predictors, per image", title_justify="left")
    for column in ("predictor", "median km", "mean km",
                   *(f"within {km} km" for km in SUMMARY_THRESHOLDS_KM), "GeoScore"):  # fmt: skip
        table.add_column(column, justify="right")
    grid_hits = mean.in_grid_cell or {}
    if grid_hits:
        table.add_column("in grid cell", justify="right")
    for name in mean.predictors:
        star = " *" if name == metrics.headline else ""
        table.add_row(
            name + star,
            f"{mean.distance(name, 'median_km'):,.0f}",
            f"{mean.distance(name, 'mean_km'):,.0f}",
            *(f"{mean.within_km(name, km):.1%}" for km in SUMMARY_THRESHOLDS_KM),
            f"{mean.distance(name, 'geoscore'):,.0f}",
            *([f"{grid_hits.get(name, 0.0):.1%}"] if grid_hits else []),
        )
    console.print(table)


def _within(predictor: str, km: float, scores: Scores) -> float:
    return scores.within_km(predictor, km)


def predict(
    images: Annotated[
        list[Path], typer.Argument(help="Photos, or folders of photos.", show_default=False)
    ],
    workspace: WorkspaceOption = Path("."),
    run: RunOption = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Cells to list per photo.")] = 5,
    fuse: Annotated[
        bool, typer.Option("--fuse", help="Treat all photos as views of one place.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table.")
    ] = False,
    map_path: Annotated[
        Path | None,
        typer.Option("--map", help="Draw the first photo's (or the fused) top cells and point."),
    ] = None,
    neighbours: Annotated[
        int,
        typer.Option(
            "--neighbours",
            help="List this many training images the run's retrieval found most alike.",
        ),
    ] = 0,
    coverage: Annotated[
        float,
        typer.Option(
            "--coverage",
            help="Target chance that the true cell is in the photo's region (recalibrated "
            "from the run's stored scores, no retraining).",
        ),
    ] = 0.9,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            "--min-confidence",
            help="Below this confidence (0-1: the share of calibration photos less sure) "
            'answer "not sure" with the region instead of a point.',
        ),
    ] = None,
    device: DeviceOption = "auto",
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Decoding processes.", show_default="0-1 on a CPU"),
    ] = None,
) -> None:
    """Where was this photo taken? Top cells, a point and the nearest place.

    When a photo has EXIF GPS tags the true location and the error are shown too.

    Example:

        geotag predict -w india photo.jpg

        geotag predict -w india street/ --fuse --json
    """
    import json as json_lib

    from geotag.stages.predict import PredictOptions, run_predict

    options = PredictOptions(
        run=run, top_k=top_k, fuse=fuse, device=device, workers=workers, map=map_path,
        neighbours=neighbours, coverage=coverage, min_confidence=min_confidence,
    )  # fmt: skip
    with reporting_errors(), progress_bar(disable=as_json) as progress:
        result = run_predict(Workspace(workspace), images, options, progress=progress)
    skipped(result.bad)
    warn(*(f"{path}: {what}" for path, what in result.notes))
    if result.caveat:
        warn(result.caveat)
    if as_json:
        for prediction in result.predictions:
            print(json_lib.dumps(prediction.to_json(), ensure_ascii=False))
        return
    for prediction in result.predictions:
        name = (
            prediction.paths[0] if len(prediction.paths) == 1 else f"{len(prediction.paths)} views"
        )
        table = Table(title=name, title_justify="left")
        for column in ("rank", "cell", "probability", "centre"):
            table.add_column(column, justify="right")
        for rank, guess in enumerate(prediction.top_k, 1):
            table.add_row(str(rank), str(guess.cell_id), f"{guess.probability:.1%}",
                          f"{guess.lat:.3f}, {guess.lon:.3f}")  # fmt: skip
        console.print(table)
        place = ", ".join(p for p in (prediction.place, prediction.country) if p)
        doubt = prediction.doubt
        if prediction.answered:
            console.print(
                f"  predicted {prediction.lat:.4f}, {prediction.lon:.4f}"
                + (f" (near {place})" if place else ""),
                highlight=False,
            )
        if doubt is not None:
            count = len(doubt.cells) if doubt.cells is not None else None
            cells = "" if count is None else f"{count} cell{'' if count == 1 else 's'}, "
            console.print(
                ("  not sure: " if not doubt.sure else "  ")
                + f"confidence {doubt.confidence:.2f}; {doubt.coverage:.0%} region: {cells}"
                f"{doubt.region_km2:,.0f} km²"
                + ("" if doubt.truth_in_region is None else
                   f" (EXIF GPS {'inside' if doubt.truth_in_region else 'outside'} it)"),
                highlight=False,
            )  # fmt: skip
        if prediction.error_km is not None and prediction.answered:
            console.print(
                f"  EXIF GPS {prediction.true_lat:.4f}, {prediction.true_lon:.4f}: "
                f"error {prediction.error_km:,.1f} km",
                highlight=False,
            )
        for n in prediction.neighbours:
            console.print(
                f"  alike: {markup_safe(n.path)} (similarity {n.similarity:.3f}, "
                f"{n.km_from_answer:,.1f} km from the answer, fold {n.fold})",
                highlight=False,
            )
    if result.map is not None:
        console.print(f"Map: {result.map}")
