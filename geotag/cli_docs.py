"""docs/cli.md from the commands' own ``--help``, so the reference cannot drift from them.

    python -m geotag.cli_docs > docs/cli.md

A test compares the file with this output and fails when someone changes a command
without regenerating it.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

#: Help is rendered at a fixed width without colour, the same on every machine.
WIDTH = 100
HEADER = """# geotag command reference

Generated from each command's `--help` by `python -m geotag.cli_docs > docs/cli.md`;
a test fails when this file is stale. Every command takes `-h` as well as `--help`.
"""


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command, in the order ``geotag --help`` lists them."""
    paths: list[tuple[str, ...]] = []
    context = group.context_class(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        paths.append((*prefix, name))
        if hasattr(command, "list_commands"):  # a group of its own, like `geotag sim`
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


def help_text(app: typer.Typer, path: tuple[str, ...]) -> str:
    from typer import rich_utils

    # Typer reads these from the environment at import (TERMINAL_WIDTH, FORCE_COLOR, CI
    # variables); pin them so the text is the same in a terminal, in CI and in a test.
    pinned = {"MAX_WIDTH": WIDTH, "FORCE_TERMINAL": False, "COLOR_SYSTEM": None}
    saved = {name: getattr(rich_utils, name) for name in pinned}
    for name, value in pinned.items():
        setattr(rich_utils, name, value)
    try:
        env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
        result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="geotag")
    finally:
        for name, value in saved.items():
            setattr(rich_utils, name, value)
    if result.exit_code != 0:
        raise RuntimeError(f"geotag {' '.join(path)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")


def render(app: typer.Typer) -> str:
    group = typer.main.get_command(app)
    sections = [HEADER, "```text\n" + help_text(app, ()) + "\n```\n"]
    for path in command_paths(group):
        title = " ".join(("geotag", *path))
        sections.append(f"## `{title}`\n\n```text\n{help_text(app, path)}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    from geotag.cli import app

    print(render(app), end="")
