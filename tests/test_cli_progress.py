"""The CLI's progress bar counts what the library reports: done/total, rate, time left."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from geotag.cli.common import BarProgress, bar_columns


def test_bar_progress_shows_counts_and_restarts_per_task() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with Progress(*bar_columns(), console=console, auto_refresh=False) as bar:
        progress = BarProgress(bar)
        progress.start("fold 0: 40 images", 4)
        for _ in range(3):
            progress.advance()
        task = bar.tasks[0]
        assert (task.description, task.total, task.completed) == ("fold 0: 40 images", 4, 3)
        bar.refresh()
        assert "3/4" in out.getvalue()
        progress.start("ablation: band only", 10)
        progress.advance(10)
        assert len(bar.tasks) == 1  # one line, renamed as work moves on
        assert (bar.tasks[0].total, bar.tasks[0].completed) == (10, 10)
        bar.refresh()
        assert "10/10" in out.getvalue() and "ablation: band only" in out.getvalue()
