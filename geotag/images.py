"""Photos a user names on the command line: finding them in folders and checking them.

Shared by ``predict``, ``explain`` and ``import``: one way to walk a folder, one way to tell
an image from another file, one message for a file that is not an image.

A folder's files are judged by their content, not their names: every file whose header
Pillow reads is an image (a JPEG named ``.heic``, a GIF, a photo without a suffix), and so
is every file named like one (a damaged ``photo.jpg`` is reported, not ignored). The other
files (sidecars such as ``.json`` and ``.xmp``, notes) and hidden entries (``.DS_Store``,
macOS ``._IMG.jpg`` forks, ``.thumbnails/``) are *counted* in one line per folder rather
than listed one by one: a Google Takeout folder has a ``.json`` beside every photo. Links
are followed, but never into a folder already walked nor up into one that holds the folder
named (a loop either way); such links, and broken or looping file links, are listed with
their reason.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geotag.errors import InputError, first_line
from geotag.progress import NullProgress, Progress

#: Names of image files: such a file is reported when it cannot be read, where any other
#: file that is no image is only counted. HEIC is listed so iPhone photos are reported as
#: unreadable (Pillow cannot decode them) instead of counted with the sidecars.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic"}
)
HEIF_SUFFIXES = frozenset({".heic", ".heif"})

# Why an entry of a folder is not looked at (the second item of a (path, why) pair).
BROKEN_LINK = "broken or looping link"
NOT_A_FILE = "not a regular file (a pipe, socket or device)"
CANNOT_LIST = "cannot list the folder"
SAME_FOLDER = "the same folder as"  # ... <the path it was searched as>, already searched
LINK_UP = "a link up to"  # ... <a folder that holds the one searched>; not followed
NOT_AN_IMAGE = "not an image"
#: Over Pillow's limit on pixels (Image.MAX_IMAGE_PIXELS): a header can claim billions of
#: pixels in a few bytes (a decompression bomb), so such a file is skipped, not decoded.
TOO_LARGE = "too large to decode safely"
#: Said of an image with several frames (an animated GIF, PNG or WebP): geotag uses the
#: first frame, the one every viewer shows first, as it does when the file is named alone.
FIRST_FRAME = "animated: only its first frame is used"


@dataclass
class FolderScan:
    """What walking one folder found: files to read, entries listed, entries counted."""

    folder: Path
    files: list[Path] = field(default_factory=list)  # images, or named like one; walk order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    hidden: int = 0  # names starting with "."
    others: Counter[str] = field(default_factory=Counter)  # suffix -> files that are no image

    def left_out(self) -> str | None:
        """One line on the entries that were counted, not listed; None when there were none."""
        parts = []
        if self.others:
            count = sum(self.others.values())
            kinds = ", ".join(s for s, _ in self.others.most_common(4))
            more = ", ..." if len(self.others) > 4 else ""
            what = "file that is not an image" if count == 1 else "files that are not images"
            parts.append(f"{count:,} {what} ({kinds}{more})")
        if self.hidden:
            plural = "s" * (self.hidden != 1)
            parts.append(f"{self.hidden:,} hidden file{plural} or folder{plural}")
        return "left out " + " and ".join(parts) if parts else None


def scan_folder(folder: Path, *, leave_out: Collection[Path] = ()) -> FolderScan:
    """Walk ``folder`` (sorted, links followed once); ``leave_out``: files and folders that
    are skipped without a word (the workspace's own, when a workspace is walked)."""
    scan = FolderScan(Path(folder))
    excluded = {os.path.realpath(p) for p in leave_out}
    top = Path(os.path.realpath(folder))
    walked = {str(top): str(folder)}  # real path -> the path it was walked as

    def unlisted(error: OSError) -> None:
        where = error.filename or str(folder)
        scan.skipped.append((str(where), f"{CANNOT_LIST}: {error.strerror or error}"))

    for root, dirs, names in os.walk(folder, onerror=unlisted, followlinks=True):
        kept = []
        for name in sorted(dirs):
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if name.startswith("."):
                scan.hidden += 1
            elif real in excluded:
                continue
            elif real in walked:  # a link back up (a loop) or a second way to one folder
                scan.skipped.append((path, f"{SAME_FOLDER} {walked[real]}, already searched"))
            elif top.is_relative_to(real):  # e.g. photos/home -> ~: the folder and far more
                scan.skipped.append((path, f"{LINK_UP} {real}, which holds {folder}; not followed"))
            else:
                walked[real] = path
                kept.append(name)
        dirs[:] = kept  # os.walk descends only into these
        for name in sorted(names):
            file = Path(root, name)
            if name.startswith("."):
                scan.hidden += 1
            elif os.path.realpath(file) in excluded:
                continue
            elif not file.is_file():  # False, not an error, for a link that loops
                scan.skipped.append((str(file), not_a_file(file)))
            elif file.suffix.lower() in IMAGE_SUFFIXES or _looks_like_an_image(file):
                scan.files.append(file)
            else:
                scan.others[file.suffix.lower() or "no suffix"] += 1
    return scan


def not_a_file(path: Path) -> str:
    """Why ``path``, which is not a regular file, cannot be read."""
    if path.is_symlink() and not path.exists():
        return BROKEN_LINK
    return NOT_A_FILE if path.exists() else "no such file"


def _looks_like_an_image(path: Path) -> bool:
    """Whether Pillow recognises the header. A recognised header whose image then fails
    (damaged, too large) counts as an image: that failure is reported where it is checked."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the check that keeps the image reports them
            with Image.open(path):
                return True
    except UnidentifiedImageError:
        return False
    except Exception:  # the header named a format, then something failed
        return True


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named, and the images inside folders named (sorted); what cannot be used,
    with one line per folder on what was left out of it (see the module's docstring)."""
    files: list[Path] = []
    bad: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            scan = scan_folder(path)
            bad.extend(scan.skipped)
            note = scan.left_out()
            if not scan.files:
                bad.append((str(path), "folder has no images" + (f"; {note}" if note else "")))
            elif note:
                bad.append((str(path), note))
            files.extend(sorted(scan.files))
        elif path.is_file():
            files.append(path)
        else:
            bad.append((str(path), not_a_file(path)))
    return list(dict.fromkeys(files)), bad


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not an image geotag can use, or None. Only the header is read here:
    the pixels are decoded once, by the loader, which reports a truncated file as
    undecodable. Never raises for a bad file (Ctrl-C still stops)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except UnidentifiedImageError:
        if path.suffix.lower() in HEIF_SUFFIXES:
            return "HEIC/HEIF, which Pillow cannot read; convert it to JPEG"
        return NOT_AN_IMAGE
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning, for images up to twice the limit, only arrives here as an error when
        # the warning filters ask for errors; then it is a skip like the error, not a crash.
        return f"{TOO_LARGE} ({first_line(exc)})"
    except Exception as exc:  # plugins raise OSError, SyntaxError, ValueError, struct.error ...
        return f"cannot decode ({first_line(exc)})"
    return None


def animated(path: Path) -> bool:
    """Whether ``path`` holds several frames (an animated GIF, PNG or WebP); see FIRST_FRAME."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except Exception:  # image_problem reports what is wrong with the file
        return False


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
