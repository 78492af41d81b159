"""docs/cli.md is generated from the commands' --help and must not go stale."""

from __future__ import annotations

from pathlib import Path

from geotag.cli import app
from geotag.cli_docs import render

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_matches_every_commands_help() -> None:
    expected = render(app)
    assert DOCS.read_text() == expected, (
        "docs/cli.md is stale: run `python -m geotag.cli_docs > docs/cli.md`"
    )
    for command in ("grid", "sample", "scrape", "import", "train", "eval", "predict",
                    "explain", "demo", "sim serve", "sim render", "sim preview"):  # fmt: skip
        assert f"## `geotag {command}`" in expected
        assert f"Usage: geotag {command}" in expected
