"""Where, when, which way and by whom a photo was taken, from its EXIF tags.

Used by ``geotag import`` (labels from GPS tags) and ``geotag predict`` (the true location
of a photo, to report the error). Damaged or missing tags give None, never an exception;
a tag that is there but wrong (a hemisphere "Q", a heading of 4294967295, a date 2020:13:45)
gives None and says why, so the importer can list the photo instead of guessing.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import ExifTags, Image

T = TypeVar("T")


class BadValue(ValueError):
    """A tag or table cell holds a value, but a wrong one; the message (one line) says
    what it holds and what was expected."""


@dataclass(frozen=True)
class ExifInfo:
    """What an image's EXIF says; None where it says nothing usable."""

    lat: float | None = None
    lon: float | None = None
    heading: float | None = None
    captured: str | None = None
    copyright: str | None = None
    # Why a value that is there cannot be used: a position whose hemisphere reference is
    # not N/S or E/W, a heading of 4294967295, a date of 2020:13:45. Each leaves its value
    # None; the importer skips such a photo with this reason rather than guess.
    position_problem: str | None = None
    heading_problem: str | None = None
    date_problem: str | None = None


def read_exif(image: Image.Image) -> ExifInfo:
    """Position, heading, date and author from an image's EXIF; damaged EXIF gives nothing."""
    try:
        exif = image.getexif()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        details = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # damaged EXIF must not cost an image whose pixels are fine
        return ExifInfo()
    lat, lat_problem = _gps_degrees(
        gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "NS", "latitude"
    )
    lon, lon_problem = _gps_degrees(
        gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "EW", "longitude"
    )
    if lat is None or lon is None:
        lat = lon = None
    heading, heading_problem = _checked(heading_degrees, gps.get(ExifTags.GPS.GPSImgDirection))
    original = _exif_text(details.get(ExifTags.Base.DateTimeOriginal))
    when = (
        original
        if original is not None
        else _exif_text(details.get(ExifTags.Base.DateTimeDigitized))
    )
    captured, date_problem = _checked(checked_date, when)
    author = _exif_text(exif.get(ExifTags.Base.Copyright)) or _exif_text(
        exif.get(ExifTags.Base.Artist)
    )
    return ExifInfo(
        lat,
        lon,
        heading,
        captured,
        author,
        position_problem=lat_problem or lon_problem,
        heading_problem=heading_problem,
        date_problem=date_problem,
    )


def _checked(parse: Callable[[Any], T | None], value: Any) -> tuple[T | None, str | None]:
    """``parse(value)``, or (None, why) when the value is there but bad."""
    try:
        return parse(value), None
    except BadValue as exc:
        return None, str(exc)


def _gps_degrees(value: Any, ref: Any, refs: str, what: str) -> tuple[float | None, str | None]:
    """Degrees from EXIF's (degrees, minutes, seconds) rationals; S and W are negative.

    Damaged numbers give no position. A reference other than ``refs`` (N/S, E/W) gives
    none either, with the reason: taking "Q" as N would put a photo in the wrong hemisphere.
    """
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if value is None or not 1 <= len(parts) <= 3:
        return None, None
    numbers = [_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None, None
    degrees = sum(n / 60**i for i, n in enumerate(numbers) if n is not None)
    text = (_exif_text(ref) or "").upper()
    if text not in (refs[0], refs[1]):
        given = f"bad GPS reference {_exif_text(ref)!r}" if text else "no GPS reference"
        return None, f"{given}; {what} needs {refs[0]} or {refs[1]}"
    return (-abs(degrees) if text == refs[1] else degrees), None


def _number(value: Any) -> float | None:
    """A finite float, or None (a rational with denominator 0 is NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _exif_text(value: Any) -> str | None:
    """EXIF text without its NUL padding; ``"a\\0b"`` (photographer, editor) -> ``"a; b"``."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    parts = [p.strip() for p in value.split("\x00")]
    return "; ".join(p for p in parts if p) or None


_DATE = re.compile(r"(\d{4})(?:[-:](\d{2})(?:[-:](\d{2}))?)?(?:[T ]|$)")
_NO_DATE = re.compile(r"[\s0:.\-T]*")


def iso_date(text: str | None) -> str | None:
    """``2021:07:14 09:30:00`` (EXIF), ``2021-07-14T09:30``, ``2021-07`` -> ISO date text;
    None for anything else, including the ``0000:00:00`` cameras write for "no date"."""
    match = _DATE.match(text.strip()) if text else None
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        datetime.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    return "-".join(p for p in (year, month, day) if p)


def checked_date(text: str | None) -> str | None:
    """``iso_date`` for a value that may be absent: None for no date (blank, or the
    ``0000:00:00`` and ``    :  :  `` cameras write for "unknown"); BadValue for other text
    that is no date, such as ``2020-13-45`` or ``14/07/2021``."""
    if text is None or _NO_DATE.fullmatch(text):
        return None
    date = iso_date(text)
    if date is None:
        raise BadValue(f"{text.strip()!r} is not a date; write YYYY-MM-DD")
    return date


#: A heading is wrapped into [0, 360) from this range only: further out a value is damage,
#: not a turn (``1e308 % 360`` is float noise, 4294967295 is an unsigned -1).
HEADING_RANGE = (-360.0, 720.0)


def heading_degrees(value: Any) -> float | None:
    """A heading (a number, or text from a table) as degrees in [0, 360).

    None when there is none (None, blank text, NaN: a table's empty cell, EXIF's 0/0);
    BadValue for text that is no number and for numbers outside HEADING_RANGE, infinity
    included.
    """
    if value is None:
        return None
    shown = value.strip() if isinstance(value, str) else value
    if shown == "":
        return None
    try:
        number = float(shown)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise BadValue(f"{shown!r} is not a number") from None
    if math.isnan(number):
        return None
    low, high = HEADING_RANGE
    if not low <= number <= high:
        given = repr(shown) if isinstance(shown, str) else f"{number:g}"
        raise BadValue(f"{given} is not between {low:g} and {high:g} degrees")
    wrapped = number % 360.0
    return 0.0 if wrapped >= 360.0 else wrapped + 0.0  # -1e-20 % 360 rounds to 360; no -0.0
