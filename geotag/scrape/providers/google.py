"""The Google Street View Static API: free metadata first, then one image per heading.

Requests are built and (optionally) signed here as exact URL strings and sent as they are,
so the bytes Google checks the signature against are the bytes it receives.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geotag.errors import AuthError, InputError
from geotag.safetext import optional_text, printable
from geotag.scrape.http import METADATA_BYTES, BadAnswer, Http, NoImagery, Rejected
from geotag.scrape.providers.base import (
    Found,
    ImageCheck,
    ImageOptions,
    Point,
    check_jpeg,
    identifier,
)
from geotag.scrape.retry import Retryable, parse_retry_after
from geotag.urlsign import sign_url

DEFAULT_BASE_URL = "https://maps.googleapis.com"
METADATA_PATH = "/maps/api/streetview/metadata"
IMAGE_PATH = "/maps/api/streetview"
LICENSE = "Google Maps Platform Terms of Service"
TERMS_URL = "https://cloud.google.com/maps-platform/terms"
# The price per image and the terms notice live in geotag.scrape.registry (light to import).
#: Google's published limit is 30,000 queries per minute (500/s); stay far below it.
DEFAULT_RATE = 25.0


class GoogleProvider:
    """Street View Static API (and anything that speaks it, like ``geotag sim serve``)."""

    name = "google"
    default_rate = DEFAULT_RATE
    license = LICENSE

    def __init__(
        self,
        api_key: str | None,
        options: ImageOptions,
        signing_secret: str | None = None,
        base_url: str | None = None,
    ) -> None:
        if not api_key:
            raise InputError(
                "the google provider needs an API key: pass --api-key or set GOOGLE_MAPS_API_KEY"
            )
        self._key = api_key
        self._secret = signing_secret
        self.options = options
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")

    def _url(self, path: str, params: dict[str, str]) -> str:
        url = f"{self.base_url}{path}?{urlencode({**params, 'key': self._key})}"
        return sign_url(url, self._secret) if self._secret else url

    async def lookup(self, http: Http, point: Point) -> Found | None:
        params = {
            "location": f"{point.lat:.7f},{point.lon:.7f}",
            "radius": f"{self.options.radius_m:g}",
            "source": self.options.source,
        }
        answer = await http.get(self._url(METADATA_PATH, params), max_bytes=METADATA_BYTES)
        if answer.status == 404:
            # The metadata endpoint answers "no imagery" as 200 ZERO_RESULTS, so a 404 means
            # the URL is not the API's (a wrong --base-url): not this point's fault.
            raise BadAnswer("metadata HTTP 404: is --base-url the API's?")
        if answer.status != 200:
            raise Rejected(f"metadata HTTP {answer.status}")
        data = _parse_metadata(answer.body)
        if data.status == "OK":
            return self._found(data)
        if data.status in ("ZERO_RESULTS", "NOT_FOUND"):
            return None
        if data.status in ("OVER_QUERY_LIMIT", "UNKNOWN_ERROR"):
            raise Retryable(
                data.status, retry_after=parse_retry_after(answer.headers.get("Retry-After"))
            )
        if data.status == "REQUEST_DENIED":
            detail = http.server_text(data.error_message or "")
            raise AuthError(f"Google refused the request (REQUEST_DENIED): {detail}".rstrip(": "))
        raise Rejected(f"metadata status {printable(data.status, 40)}")

    def _found(self, data: _Metadata) -> Found:
        """An OK answer as a Found; an OK without a panorama or a usable place is bad."""
        pano_id = identifier(data.pano_id)
        if pano_id is None:
            raise BadAnswer("metadata says OK but has no usable pano_id")
        if data.location is None:
            raise BadAnswer("metadata says OK but has no location")
        return Found(
            pano_id=pano_id,
            lat=data.location.lat,
            lon=data.location.lng,
            captured=optional_text(data.date, 32),
            copyright=optional_text(data.copyright, 200),
            license=self.license,
            headings=self.options.headings,
        )

    async def fetch(self, http: Http, found: Found, heading: float) -> bytes:
        size = self.options.size
        params = {
            "size": f"{size}x{size}",
            "pano": found.pano_id,
            "heading": f"{heading:g}",
            "fov": f"{self.options.fov:g}",
            "pitch": f"{self.options.pitch:g}",
            # Without it Google answers 200 with a grey "no imagery" picture.
            "return_error_code": "true",
        }
        expected = ImageCheck(size, size)
        answer = await http.get(self._url(IMAGE_PATH, params), max_bytes=expected.max_bytes)
        if answer.status == 404:
            raise NoImagery(f"no imagery for panorama {found.pano_id}")
        if answer.status != 200:
            raise Rejected(f"image HTTP {answer.status}")
        await asyncio.to_thread(check_jpeg, answer.body, expected)
        return answer.body


Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class _Location(BaseModel):
    lat: Latitude
    lng: Longitude


class _Metadata(BaseModel):
    """The metadata answer's fields geotag reads; any other field is ignored.

    Types only: what each status requires (a pano_id and a location for OK) is checked by
    the caller, so a ZERO_RESULTS answer need not carry them.
    """

    model_config = ConfigDict(extra="ignore")

    status: Annotated[str, Field(max_length=64)]
    pano_id: Any = None
    location: _Location | None = None
    date: Any = None
    copyright: Any = None
    error_message: Any = None


def _parse_metadata(body: bytes) -> _Metadata:
    """The answer as ``_Metadata``; BadAnswer naming the first problem (HTML, a list, a
    latitude of "abc" or NaN, no status)."""
    try:
        return _Metadata.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ())) or "answer"
        if error.get("type") == "json_invalid":
            raise BadAnswer("metadata answer is not JSON") from None
        raise BadAnswer(f"metadata {where}: {printable(error.get('msg', ''), 80)}") from None
