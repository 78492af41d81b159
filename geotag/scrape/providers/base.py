"""What every imagery provider does, and the plain records they exchange with the scraper.

A provider answers two questions: is there imagery near this point (``lookup``: the
nearest panorama or image, with its real location, date, attribution and licence), and
what does it look like from a heading (``fetch``: JPEG bytes). The scraper owns retries,
rate limiting, deduplication, labels and files; providers only speak their API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from geotag.errors import InputError
from geotag.scrape.http import Http


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


def is_jpeg(body: bytes) -> bool:
    """Starts and ends like a JPEG: catches truncated or non-image bodies cheaply."""
    return body[:3] == b"\xff\xd8\xff" and body.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def compass_heading(value: Any) -> float:
    """A provider's compass angle in [0, 360); 0 (north) when it gives none usable."""
    try:
        angle = float(value)
    except (TypeError, ValueError):
        return 0.0
    return angle % 360.0 if math.isfinite(angle) else 0.0
