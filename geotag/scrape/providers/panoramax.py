"""Panoramax: the federated, openly licensed street-level imagery commons (a STAC API).

``GET /api/search`` with ``place_position`` answers a GeoJSON FeatureCollection of STAC
items, nearest to the place first. Each item is one picture: its position, capture time,
``view:azimuth``, producer, licence and ``hd`` / ``sd`` / ``thumb`` JPEG assets. No key is
needed; the asset href is kept in ``Found.extra`` because it may live on another instance of
the federation (or redirect to its storage).
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from geotag.errors import AuthError
from geotag.geo.distance import haversine_m
from geotag.safetext import optional_text
from geotag.scrape.http import SEARCH_BYTES, Answer, BadAnswer, Http, Rejected
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
#: Asset names by preference: the 2048 px wide copy (GeoVisio's documented "sd"
#: derivative, plenty for training at 640 px or less, and a fraction of the volunteers'
#: bandwidth), then the original.
ASSETS = ("sd", "hd")
#: What each asset may be; an original has no documented size, so only Pillow's pixel
#: limit (checked for every image) and a byte cap bound it.
ASSET_CHECKS = {
    "sd": ImageCheck(2048, 4096, exact=False),
    "hd": ImageCheck(16384, 16384, exact=False),
}


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
            answer = await http.get(
                f"{self.base_url}{SEARCH_PATH}", params=params, max_bytes=SEARCH_BYTES
            )
        except AuthError:
            host = urlsplit(self.base_url).netloc
            raise AuthError(
                f"the Panoramax instance at {host} refused the search (HTTP 401/403); "
                "it may not be public, try another --base-url"
            ) from None
        if answer.status != 200:
            raise Rejected(f"search HTTP {answer.status}{_detail(http, answer)}")
        try:
            data = answer.json()
        except ValueError:
            raise BadAnswer("search answer is not JSON") from None
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(features, list):
            raise BadAnswer("search answer is not a FeatureCollection")
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
        # A manifest from before the asset's name was kept fetched the original.
        expected = ASSET_CHECKS.get(found.extra.get("asset_name", "hd"), ASSET_CHECKS["hd"])
        try:
            answer = await http.get(href, max_bytes=expected.max_bytes)
        except AuthError:
            # No credentials were sent: the picture has been hidden or made private since.
            raise Rejected(f"picture {found.pano_id} is not public (HTTP 401/403)") from None
        if answer.status != 200:
            raise Rejected(f"picture HTTP {answer.status}")
        await asyncio.to_thread(check_jpeg, answer.body, expected)
        return answer.body


def _found(feature: Any) -> Found | None:
    """A STAC item as a Found; None when it lacks a usable id, point or JPEG asset."""
    if not isinstance(feature, dict):
        return None
    picture_id = identifier(feature.get("id"))
    geometry = feature.get("geometry")
    coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if picture_id is None or not isinstance(coordinates, list) or len(coordinates) < 2:
        return None
    position = valid_position(coordinates[1], coordinates[0])  # GeoJSON: lon, lat
    asset = _asset(feature.get("assets"))
    if position is None or asset is None:
        return None
    properties = feature.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    licence = optional_text(properties.get("license") or feature.get("license"), 100)
    asset_name, href = asset
    return Found(
        pano_id=picture_id,
        lat=position[0],
        lon=position[1],
        captured=_captured(properties.get("datetime")),
        copyright=_producer(feature.get("providers"), properties),
        license=licence or DEFAULT_LICENSE,
        headings=(compass_heading(properties.get("view:azimuth")),),
        extra={"asset": href, "asset_name": asset_name},
    )


def _asset(assets: Any) -> tuple[str, str] | None:
    """(name, href) of the preferred JPEG asset with an http(s) link."""
    if not isinstance(assets, dict):
        return None
    for name in ASSETS:
        asset = assets.get(name)
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str) and href.startswith(("https://", "http://")):
            return name, href
    return None


def _producer(providers: Any, properties: dict[str, Any]) -> str | None:
    """The account that published the picture: the first STAC provider with the producer role."""
    for provider in providers if isinstance(providers, list) else ():
        if not isinstance(provider, dict) or not provider.get("name"):
            continue
        roles = provider.get("roles")
        if isinstance(roles, list) and "producer" in roles:
            return optional_text(provider["name"], 200)
    return optional_text(properties.get("geovisio:producer"), 200)


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


def _detail(http: Http, answer: Answer) -> str:
    """GeoVisio's error message (``{"message": ...}``), short and fit to show."""
    try:
        message = answer.json().get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {http.server_text(message)}" if message else ""
