"""Photos that already have coordinates -> checked, labelled image files and their rows.

The body of ``geotag import``; the stage (``geotag.stages.import_images``) runs these steps
in order and writes images.parquet:

    source_kind, read_source  ->  decode_all  ->  accept  ->  target_relpath, place, row

A source is a table (CSV or Parquet: ``path``, ``lat``, ``lon``, optional ``group``,
``heading``, ``captured``, ``copyright``, ``license``; relative paths resolve against the
table's folder) or a folder of photos whose EXIF GPS tags say where they were taken.

Every image is fully decoded before it is accepted, labelled with the cell of its location
(outside the region: dropped and counted), and copied or hard-linked atomically into
``images/<cell_id>/``. A file's name comes from its source path, so re-running an import
rewrites the same files and rows instead of adding new ones. Images that cannot be used
are reported as :class:`Skipped`, with one of ``SKIP_REASONS``; so is a photo with a value
that is there but wrong (a heading of 1e308, a date 2020-13-45, a hemisphere "Q"): it is
skipped whole rather than imported without that value (nothing is half-imported, and the
user who fixes the value and reruns gets the same files and rows). A folder is walked as
:mod:`geotag.images` walks it for ``predict``: images known by content, links followed once,
the entries left out counted in ``notes``. Images already in the workspace's images/ are
never imported again, and the workspace's own images.parquet is refused.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import math
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from geotag.atomic import atomic_path
from geotag.errors import InputError, first_line
from geotag.exif import BadValue, ExifInfo, checked_date, heading_degrees, read_exif
from geotag.geo.locate import OUTSIDE, CellLocator
from geotag.images import (
    BROKEN_LINK,
    LINK_UP,
    SAME_FOLDER,
    TOO_LARGE,
    not_a_file,
    scan_folder,
)
from geotag.progress import Progress
from geotag.safetext import optional_text
from geotag.scrape.paths import image_relpath
from geotag.workspace import Workspace

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
REQUIRED_COLUMNS = ("path", "lat", "lon")
TEXT_COLUMNS = ("group", "captured", "copyright", "license")
#: Kept byte for byte; MPO (phones' multi-picture files) is a JPEG with extra frames.
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
JPEG_QUALITY = 95
#: Default groups: one per place, coordinates rounded to 1e-6 degrees (about 10 cm).
GROUP_DECIMALS = 6
MAX_WORKERS = 8
#: What ``atomic_path`` leaves behind when the process is killed mid-write.
STALE_TEMPORARY = ".*.tmp.jpg"

# Why a source image was not imported (Skipped.reason).
MISSING_FILE = "missing file"
UNREADABLE = "unreadable"
NO_GPS = "no GPS"
BAD_COORDINATES = "bad coordinates"
OUTSIDE_REGION = "outside region"
BAD_HEADING = "bad heading"
BAD_DATE = "bad date"
DUPLICATE = "duplicate"
SKIP_REASONS = (
    MISSING_FILE,
    UNREADABLE,
    NO_GPS,
    BAD_COORDINATES,
    BAD_HEADING,
    BAD_DATE,
    OUTSIDE_REGION,
    DUPLICATE,
)

SourceKind = Literal["folder", "table"]


@dataclass(frozen=True)
class Skipped:
    """A source image that was not imported, and why."""

    source: str  # as the table or folder names it
    reason: str  # one of SKIP_REASONS
    detail: str  # one line for the user


@dataclass(frozen=True)
class Candidate:
    """An image the source names, with what a table says about it; EXIF fills the gaps."""

    label: str
    path: Path  # absolute
    lat: float | None = None  # None: from EXIF
    lon: float | None = None
    group: str | None = None
    heading: float | None = None
    captured: str | None = None
    copyright: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class Decoded:
    """What decoding an image file found out."""

    format: str
    digest: str  # of the file's bytes, to spot the same photo under two names
    exif: ExifInfo
    animated: bool = False  # several frames: the first is imported (images.FIRST_FRAME)


@dataclass(frozen=True)
class Accepted:
    """A candidate to import: decoded, at valid coordinates, in a cell, not a duplicate."""

    candidate: Candidate
    decoded: Decoded
    lat: float
    lon: float
    cell_id: int


class ConversionError(Exception):
    """A non-JPEG image decoded once but cannot be turned into a JPEG now."""


# -- reading the source -------------------------------------------------------------------
def source_kind(source: Path) -> SourceKind:
    """Whether ``source`` is a folder or a table; anything else is refused in one line."""
    if source.is_dir():
        return "folder"
    if not source.exists():
        raise InputError(f"{source} does not exist; give a CSV or Parquet table or a folder")
    if source.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{source} is neither a table (.csv, .parquet) nor a folder of images")
    return "table"


def read_source(
    source: Path,
    kind: SourceKind,
    workspace: Workspace,
    skipped: list[Skipped],
    notes: list[str] | None = None,
) -> list[Candidate]:
    """The images ``source`` names, in source order; unusable rows and entries to
    ``skipped``, a line on what a folder walk left out (sidecars, hidden files) to ``notes``.

    Refuses the workspace's own images.parquet and images/ folder in one line: their
    images are in the dataset already, and importing them again would double its rows.
    """
    real = Path(os.path.realpath(source))
    images_dir = Path(os.path.realpath(workspace.images_dir))
    if real == Path(os.path.realpath(workspace.images_parquet)):
        raise InputError(
            f"{source} is this workspace's own images.parquet; its images are imported "
            "already, nothing to import"
        )
    if real.is_relative_to(images_dir):
        raise InputError(
            f"{source} is inside this workspace's images/ folder, whose images are in "
            "images.parquet already; nothing to import"
        )
    if kind == "folder":
        found = _folder_candidates(source, workspace, skipped, notes)
    else:
        found = _table_candidates(source, skipped)
    candidates = []
    for candidate in found:
        # A table that lists images/ files (an edited copy of images.parquet, say) would
        # copy each image beside itself and add its row a second time.
        if candidate.path.is_relative_to(images_dir):
            where = "already in this workspace's images/ (and so in images.parquet)"
            skipped.append(Skipped(candidate.label, DUPLICATE, where))
        else:
            candidates.append(candidate)
    return candidates


def _folder_candidates(
    folder: Path, workspace: Workspace, skipped: list[Skipped], notes: list[str] | None
) -> list[Candidate]:
    """Image files under ``folder``, in a stable order (see geotag.images.scan_folder).

    The workspace's own images and plots are left out when ``geotag import .`` runs
    inside it; links that lead nowhere and folders reached twice are skipped with reasons.
    """
    own = (workspace.images_dir, workspace.runs_dir, workspace.grid_png, workspace.points_png)
    scan = scan_folder(folder, leave_out=own)
    for path, why in scan.skipped:
        reason = (
            MISSING_FILE
            if why == BROKEN_LINK
            else DUPLICATE
            if why.startswith((SAME_FOLDER, LINK_UP))  # a loop: its images would repeat
            else UNREADABLE  # a pipe or device, a folder that cannot be listed
        )
        skipped.append(Skipped(_label(Path(path), folder), reason, why))
    note = scan.left_out()
    if note and notes is not None:
        notes.append(f"{folder}: {note}")
    return [Candidate(_label(path, folder), Path(os.path.realpath(path))) for path in scan.files]


def _label(path: Path, folder: Path) -> str:
    """How a file under ``folder`` is named to the user: relative, with forward slashes."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _read_table(table: Path) -> pd.DataFrame:
    try:
        if table.suffix.lower() == ".csv":
            # Text as given: a group "007" stays "007"; numbers are parsed below.
            return pd.read_csv(table, dtype=str, encoding="utf-8-sig")
        return pd.read_parquet(table)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {table}: {first_line(exc)}") from None


def _table_candidates(table: Path, skipped: list[Skipped]) -> list[Candidate]:
    """The table's rows that name an existing file at valid coordinates; others to ``skipped``."""
    frame = _read_table(table)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{table.name} lacks column(s) {', '.join(missing)}; "
            f"a table needs {', '.join(REQUIRED_COLUMNS)}"
        )
    numbers = {
        c: pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy()
        for c in ("lat", "lon")
    }
    # Headings as given: text "abc" or "1e308" is a listed skip, never a silent NaN.
    headings = (
        [None if _missing(v) else v for v in frame["heading"]]
        if "heading" in frame.columns
        else [None] * len(frame)
    )
    texts = {
        c: [_cell_text(v) for v in frame[c]] if c in frame.columns else [None] * len(frame)
        for c in TEXT_COLUMNS
    }
    candidates = []
    for i, raw in enumerate(frame["path"]):
        lat, lon = float(numbers["lat"][i]), float(numbers["lon"][i])
        label = _cell_text(raw)
        if label is None:
            skipped.append(Skipped(f"{table.name} row {i + 1}", MISSING_FILE, "no path given"))
            continue
        problem = _coordinate_problem(lat, lon)
        if problem:
            skipped.append(Skipped(label, BAD_COORDINATES, problem))
            continue
        given = table.parent / Path(label).expanduser()
        path = Path(os.path.realpath(given))  # never raises, even for a link that loops
        if not given.is_file():
            why = not_a_file(given)
            detail = f"{why}: {path}" if why != BROKEN_LINK else f"{why}: {given}"
            skipped.append(Skipped(label, MISSING_FILE, detail))
            continue
        try:
            heading = heading_degrees(headings[i])
        except BadValue as exc:
            skipped.append(Skipped(label, BAD_HEADING, str(exc)))
            continue
        try:
            captured = checked_date(texts["captured"][i])
        except BadValue as exc:
            skipped.append(Skipped(label, BAD_DATE, str(exc)))
            continue
        candidates.append(
            Candidate(
                label,
                path,
                lat,
                lon,
                group=texts["group"][i],
                heading=heading,
                captured=captured,
                copyright=texts["copyright"][i],
                license=texts["license"][i],
            )
        )
    return candidates


def _missing(value: Any) -> bool:
    """Whether a table cell is empty: None, NaN, NA or NaT."""
    return value is None or bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _cell_text(value: Any) -> str | None:
    """A table cell as text: None for missing or blank; dates as ISO text."""
    if _missing(value):
        return None  # before the date test: NaT is a datetime too
    if isinstance(value, datetime.date):  # Parquet dates and timestamps
        return value.isoformat()
    return str(value).strip() or None


# -- decoding -----------------------------------------------------------------------------
def decode_all(candidates: list[Candidate], progress: Progress) -> dict[Path, Decoded | str]:
    """Decode every file the candidates name, once each, on a few threads (Pillow releases
    the GIL while decoding); a string says why a file cannot be used."""
    paths = list(dict.fromkeys(c.path for c in candidates))
    progress.start("decoding images", len(paths))
    results: dict[Path, Decoded | str] = {}
    pool = ThreadPoolExecutor(max(1, min(MAX_WORKERS, os.cpu_count() or 1, len(paths))))
    try:
        with warnings.catch_warnings():
            # Pillow warns about odd EXIF and very large images; each image either decodes
            # or is reported as unreadable, so the warnings are noise here.
            warnings.simplefilter("ignore")
            for path, outcome in zip(paths, pool.map(_decode, paths), strict=True):
                results[path] = outcome
                progress.advance()
    finally:
        pool.shutdown(cancel_futures=True)  # Ctrl-C must not wait for the whole queue
    return results


def _decode(path: Path) -> Decoded | str:
    """Read and fully decode one image; a string says why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # every pixel: a truncated file fails here, not in training
            exif = read_exif(image)
            frames = bool(getattr(image, "is_animated", False))
            return Decoded(str(image.format), hashlib.sha256(data).hexdigest(), exif, frames)
    except UnidentifiedImageError:
        return "not an image file Pillow can read"
    except Image.DecompressionBombError as exc:  # a header that claims billions of pixels
        return f"{TOO_LARGE} ({first_line(exc)})"
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError ...
        return f"cannot decode the image: {first_line(exc)}"


# -- deciding -----------------------------------------------------------------------------
def accept(
    candidates: list[Candidate],
    decoded: dict[Path, Decoded | str],
    locator: CellLocator,
    skipped: list[Skipped],
) -> list[Accepted]:
    """The candidates to import, in source order; the rest go to ``skipped``."""
    placed: list[tuple[Candidate, Decoded, float, float]] = []
    for candidate in candidates:
        outcome = decoded[candidate.path]
        if isinstance(outcome, str):
            skipped.append(Skipped(candidate.label, UNREADABLE, outcome))
            continue
        exif = outcome.exif
        lat, lon = candidate.lat, candidate.lon
        if lat is None or lon is None:
            if exif.position_problem:
                skipped.append(Skipped(candidate.label, BAD_COORDINATES, exif.position_problem))
                continue
            lat, lon = exif.lat, exif.lon
        if lat is None or lon is None:
            skipped.append(Skipped(candidate.label, NO_GPS, "no GPS position in its EXIF"))
            continue
        # EXIF's heading and date count only where the table gives none (see row()).
        if candidate.heading is None and exif.heading_problem:
            skipped.append(Skipped(candidate.label, BAD_HEADING, f"EXIF: {exif.heading_problem}"))
            continue
        if candidate.captured is None and exif.date_problem:
            skipped.append(Skipped(candidate.label, BAD_DATE, f"EXIF: {exif.date_problem}"))
            continue
        problem = _coordinate_problem(lat, lon)
        if problem:
            skipped.append(Skipped(candidate.label, BAD_COORDINATES, problem))
            continue
        placed.append((candidate, outcome, lat, lon))
    cells = locator.cells(np.array([p[2] for p in placed]), np.array([p[3] for p in placed]))
    accepted: list[Accepted] = []
    first_seen: dict[str, str] = {}  # digest -> label
    for (candidate, outcome, lat, lon), cell_id in zip(placed, cells, strict=True):
        if cell_id == OUTSIDE:
            where = f"{lat:.6f}, {lon:.6f} is in no cell of the grid"
            skipped.append(Skipped(candidate.label, OUTSIDE_REGION, where))
        elif outcome.digest in first_seen:
            # Two copies of one photo would land in different folds and leak the answer.
            same = f"same image as {first_seen[outcome.digest]}"
            skipped.append(Skipped(candidate.label, DUPLICATE, same))
        else:
            first_seen[outcome.digest] = candidate.label
            accepted.append(Accepted(candidate, outcome, lat, lon, int(cell_id)))
    return accepted


def _coordinate_problem(lat: float, lon: float) -> str | None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return "lat/lon missing or not a number"
    if not -90 <= lat <= 90:
        return f"latitude {lat:g} is not in [-90, 90]"
    if not -180 <= lon <= 180:
        return f"longitude {lon:g} is not in [-180, 180]"
    return None


def default_group(lat: float, lon: float) -> str:
    """One group per place, so the several headings shot at one spot stay in one fold."""
    # round() then + 0.0 turns -0.0 into 0.0: one place, one name.
    lat, lon = round(lat, GROUP_DECIMALS) + 0.0, round(lon, GROUP_DECIMALS) + 0.0
    return f"{lat:.{GROUP_DECIMALS}f},{lon:.{GROUP_DECIMALS}f}"


# -- writing ------------------------------------------------------------------------------
def target_relpath(item: Accepted) -> str:
    """Where the image goes, relative to the workspace: ``images/<cell_id>/<id>.jpg``."""
    return image_relpath(item.cell_id, _identifier(item.candidate.path))


def _identifier(path: Path) -> str:
    """The file's stem plus a hash of its absolute path: the same on every run, and two
    ``IMG_0001.jpg`` from different folders stay apart."""
    return f"{path.stem}-{hashlib.sha256(os.fsencode(path)).hexdigest()[:10]}"


def place(item: Accepted, target: Path, link: bool) -> str:
    """Put the image at ``target`` atomically; say whether it was linked, copied or converted.

    Raises ConversionError when a non-JPEG image cannot be re-encoded; nothing is written.
    """
    source = item.candidate.path
    if item.decoded.format not in JPEG_FORMATS:
        data = _jpeg_bytes(source)  # before the write, so a failure here is the image's
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        return "converted"
    with atomic_path(target) as tmp:
        if link:
            try:
                os.link(source, tmp)
                return "linked"
            except OSError:
                pass  # another filesystem (EXDEV) or one without hard links: copy
        shutil.copyfile(source, tmp)
    return "copied"


def _jpeg_bytes(source: Path) -> bytes:
    """``source`` (PNG, TIFF ...) re-encoded as an RGB JPEG."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's notes on palette transparency
            with Image.open(source) as image:
                image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    except Exception as exc:  # the file changed since it was decoded, or an odd mode
        raise ConversionError(f"cannot convert to JPEG: {first_line(exc)}") from None
    return buffer.getvalue()


def remove_stale_temporaries(images_dir: Path) -> None:
    """Delete temporaries that a killed import left in images/<cell_id>/."""
    if images_dir.is_dir():
        for path in images_dir.glob(f"*/{STALE_TEMPORARY}"):
            path.unlink(missing_ok=True)


def row(item: Accepted, relpath: str, provider: str, license: str | None) -> dict[str, Any]:
    """The image's images.parquet row: the source's values first, then EXIF, then defaults."""
    candidate, exif = item.candidate, item.decoded.exif
    group = candidate.group or default_group(item.lat, item.lon)
    return {
        "path": relpath,
        "pano_id": group,
        "group": group,
        "lat": item.lat,
        "lon": item.lon,
        "heading": _first(candidate.heading, exif.heading),
        "cell_id": item.cell_id,
        "captured": _first(candidate.captured, exif.captured),
        # A photo's EXIF or a table is outside text too: no terminal escapes get stored.
        "copyright": optional_text(_first(candidate.copyright, exif.copyright), 200),
        "provider": provider,
        "license": _first(candidate.license, license),
    }


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
