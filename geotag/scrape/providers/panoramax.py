"""Panoramax: the federated, openly licensed street-level imagery commons (a STAC API).

``GET /api/search`` with ``place_position`` answers a GeoJSON FeatureCollection of STAC
items, nearest to the place first. Each item is one picture: its position, capture time,
``view:azimuth``, producer, licence and ``hd`` / ``sd`` / ``thumb`` JPEG assets. No key is
needed; the asset href is kept in ``Found.extra`` because it may live on another instance of
the federation (or redirect to its storage).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from geotag.errors import AuthError
from geotag.geo.distance import haversine_m
from geotag.scrape.http import Http, Rejected
from geotag.scrape.providers.base import Found, ImageOptions, Point, compass_heading, is_jpeg
from geotag.scrape.retry import Retryable

#: The meta-catalogue that searches every instance of the federation.
DEFAULT_BASE_URL = "https://api.panoramax.xyz"
SEARCH_PATH = "/api/search"
#: Instances serve CC-BY-SA-4.0 unless configured otherwise and every item states its own
#: licence (``properties.license``, an SPDX id); this is only for an item that does not.
DEFAULT_LICENSE = "CC-BY-SA-4.0"
#: Panoramax publishes no rate limit: its instances are run by public bodies and volunteers
#: (IGN, OpenStreetMap France ...), and each search is a PostGIS query on their database.
#: 5/s is a polite ceiling for shared infrastructure; ask the operators before going higher.
DEFAULT_RATE = 5.0
#: The search keeps flat photos only when the place lies within +/- half this angle of their
#: direction (the server's default is 30); 180, the maximum, keeps every photo facing
#: roughly towards the point. 360-degree pictures always match.
FOV_TOLERANCE = 180
#: Asset names by preference: full resolution, then the 2048 px wide copy.
ASSETS = ("hd", "sd")


class PanoramaxProvider:
    """A Panoramax instance or the federation's meta-catalogue; free, no key."""

    name = "panoramax"
    default_rate = DEFAULT_RATE

    def __init__(self, options: ImageOptions, base_url: str | None = None) -> None:
        self.options = options
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")

    async def lookup(self, http: Http, point: Point) -> Found | None:
        params = {
            "place_position": f"{point.lon:.7f},{point.lat:.7f}",  # lon,lat as in GeoJSON
            "place_distance": f"0-{math.ceil(self.options.radius_m)}",  # whole metres
            "place_fov_tolerance": str(FOV_TOLERANCE),
            "limit": "1",  # nearest first, so the first is the one we want
        }
        try:
            response = await http.get(f"{self.base_url}{SEARCH_PATH}", params=params)
        except AuthError:
            host = urlsplit(self.base_url).netloc
            raise AuthError(
                f"the Panoramax instance at {host} refused the search (HTTP 401/403); "
                "it may not be public, try another --base-url"
            ) from None
        if response.status_code != 200:
            raise Rejected(f"search HTTP {response.status_code}{_detail(response)}")
        try:
            data = response.json()
        except ValueError:
            raise Retryable("search answer is not JSON") from None
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(features, list):
            raise Retryable("search answer is not a FeatureCollection")
        best: tuple[float, str, Found] | None = None
        for feature in features:
            found = _found(feature)
            if found is None:
                continue
            metres = float(haversine_m(point.lat, point.lon, found.lat, found.lon))
            if best is None or (metres, found.pano_id) < best[:2]:
                best = (metres, found.pano_id, found)
        return None if best is None else best[2]

    async def fetch(self, http: Http, found: Found, heading: float) -> bytes:
        # One picture, one view (a 360-degree one arrives whole, equirectangular).
        href = found.extra.get("asset")
        if not href:
            raise Rejected(f"picture {found.pano_id} has no recorded asset")
        try:
            response = await http.get(href)
        except AuthError:
            # No credentials were sent: the picture has been hidden or made private since.
            raise Rejected(f"picture {found.pano_id} is not public (HTTP 401/403)") from None
        if response.status_code != 200:
            raise Rejected(f"picture HTTP {response.status_code}")
        if not is_jpeg(response.content):
            raise Retryable("picture body is not a complete JPEG")
        return response.content


def _found(feature: Any) -> Found | None:
    """A STAC item as a Found; None when it lacks an id, a point or a JPEG asset."""
    if not isinstance(feature, dict) or not feature.get("id"):
        return None
    geometry = feature.get("geometry") or {}
    try:
        lon, lat = (float(v) for v in geometry["coordinates"][:2])
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    asset = _asset(feature.get("assets"))
    if asset is None:
        return None
    properties = feature.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    return Found(
        pano_id=str(feature["id"]),
        lat=lat,
        lon=lon,
        captured=_captured(properties.get("datetime")),
        copyright=_producer(feature.get("providers"), properties),
        license=str(properties.get("license") or feature.get("license") or DEFAULT_LICENSE),
        headings=(compass_heading(properties.get("view:azimuth")),),
        extra={"asset": asset},
    )


def _asset(assets: Any) -> str | None:
    if not isinstance(assets, dict):
        return None
    for name in ASSETS:
        asset = assets.get(name)
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and href.startswith(("https://", "http://")):
            return href
    return None


def _producer(providers: Any, properties: dict[str, Any]) -> str | None:
    """The account that published the picture: the first STAC provider with the producer role."""
    for provider in providers if isinstance(providers, list) else ():
        if not isinstance(provider, dict) or not provider.get("name"):
            continue
        if "producer" in (provider.get("roles") or ()):
            return str(provider["name"])
    producer = properties.get("geovisio:producer")
    return str(producer) if producer else None


def _captured(value: Any) -> str | None:
    """STAC ``datetime`` (RFC 3339) as an ISO date in UTC, like the other providers' dates."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # fromisoformat learnt "Z" only in Python 3.11
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date().isoformat()


def _detail(response: httpx.Response) -> str:
    """GeoVisio's error message (``{"message": ...}``), short; there is no secret to leak."""
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {str(message)[:200]}" if message else ""
