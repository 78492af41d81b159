"""What every command shares: the consoles, option aliases, errors, progress bars.

Nothing here imports more than Typer and rich, so ``geotag --help`` stays quick; each
command imports the library it calls inside its own function.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from geotag.errors import GeotagError, first_line
from geotag.safetext import markup_safe

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgressBar
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar="GEOTAG_WORKSPACE",
        help="Workspace folder holding every stage's files.",
        show_default="current folder",
        file_okay=True,
        dir_okay=True,
    ),
]
RunOption = Annotated[
    str | None, typer.Option("--run", help="Run name.", show_default="the latest run")
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", help="DataLoader workers.", show_default="0 on a CPU, cores - 1 on a GPU"
    ),
]


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn library errors into ``Error: <one line>`` and exit 1 (traceback only on debug)."""
    debug = os.environ.get("GEOTAG_DEBUG", "") not in ("", "0")
    try:
        yield
    except GeotagError as exc:
        if debug:
            raise
        # Messages can quote a server, a file name or a photo's EXIF: shown, never obeyed.
        err_console.print(f"[red]Error:[/red] {markup_safe(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]Interrupted.[/yellow] Finished work is kept; rerun the command to go on."
        )
        raise typer.Exit(code=130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if debug:
            raise
        message = markup_safe(first_line(exc)) if str(exc).strip() else ""
        err_console.print(
            f"[red]Error:[/red] unexpected {type(exc).__name__}: {message} "
            "(set GEOTAG_DEBUG=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None


@contextlib.contextmanager
def locked(workspace: Path, command: str) -> Iterator[None]:
    """Hold the workspace's lock while ``command`` writes to it (see geotag.lock)."""
    from geotag.lock import workspace_lock
    from geotag.workspace import Workspace

    with workspace_lock(Workspace(workspace), command):
        yield


def warn(*messages: str) -> None:
    for message in messages:
        err_console.print(f"[yellow]Warning:[/yellow] {markup_safe(message)}", highlight=False)


def skipped(bad: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> None:
    """One line per input that could not be used, on stderr."""
    for path, why in bad:
        err_console.print(
            f"[yellow]Skipped[/yellow] {markup_safe(path)}: {markup_safe(why)}",
            highlight=False,
            soft_wrap=True,
        )


def files_list(files: tuple[Path, ...]) -> str:
    return ", ".join(str(f) for f in files)


def bar_columns() -> tuple[ProgressColumn, ...]:
    """A spinner, the task, a bar, done/total, the rate and the time left."""
    from rich.progress import (
        BarColumn,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    class CountColumn(ProgressColumn):
        """done/total, or nothing while the library has not said how many steps."""

        def render(self, task: Task) -> Text:
            from rich.text import Text

            if task.total is None:
                return Text("")
            return Text(f"{int(task.completed):,}/{int(task.total):,}", style="progress.download")

    class RateColumn(ProgressColumn):
        """Steps per second, once rich has measured some."""

        def render(self, task: Task) -> Text:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f}/s" if speed else "", style="progress.data.speed")

    return (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        CountColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    )


class BarProgress:
    """The library's Progress on a rich progress bar: one line, renamed as work moves on,
    counting steps (done/total, rate, time left) whenever the library knows the total."""

    def __init__(self, bar: RichProgressBar) -> None:
        self.bar = bar
        self.task = bar.add_task("starting", total=None)

    def start(self, task: str, total: int | None) -> None:
        self.bar.reset(self.task, description=task, total=total, completed=0)

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task, steps)


@contextlib.contextmanager
def progress_bar(*, disable: bool = False) -> Iterator[BarProgress]:
    """A transient progress bar on stdout for one library call; none when stdout is not a
    terminal (a pipe or a log gets the results, not the redraws)."""
    from rich.progress import Progress as RichProgressBar

    with RichProgressBar(
        *bar_columns(),
        console=console,
        disable=disable or not console.is_terminal,
        transient=True,
    ) as bar:
        yield BarProgress(bar)
