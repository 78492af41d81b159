"""Photos a user names on the command line: finding them in folders and checking them.

Shared by ``predict``, ``explain`` and ``import``: one list of suffixes, one way to walk a
folder, one message for a file that is not an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geotag.errors import InputError, first_line
from geotag.progress import NullProgress, Progress

#: Files a folder is searched for. HEIC is listed so iPhone photos are reported as
#: unreadable (Pillow cannot decode them) instead of silently ignored.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic"}
)


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named, and the images inside folders named (sorted); what cannot be used."""
    files: list[Path] = []
    bad: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                bad.append((str(path), "folder has no images"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            bad.append((str(path), "no such file"))
    return list(dict.fromkeys(files)), bad


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not an image, or None. Only the header is read here: the pixels are
    decoded once, by the loader, which reports a truncated file as undecodable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"cannot decode ({first_line(exc)})"
    return None


def usable_images(
    inputs: Sequence[Path], verb: str, progress: Progress | None = None
) -> tuple[list[Path], list[tuple[str, str]]]:
    """The images among ``inputs`` whose headers read, and (path, why) for the rest.

    Raises when none is usable: "no image to <verb>", with the first reasons.
    """
    if not inputs:
        raise InputError("name at least one image or folder")
    progress = progress or NullProgress()
    files, bad = collect_images(inputs)
    progress.start("reading images", len(files))
    usable = []
    for path in files:
        why = image_problem(path)
        if why is None:
            usable.append(path)
        else:
            bad.append((str(path), why))
        progress.advance()
    if not usable:
        reasons = "; ".join(f"{p}: {why}" for p, why in bad[:3]) or "no image given"
        raise InputError(f"no image to {verb}: {reasons}")
    return usable, bad
