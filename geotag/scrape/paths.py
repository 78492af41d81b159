"""Safe file names for images: server-provided ids never choose where a file goes.

A pano id like ``../../x`` or ``C:\\evil`` must stay a plain name inside ``images/``:
anything outside ``[A-Za-z0-9_-]`` becomes ``_``, and a short hash of the original keeps
two ids that sanitise alike from sharing a file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_STEM = 80


def safe_stem(identifier: str) -> str:
    """A file-name stem for ``identifier``: unchanged when already safe and short."""
    cleaned = UNSAFE.sub("_", identifier)[:MAX_STEM]
    if cleaned == identifier and cleaned:
        return cleaned
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned or 'id'}-{digest}"


def image_relpath(cell_id: int, identifier: str, heading: float | None = None) -> str:
    """``images/<cell_id>/<id>[_<heading>].jpg``, relative to the workspace, POSIX style."""
    stem = safe_stem(identifier)
    if heading is not None:
        stem = f"{stem}_{heading:g}".replace(".", "p")
    return str(PurePosixPath("images") / str(int(cell_id)) / f"{stem}.jpg")
