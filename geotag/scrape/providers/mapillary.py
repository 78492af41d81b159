"""Mapillary (Graph API v4): one photo per find, the nearest in a small box around the point.

The token travels only in the ``Authorization`` header of Graph API requests, never in a URL,
so it cannot end up in logs, manifests or error messages; the thumbnail itself comes from a
CDN URL that is fetched without it. Thumbnail URLs expire, so ``fetch`` asks for a fresh one
right before each download instead of storing it at lookup time.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from geotag.errors import AuthError, InputError
from geotag.geo.distance import EARTH_RADIUS_M, haversine_m
from geotag.safetext import optional_text
from geotag.scrape.http import (
    METADATA_BYTES,
    SEARCH_BYTES,
    Answer,
    BadAnswer,
    Http,
    NoImagery,
    Rejected,
)
from geotag.scrape.providers.base import (
    Found,
    ImageCheck,
    ImageOptions,
    Point,
    check_jpeg,
    compass_heading,
    identifier,
    valid_position,
)
from geotag.scrape.retry import Retryable

DEFAULT_BASE_URL = "https://graph.mapillary.com"
LICENSE = "CC BY-SA 4.0"
SEARCH_FIELDS = "id,thumb_1024_url,computed_geometry,captured_at,compass_angle,creator,is_pano"
#: The box search answers in no particular order (edge images may come first), so ask for
#: enough to pick the nearest ourselves; 2,000 is the API's maximum.
SEARCH_LIMIT = 100
#: Mapillary's published per-app limits (https://www.mapillary.com/developer/api-documentation,
#: section "Rate limits"): 60,000 entity requests/min, 10,000 search requests/min, 50,000
#: tile requests/day. 10/s (600/min, CDN downloads included) stays far below all of them.
DEFAULT_RATE = 10.0
#: ``thumb_1024_url`` is "1024 px wide" (API documentation); a portrait photo is taller.
THUMBNAIL = ImageCheck(1024, 2048, exact=False)
#: Metres per degree of latitude on the sphere that ``haversine_m`` uses.
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180.0


class MapillaryProvider:
    """Mapillary's crowd-sourced photos and panoramas (CC BY-SA 4.0, attribute the creator)."""

    name = "mapillary"
    default_rate = DEFAULT_RATE
    license = LICENSE

    def __init__(
        self, access_token: str | None, options: ImageOptions, base_url: str | None = None
    ) -> None:
        if not access_token:
            raise InputError(
                "the mapillary provider needs an access token: pass --api-key or set "
                "MAPILLARY_ACCESS_TOKEN"
            )
        self._token = access_token
        self.options = options
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self._token}"}

    def bbox(self, point: Point) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of a square of ``radius_m`` around ``point``.

        A degree of longitude shrinks with cos(latitude); near the poles the box is capped at
        the whole circle rather than dividing by almost zero. Boxes are clamped to the valid
        range, so one touching the antimeridian is cut there rather than wrapped.
        """
        dlat = self.options.radius_m / METRES_PER_DEGREE
        cos_lat = math.cos(math.radians(point.lat))
        dlon = min(180.0, dlat / cos_lat) if cos_lat > 1e-9 else 180.0
        return (
            max(-180.0, point.lon - dlon),
            max(-90.0, point.lat - dlat),
            min(180.0, point.lon + dlon),
            min(90.0, point.lat + dlat),
        )

    async def lookup(self, http: Http, point: Point) -> Found | None:
        params = {
            "bbox": ",".join(f"{v:.7f}" for v in self.bbox(point)),
            "fields": SEARCH_FIELDS,
            "limit": str(SEARCH_LIMIT),
        }
        answer = await http.get(
            f"{self.base_url}/images", params=params, headers=self._auth, max_bytes=SEARCH_BYTES
        )
        data = self._json(http, answer, "image search")
        images = data.get("data")
        if not isinstance(images, list):
            raise BadAnswer("image search answer has no data list")
        best: tuple[float, str, dict[str, Any], float, float] | None = None
        for image in images:
            if not isinstance(image, dict):
                continue
            where = _lat_lon(image)
            image_id = identifier(image.get("id"))
            if where is None or image_id is None:
                continue  # one malformed entry does not spoil the others
            lat, lon = where
            metres = float(haversine_m(point.lat, point.lon, lat, lon))
            if metres > self.options.radius_m:
                continue  # the box's corners lie outside the circle
            candidate = (metres, image_id, image, lat, lon)
            if best is None or candidate[:2] < best[:2]:  # ties go to the smaller id
                best = candidate
        if best is None:
            return None
        _, image_id, image, lat, lon = best
        return Found(
            pano_id=image_id,
            lat=lat,
            lon=lon,
            captured=_captured(image.get("captured_at")),
            copyright=_username(image.get("creator")),
            license=self.license,
            headings=(compass_heading(image.get("compass_angle")),),
            extra={"is_pano": "true" if image.get("is_pano") is True else "false"},
        )

    async def fetch(self, http: Http, found: Found, heading: float) -> bytes:
        # One photo, one view: ``heading`` is the photo's own direction, nothing to choose.
        url = f"{self.base_url}/{quote(found.pano_id, safe='')}"
        answer = await http.get(
            url, params={"fields": "thumb_1024_url"}, headers=self._auth, max_bytes=METADATA_BYTES
        )
        thumb = self._json(http, answer, "image").get("thumb_1024_url")
        if not isinstance(thumb, str) or not thumb:
            raise NoImagery(f"no thumbnail for image {found.pano_id}")
        if not thumb.startswith(("https://", "http://")):
            raise Rejected(f"thumbnail of image {found.pano_id} is not an http(s) URL")
        try:
            # A CDN URL: no Authorization header, the token never goes to a third host.
            body = await http.get(thumb, max_bytes=THUMBNAIL.max_bytes)
        except AuthError:
            # The CDN was sent no credentials, so this is an expired or refused URL, not a bad
            # token: stopping the run would be wrong; the next attempt gets a fresh URL.
            raise Retryable("thumbnail URL refused (HTTP 401/403)") from None
        if body.status != 200:
            raise Rejected(f"thumbnail HTTP {body.status}")
        await asyncio.to_thread(check_jpeg, body.body, THUMBNAIL)
        return body.body

    def _json(self, http: Http, answer: Answer, what: str) -> dict[str, Any]:
        """The JSON object of a 200 answer; Graph API errors sorted into the usual classes."""
        if answer.status != 200:
            raise self._error(http, answer, what)
        try:
            data = answer.json()
        except ValueError:
            raise BadAnswer(f"{what} answer is not JSON") from None
        if not isinstance(data, dict):
            raise BadAnswer(f"{what} answer is not a JSON object")
        return data

    def _error(self, http: Http, answer: Answer, what: str) -> Exception:
        status = answer.status
        try:
            error = answer.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        # Graph APIs report a bad token as an OAuthException (code 190), sometimes under 400.
        if error.get("type") == "OAuthException" or error.get("code") == 190:
            return AuthError(
                f"mapillary refused the access token (HTTP {status}); check --api-key or "
                "MAPILLARY_ACCESS_TOKEN"
            )
        detail = http.server_text(error.get("message", ""))
        return Rejected(f"{what} HTTP {status}: {detail}".rstrip(": "))


def _lat_lon(image: dict[str, Any]) -> tuple[float, float] | None:
    """(lat, lon) of the computed (structure-from-motion) position, else the camera's GPS."""
    for key in ("computed_geometry", "geometry"):
        geometry = image.get(key)
        if not isinstance(geometry, dict):
            continue
        coordinates = geometry.get("coordinates")
        if not isinstance(coordinates, list) or len(coordinates) < 2:
            continue
        position = valid_position(coordinates[1], coordinates[0])
        if position is not None:
            return position
    return None


def _captured(value: Any) -> str | None:
    """``captured_at`` (milliseconds since the epoch) as an ISO date in UTC."""
    try:
        moment = datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.date().isoformat()


def _username(creator: Any) -> str | None:
    """The creator's username: CC BY-SA needs the author named next to the photo."""
    if isinstance(creator, dict):
        return optional_text(creator.get("username"), 200)
    return None
