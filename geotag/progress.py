"""The one progress abstraction the library reports through.

Library functions take ``progress: Progress | None``, call ``progress.start(task, total)``
when a step begins and ``progress.advance(n)`` as it moves on; the CLI backs it with a
counting ``rich.progress`` bar, tests pass nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int | None) -> None:
        """A new task begins; ``total`` is its number of steps, if known."""

    def advance(self, steps: int = 1) -> None:
        """The current task did ``steps`` more steps."""


class NullProgress:
    """Progress that goes nowhere: the default for library calls."""

    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass
