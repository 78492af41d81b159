"""Atomic file writes: write beside the target, then ``os.replace`` it into place.

A crash or Ctrl-C mid-write leaves the previous file intact, never half of a new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    # Read once at import: os.umask sets as it reads, and threads may be writing later.
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success move it onto ``target``.

    The temporary name keeps ``target``'s suffix so that writers which infer a format from
    the extension (GDAL, matplotlib) behave as they would on the real name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # Some writers (GDAL's GeoJSON driver) refuse to overwrite an existing file.
    tmp.unlink()
    try:
        yield tmp
        if tmp.exists():
            # mkstemp makes files private (0600); give the file the permissions a plain
            # open() would have, as the user's umask says.
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
