"""``geotag explain``: Grad-CAM for photos, and ``--audit``: does the model cheat?"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from geotag.cli.common import (
    DeviceOption,
    RunOption,
    WorkspaceOption,
    console,
    locked,
    progress_bar,
    reporting_errors,
    skipped,
)
from geotag.explain.methods import METHODS
from geotag.explain.verdict import FAIL_ON, Verdict
from geotag.safetext import markup_safe
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from geotag.explain.report import Ablation
    from geotag.train.bands import Band

MethodChoice = enum.Enum(  # type: ignore[misc]
    "MethodChoice", {name: name for name in METHODS}, type=str
)


FailOn = enum.Enum("FailOn", {name: name for name in FAIL_ON}, type=str)  # type: ignore[misc]


def explain(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Photos or folders to explain (not needed with --audit).", show_default=False
        ),
    ] = None,
    workspace: WorkspaceOption = Path("."),
    run: RunOption = None,
    method: Annotated[
        MethodChoice,  # type: ignore[valid-type]
        typer.Option("--method", help="pytorch-grad-cam method."),
    ] = MethodChoice.gradcam,  # type: ignore[attr-defined]
    target: Annotated[
        str, typer.Option("--target", help="'predicted', or a cell id to explain.")
    ] = "predicted",
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            help="Target layer name.",
            show_default="the last stage with a map of 4 x 4 or more",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for overlays.", show_default="runs/NAME/explain"),
    ] = None,
    audit: Annotated[
        bool, typer.Option("--audit", help="Audit the run's held-out images for a shortcut.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            help="Images to audit (whole panoramas, half with a strip where there are enough); "
            "up to 4x as many strip images when fewer cannot decide.",
        ),
    ] = 500,
    band: Annotated[
        str, typer.Option("--band", help="Band the audit tests, side:fraction.")
    ] = "bottom:0.1",
    test_images: Annotated[
        Path | None,
        typer.Option("--images", help="Audit a separate test set (images.parquet)."),
    ] = None,
    fail_on: Annotated[
        FailOn,  # type: ignore[valid-type]
        typer.Option(
            "--fail-on",
            help="Exit 3 when the verdict is at least this (PASS < INCONCLUSIVE < SUSPECT < "
            "SHORTCUT).",
        ),
    ] = FailOn.never,  # type: ignore[attr-defined]
    device: DeviceOption = "auto",
) -> None:
    """Grad-CAM heatmaps for photos, or --audit: does the model cheat?

    The audit scores every trained fold's held-out images with the model that never saw
    them, split into those with a photographer strip (user-contributed, by copyright or by
    look) and those without. On the strip images it measures what blanking the band
    (default: the bottom tenth) costs beyond blanking the same area opposite, what the band
    alone scores against the model's answer to a blank picture, and the heat in the band;
    the official images are shown beside them as the band's honest worth. Verdict: PASS,
    INCONCLUSIVE (too few strip images to rule out a 5-point effect), SUSPECT or SHORTCUT; a
    run whose own mask blanks the band passes on that ground. Also reports whether the
    copyright strings predict the cell. Writes runs/NAME/explain/ (overlays; audit.json,
    audit.md and pictures).

    Example:

        geotag explain -w india photo.jpg --method gradcam++

        geotag explain -w india --audit --fail-on shortcut
    """
    from geotag.train.bands import parse_band

    ws = Workspace(workspace)
    if not audit:
        _explain_photos(ws, images or [], run, method.value, target, layer, out, device)
        return
    with reporting_errors():
        band_ = parse_band(band)
    _audit(ws, run, test_images, limit, band_, method.value, layer, device, fail_on.value)


def _explain_photos(
    workspace: Workspace, images: list[Path], run: str | None, method: str, target: str,
    layer: str | None, out: Path | None, device: str,
) -> None:  # fmt: skip
    from geotag.stages.explain import ExplainOptions, run_explain

    with reporting_errors(), locked(workspace.root, "explain"):
        if not images:
            from geotag.errors import InputError

            raise InputError("name photos to explain, or pass --audit")
        options = ExplainOptions(run=run, method=method, target=target, layer=layer, out=out,
                                 device=device)  # fmt: skip
        with progress_bar() as progress:
            result = run_explain(workspace, images, options, progress=progress)
    skipped(result.bad)
    table = Table(title=f"{result.method}, run {result.run}", title_justify="left")
    for column in ("image", "top-3 cells", "heat top/mid/bottom", "overlay"):
        table.add_column(column)
    for item in result.images:
        table.add_row(
            markup_safe(Path(item.path).name),
            ", ".join(f"{c} {p:.0%}" for c, p in item.top3),
            " / ".join(f"{v:.0%}" for v in item.thirds),
            str(item.overlay) if item.overlay else "[red]all-zero map: nothing saved[/red]",
        )
    console.print(table)


def _audit(
    workspace: Workspace, run: str | None, test_images: Path | None, limit: int, band: Band,
    method: str, layer: str | None, device: str, fail_on: str,
) -> None:  # fmt: skip
    from geotag.stages.explain import AuditOptions, run_audit

    options = AuditOptions(run=run, images=test_images, limit=limit, band=band, method=method,
                           layer=layer, device=device)  # fmt: skip
    with reporting_errors(), locked(workspace.root, "explain --audit"), progress_bar() as progress:
        result = run_audit(workspace, options, progress=progress)
    report = result.report
    colour = {Verdict.PASS: "green", Verdict.INCONCLUSIVE: "cyan", Verdict.SUSPECT: "yellow",
              Verdict.SHORTCUT: "red"}  # fmt: skip
    shade = colour[report.verdict]
    console.print(
        f"[bold {shade}]{report.verdict}[/bold {shade}] (run {report.run}, {report.images} "
        f"held-out images of fold(s) {', '.join(map(str, report.folds))})"
    )
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)
    if report.data_warning:
        console.print(f"[yellow]Data:[/yellow] {escape(report.data_warning)}.", highlight=False)
    if report.ablation is not None:
        _ablation_table(report.ablation)
    console.print(f"Next: {report.next_step}.", highlight=False)
    console.print(f"Report: {result.folder / 'audit.md'} ({result.seconds:.0f} s).")
    threshold = FAIL_ON[fail_on]
    if threshold is not None and report.verdict >= threshold:
        raise typer.Exit(code=3)


def _ablation_table(ablation: Ablation) -> None:
    from geotag.explain.strata import TITLES

    table = Table(
        title=f"masking ablation: band {ablation.band}, control {ablation.control} "
        "(95% intervals over panoramas)",
        title_justify="left",
    )
    for column in ("stratum", "images", "full", "band blanked", "control blanked", "band alone",
                   "no picture", "effect", "detectable"):  # fmt: skip
        table.add_column(column, justify="right")
    for name, stratum in [*ablation.strata.items(), ("all, weighted", ablation.pooled)]:
        c = stratum.conditions
        low, high = stratum.effect.ci
        table.add_row(
            TITLES.get(name, name), f"{stratum.images} ({stratum.panoramas} pano)",
            f"{c['full'].accuracy:.1%}", f"{c['band_blanked'].accuracy:.1%}",
            f"{c['control_blanked'].accuracy:.1%}", f"{c['band_only'].accuracy:.1%}",
            f"{stratum.baseline:.1%}", f"{stratum.effect.value:+.1%} ({low:+.1%} to {high:+.1%})",
            f"{stratum.detectable:.1%}",
        )  # fmt: skip
    console.print(table)
