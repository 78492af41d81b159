"""The Google Street View Static API: free metadata first, then one image per heading.

Requests are built and (optionally) signed here as exact URL strings and sent as they are,
so the bytes Google checks the signature against are the bytes it receives.
"""

from __future__ import annotations

from urllib.parse import urlencode

from geotag.errors import AuthError, InputError
from geotag.scrape.http import Http, NoImagery, Rejected
from geotag.scrape.providers.base import Found, ImageOptions, Point, is_jpeg
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
        response = await http.get(self._url(METADATA_PATH, params))
        if response.status_code != 200:
            raise Rejected(f"metadata HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise Retryable("metadata answer is not JSON") from None
        status = data.get("status")
        if status == "OK":
            location = data.get("location") or {}
            return Found(
                pano_id=str(data["pano_id"]),
                lat=float(location["lat"]),
                lon=float(location["lng"]),
                captured=data.get("date"),
                copyright=data.get("copyright"),
                license=self.license,
                headings=self.options.headings,
            )
        if status in ("ZERO_RESULTS", "NOT_FOUND"):
            return None
        if status in ("OVER_QUERY_LIMIT", "UNKNOWN_ERROR"):
            raise Retryable(
                str(status), retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status == "REQUEST_DENIED":
            detail = http.redact(str(data.get("error_message", "")))[:200]
            raise AuthError(f"Google refused the request (REQUEST_DENIED): {detail}".rstrip(": "))
        raise Rejected(f"metadata status {status}")

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
        response = await http.get(self._url(IMAGE_PATH, params))
        if response.status_code == 404:
            raise NoImagery(f"no imagery for panorama {found.pano_id}")
        if response.status_code != 200:
            raise Rejected(f"image HTTP {response.status_code}")
        if not is_jpeg(response.content):
            raise Retryable("image body is not a complete JPEG")
        return response.content
