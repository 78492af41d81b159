"""Where, when, which way and by whom a photo was taken, from its EXIF tags.

Used by ``geotag import`` (labels from GPS tags) and ``geotag predict`` (the true location
of a photo, to report the error). Damaged or missing tags give None, never an exception.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image


@dataclass(frozen=True)
class ExifInfo:
    """What an image's EXIF says; None where it says nothing usable."""

    lat: float | None = None
    lon: float | None = None
    heading: float | None = None
    captured: str | None = None
    copyright: str | None = None


def read_exif(image: Image.Image) -> ExifInfo:
    """Position, heading, date and author from an image's EXIF; damaged EXIF gives nothing."""
    try:
        exif = image.getexif()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        details = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:  # damaged EXIF must not cost an image whose pixels are fine
        return ExifInfo()
    lat = _gps_degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef))
    lon = _gps_degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef))
    if lat is None or lon is None:
        lat = lon = None
    when = _exif_text(details.get(ExifTags.Base.DateTimeOriginal)) or _exif_text(
        details.get(ExifTags.Base.DateTimeDigitized)
    )
    author = _exif_text(exif.get(ExifTags.Base.Copyright)) or _exif_text(
        exif.get(ExifTags.Base.Artist)
    )
    return ExifInfo(
        lat,
        lon,
        heading_degrees(_number(gps.get(ExifTags.GPS.GPSImgDirection))),
        iso_date(when),
        author,
    )


def _gps_degrees(value: Any, ref: Any) -> float | None:
    """Degrees from EXIF's (degrees, minutes, seconds) rationals; S and W are negative."""
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if value is None or not 1 <= len(parts) <= 3:
        return None
    numbers = [_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    degrees = sum(n / 60**i for i, n in enumerate(numbers) if n is not None)
    return -abs(degrees) if (_exif_text(ref) or "").upper() in ("S", "W") else degrees


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


def heading_degrees(value: float | None) -> float | None:
    return value % 360.0 if value is not None and math.isfinite(value) else None
