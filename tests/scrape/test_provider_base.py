"""What every provider shares: the image options the user asks for."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import InputError
from geotag.scrape.providers.base import ImageOptions


def test_headings_are_parsed_wrapped_and_deduplicated_in_order() -> None:
    assert ImageOptions.parse_headings("0,90,180,270") == (0.0, 90.0, 180.0, 270.0)
    assert ImageOptions.parse_headings(" 450, -90 ,90,") == (90.0, 270.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,north", "--headings must be degrees separated by commas; got '0,north'"),
        (" , ", "--headings needs at least one heading"),
    ],
)
def test_bad_headings_are_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        ImageOptions.parse_headings(text)
    assert str(raised.value) == message


def test_the_command_line_shows_the_headings_error_as_it_is(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["scrape", "-w", str(tmp_path), "--provider", "sim", "--headings", "0,north"]
    )
    assert result.exit_code == 1
    assert result.stderr == "Error: --headings must be degrees separated by commas; got '0,north'\n"
    assert not any(tmp_path.iterdir())
