"""Text that came from outside (a server's answer, a photo's EXIF, a file name), made safe.

A server's ``error_message`` or a photographer's name can carry terminal control sequences
(``ESC[2J`` clears the screen, OSC 8 forges a link, a bare CR overwrites the line) or
Unicode bidi overrides that show text in another order than it is stored; printed as it
came, it rewrites the user's terminal, a log or a report. Rich would also read
``[link=...]`` in it as markup. :func:`printable` keeps the words and drops the controls;
:func:`markup_safe` also escapes Rich markup, for text that goes to the console.
"""

from __future__ import annotations

import re

#: C0 and C1 controls (ESC, BEL, CR, DEL, CSI ...), Unicode line and paragraph separators,
#: and the bidi embeddings, overrides and isolates ("Trojan Source"). Tabs and line breaks
#: become spaces, so a message stays one line.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: Whole escape sequences, removed before the controls so no "[2J" is left behind: CSI
#: (ESC [ ... final byte), OSC/DCS/APC/PM strings (ESC ] ... BEL or ESC \), and the other
#: two-byte escapes.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b[\]P_^][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, DCS, APC, PM
    r"|\x1b[@-_]"  # two-byte escapes
)
_SPACES = re.compile(r"\s{2,}")


def printable(value: object, limit: int | None = None) -> str:
    """``value`` as one line of text with no control characters, at most ``limit`` long."""
    text = _CONTROLS.sub(" ", _SEQUENCES.sub("", str(value)))
    text = _SPACES.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def optional_text(value: object, limit: int) -> str | None:
    """A server's optional string field, cleaned; None when absent, empty or not text."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    text = printable(value, limit)
    return text or None


def markup_safe(value: object, limit: int | None = None) -> str:
    """:func:`printable`, with Rich markup escaped: safe inside ``console.print``."""
    from rich.markup import escape

    return escape(printable(value, limit))
