"""``geotag explain``: Grad-CAM for photos, and ``--audit``: does the model cheat?"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotag.cli.common import (
    DeviceOption,
    RunOption,
    WorkspaceOption,
    console,
    progress_bar,
    reporting_errors,
    skipped,
)
from geotag.explain.methods import METHODS
from geotag.explain.verdict import FAIL_ON, Verdict
from geotag.workspace import Workspace

if TYPE_CHECKING:
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
    limit: Annotated[int, typer.Option("--limit", help="Audit at most this many images.")] = 500,
    band: Annotated[
        str, typer.Option("--band", help="Band the audit tests, side:fraction.")
    ] = "bottom:0.1",
    test_images: Annotated[
        Path | None,
        typer.Option("--images", help="Audit a separate test set (images.parquet)."),
    ] = None,
    fail_on: Annotated[
        FailOn,  # type: ignore[valid-type]
        typer.Option("--fail-on", help="Exit 3 when the verdict is at least this."),
    ] = FailOn.never,  # type: ignore[attr-defined]
    device: DeviceOption = "auto",
) -> None:
    """Grad-CAM heatmaps for photos, or --audit: does the model cheat?

    The audit measures the heat in a band (default: the bottom tenth, where user
    photospheres print the photographer's name), what blanking the band costs against an
    equal-area control band, what the band alone scores, and whether the copyright
    strings predict the cell; its verdict is PASS, SUSPECT or SHORTCUT.
    Writes runs/NAME/explain/ (overlays; audit.json, audit.md and pictures).

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

    with reporting_errors():
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
            Path(item.path).name,
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
    with reporting_errors(), progress_bar() as progress:
        result = run_audit(workspace, options, progress=progress)
    report = result.report
    colour = {Verdict.PASS: "green", Verdict.SUSPECT: "yellow", Verdict.SHORTCUT: "red"}
    shade = colour[report.verdict]
    console.print(f"[bold {shade}]{report.verdict}[/bold {shade}] (run {report.run})")
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False)
    if report.data_warning:
        console.print(f"[yellow]Data:[/yellow] {report.data_warning}.", highlight=False)
    table = Table(title="masking ablation", title_justify="left")
    for column in ("condition", "top-1", "95% interval", "median km"):
        table.add_column(column, justify="right")
    for name, condition in report.ablation.conditions.items():
        low, high = condition.accuracy_ci
        table.add_row(name.replace("_", " "), f"{condition.accuracy:.1%}",
                      f"{low:.1%} to {high:.1%}", f"{condition.median_km:,.0f}")  # fmt: skip
    console.print(table)
    console.print(f"Next: {report.next_step}.", highlight=False)
    console.print(f"Report: {result.folder / 'audit.md'} ({result.seconds:.0f} s).")
    threshold = FAIL_ON[fail_on]
    if threshold is not None and report.verdict >= threshold:
        raise typer.Exit(code=3)
