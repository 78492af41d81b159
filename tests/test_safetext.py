"""Text from outside is shown, never obeyed: no terminal escapes, no bidi tricks, no markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from geotag.safetext import markup_safe, optional_text, printable

HOSTILE = {
    "clear-screen": ("\x1b[2J\x1b[Hhello", "hello"),
    "colour": ("\x1b[31mred\x1b[0m text", "red text"),
    "osc-8-link": ("\x1b]8;;http://evil.example\x07click\x1b]8;;\x07", "click"),
    "osc-title": ("\x1b]0;owned\x1b\\name", "name"),
    "carriage-return": ("safe\rEVIL", "safe EVIL"),
    "newlines-and-tabs": ("one\ntwo\tthree\r\n", "one two three"),
    "bell-and-del": ("a\x07b\x7fc", "a b c"),
    "c1-csi": ("x\x9b31my", "x 31my"),
    "bidi-override": ("invoice\u202egpj.exe", "invoice gpj.exe"),
    "bidi-isolate": ("a\u2066b\u2069c", "a b c"),
    "line-separator": ("a\u2028b", "a b"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_printable_drops_controls_and_keeps_the_words(case: str) -> None:
    raw, shown = HOSTILE[case]
    assert printable(raw) == shown


def test_ordinary_text_is_left_alone() -> None:
    for text in ("© Google", "Zoë Müller-Łukasz", "東京都", "O'Brien (2021)", "👍🏽 emoji"):
        assert printable(text) == text


def test_printable_shortens() -> None:
    assert printable("x" * 50, limit=10) == "xxxxxxx..."


def test_markup_is_shown_literally_by_rich() -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="truecolor").print(
        "Error: " + markup_safe("[link=http://evil]click[/link] [bold red]x[/bold red]\x1b[2J"),
        highlight=False,
    )
    text = out.getvalue()
    assert "[link=http://evil]click[/link] [bold red]x[/bold red]" in text
    assert "\x1b]8;" not in text  # no hyperlink was made
    assert "\x1b[2J" not in text


def test_optional_text_takes_only_scalars() -> None:
    assert optional_text("  a\x1bb ", 10) == "a b"
    assert optional_text(2021, 10) == "2021"
    for value in (None, "", "\x1b", {"a": 1}, ["x"], True):
        assert optional_text(value, 10) is None
