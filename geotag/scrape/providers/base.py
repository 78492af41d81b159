"""What every imagery provider does, and the plain records they exchange with the scraper.

A provider answers two questions: is there imagery near this point (``lookup``: the
nearest panorama or image, with its real location, date, attribution and licence), and
what does it look like from a heading (``fetch``: JPEG bytes). The scraper owns retries,
rate limiting, deduplication, labels and files; providers only speak their API.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from geotag.errors import InputError
from geotag.safetext import printable
from geotag.scrape.http import BadAnswer, Http, Rejected


@dataclass(frozen=True)
class Point:
    """A sampled point to look for imagery around."""

    point_id: int
    cell_id: int
    lat: float
    lon: float


@dataclass(frozen=True)
class Found:
    """A panorama (or single image) a provider found near a point.

    ``headings`` are the views to download: the requested headings for a panorama, or
    the one direction a single photo faces. ``extra`` holds provider data needed to fetch
    it later (never a secret).
    """

    pano_id: str
    lat: float
    lon: float
    captured: str | None
    copyright: str | None
    license: str
    headings: tuple[float, ...]
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageOptions:
    """What the user asked for, in the provider-neutral words of ``geotag scrape``."""

    headings: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    size: int = 256
    fov: float = 90.0
    pitch: float = 0.0
    radius_m: float = 50.0
    source: str = "outdoor"

    @staticmethod
    def parse_headings(text: str) -> tuple[float, ...]:
        """``"0,90,450"`` -> (0.0, 90.0): degrees in [0, 360), each once, in the given order."""
        try:
            values = tuple(float(part) % 360.0 for part in text.split(",") if part.strip())
        except ValueError:
            raise InputError(
                f"--headings must be degrees separated by commas; got {text!r}"
            ) from None
        if not values:
            raise InputError("--headings needs at least one heading")
        return tuple(dict.fromkeys(values))


class Provider(Protocol):
    """One imagery API."""

    name: str
    #: Requests per second used when the user gives no ``--rate``: well under the quota.
    default_rate: float

    async def lookup(self, http: Http, point: Point) -> Found | None:
        """The nearest imagery to ``point`` within the radius, or None if there is none."""
        ...

    async def fetch(self, http: Http, found: Found, heading: float) -> bytes:
        """JPEG bytes of ``found`` seen from ``heading``.

        Raises NoImagery or Rejected for answers that will not change on a retry.
        """
        ...


#: Pillow's decompression-bomb limit, held to here whatever a caller set globally.
MAX_PIXELS = 89_478_485
#: A JPEG is rarely larger than its raw pixels; twice that, plus room for metadata, is
#: more than any honest encoder needs (quality 100 on noise stays under 1x).
BYTES_PER_PIXEL_CAP = 6
METADATA_ROOM_BYTES = 256 * 1024
#: No image is worth more than this, whatever its size (a 360-degree original is ~20 MB).
MAX_IMAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImageCheck:
    """What a downloaded image must be: its size exactly, or at most, as the API promises."""

    width: int
    height: int
    exact: bool = True

    @property
    def max_bytes(self) -> int:
        """The body cap: generous for a JPEG of this size, far below a flood."""
        raw = BYTES_PER_PIXEL_CAP * self.width * self.height + METADATA_ROOM_BYTES
        return min(raw, MAX_IMAGE_BYTES)

    def describe(self) -> str:
        size = f"{self.width}x{self.height}"
        return size if self.exact else f"at most {size}"


def check_jpeg(body: bytes, expected: ImageCheck | None = None) -> None:
    """Raise unless ``body`` is a JPEG of the expected size whose every pixel decodes.

    Framing alone ("starts FFD8FF, ends FFD9") passes garbage between the markers; only a
    decode shows the image is whole. The size is read from the header first, so an image
    far too large is refused before a single pixel is decoded. Slow for big images: call
    it through ``asyncio.to_thread`` in the event loop.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body), formats=("JPEG",)) as image:
            width, height = image.size
            if expected is not None and not _fits(width, height, expected):
                raise Rejected(f"image is {width}x{height}; expected {expected.describe()}")
            if width * height > MAX_PIXELS:
                raise Rejected(f"image is {width}x{height}, over {MAX_PIXELS:,} pixels")
            image.load()
    except Image.DecompressionBombError:
        raise Rejected(
            "image claims more pixels than Pillow will decode (a decompression bomb)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        # UnidentifiedImageError (not a JPEG), truncated data and corrupt scans end here.
        raise BadAnswer(f"image does not decode as a JPEG ({type(exc).__name__})") from None


def _fits(width: int, height: int, expected: ImageCheck) -> bool:
    if expected.exact:
        return (width, height) == (expected.width, expected.height)
    return 0 < width <= expected.width and 0 < height <= expected.height


#: Ids are used in URLs and (made safe) in file names; a sane API's are short and plain.
MAX_ID_LENGTH = 256


def identifier(value: Any) -> str | None:
    """A server's id for a panorama or image: text or a whole number, short, printable;
    None when it is anything else (a dict, a bool, an empty or control-laden string)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or printable(text) != text:
        return None
    return text


def valid_position(lat: Any, lon: Any) -> tuple[float, float] | None:
    """(lat, lon) as finite degrees in range, or None."""
    if isinstance(lat, bool) or isinstance(lon, bool):
        return None
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180:
        return lat, lon
    return None


def compass_heading(value: Any) -> float:
    """A provider's compass angle in [0, 360); 0 (north) when it gives none usable."""
    try:
        angle = float(value)
    except (TypeError, ValueError):
        return 0.0
    return angle % 360.0 if math.isfinite(angle) else 0.0
