"""``geotag demo``: the whole story offline, in minutes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotag.cli.common import console, err_console, reporting_errors

if TYPE_CHECKING:
    from geotag.demo import DemoResult, DemoStep


def demo(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="Workspace for the demo.", show_default=True)
    ] = Path("demo-workspace"),
    fast: Annotated[
        bool, typer.Option("--fast", help="A smaller demo: about a third of the time.")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start again: remove an earlier demo in FOLDER first."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every step.")] = 0,
) -> None:
    """The whole story offline, in minutes: catch a model that cheats, fix it.

    Grids a country, scrapes the built-in simulator over real HTTP with user photospheres
    kept, trains a small CNN, evaluates it, audits it (SHORTCUT: it reads the
    photographer strip), retrains with the strip masked (PASS), and predicts and explains
    held-out photos. Runs the same commands a user would type and prints each one first.

    Rerunning in the same folder keeps what is done and goes on; --fresh starts again. A
    folder that holds anything but a demo is never touched.

    Example:

        geotag demo --fast
    """
    from geotag import demo as plan

    root = ctx.find_root().command

    def run_command(args: tuple[str, ...]) -> int:
        return int(root.main(list(args), prog_name="geotag", standalone_mode=False) or 0)

    def show_step(step: DemoStep, command: str, skipped: bool) -> None:
        console.rule(f"[bold]{step.title}[/bold]", align="left")
        if skipped:
            console.print(
                f"[dim]$ {command}  (done already: skipped)[/dim]", highlight=False, soft_wrap=True
            )
        else:
            console.print(f"[bold cyan]$[/bold cyan] {command}", highlight=False, soft_wrap=True)

    try:
        with reporting_errors():
            result = plan.run_demo(
                folder, fast=fast, fresh=fresh, seed=seed, run_command=run_command,
                on_step=show_step, on_notice=console.print,
            )  # fmt: skip
    except plan.StepFailed as failed:  # the step has said why already
        raise typer.Exit(code=failed.code) from None
    _show_story(folder, result)


def _show_story(folder: Path, result: DemoResult) -> None:
    from geotag import demo as plan

    story = result.story
    console.rule("[bold]what the demo showed[/bold]", align="left")
    table = Table(title_justify="left")
    for column in ("run", "top-1 (chance)", "median km", "audit", "band's effect, strip images"):
        table.add_column(column)
    for run, verdict, top1, km, effect in (
        (plan.CARELESS_RUN, story.careless_verdict, story.careless_top1,
         story.careless_median_km, story.careless_effect),
        (plan.MASKED_RUN, story.masked_verdict, story.masked_top1, story.masked_median_km,
         story.masked_effect),
    ):  # fmt: skip
        shown = "band masked at input" if effect is None else f"{effect:+.1%}"
        table.add_row(run, f"{top1:.1%} ({story.chance:.1%})", f"{km:,.0f}", str(verdict),
                      shown)  # fmt: skip
    console.print(table)
    if story.holds:
        console.print(
            "The careless model read the photographer strip; masked, it passes: its "
            f"{story.masked_top1:.1%} is the accuracy to report.",
            highlight=False,
        )
    else:
        err_console.print(
            "[yellow]Warning:[/yellow] this machine did not reproduce SHORTCUT then PASS; "
            "see the two audit.md reports.",
            highlight=False,
        )
    files = Table(title=f"what each step wrote, under {folder}", title_justify="left")
    files.add_column("command")
    files.add_column("files")
    for command, written in plan.WRITTEN:
        files.add_row(f"geotag {command}", written)
    console.print(files)
    console.print(
        f"Pictures: {folder / 'grid.png'}, {folder / 'runs' / plan.CARELESS_RUN / 'explain'}"
        f", {folder / 'runs' / plan.MASKED_RUN / 'eval'}. "
        f"Done in {result.seconds:.0f} s.",
        highlight=False,
    )
