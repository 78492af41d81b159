"""The Street View Static API's semantics over a :class:`World`, without any HTTP.

Parses query parameters the way Google documents them and turns a request into a
:class:`Reply` (status code, content type, body). The server in ``server.py`` adds the
transport, the key and signature checks, the quota and the injected faults; the few
replies those need (denied, over quota, server error) are built here too, so that every
body the simulator sends comes from one place.

Documented behaviour followed here:

- ``location`` is "lat,lng" or an address; the simulator geocodes nothing, so an address
  is metadata ``NOT_FOUND`` and, for images, "no imagery". ``pano`` wins over ``location``.
- ``radius`` (default 50 m), ``source`` ``default|outdoor``; metadata needs nothing else.
- Images need ``size`` ``WxH`` (each 1..640); ``heading`` 0..360 defaults, for ``location``
  requests, to the bearing from the panorama to the requested point (else 0); ``fov``
  (0, 120], default 90; ``pitch`` -90..90, default 0; ``return_error_code`` true|false.
- Metadata always answers HTTP 200 with a JSON ``status``; images answer 400 for a bad
  request and, for no imagery, a grey placeholder with 200, or 404 with
  ``return_error_code=true``.

One simulator limit, not Google's: ``radius`` above 100 km is an invalid request, because
an unbounded search of an empty ocean would tie a server thread up for minutes.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import overload

from geotag.sim.world import Panorama, World

METADATA_PATH = "/maps/api/streetview/metadata"
IMAGE_PATH = "/maps/api/streetview"
ENDPOINTS = {METADATA_PATH: "metadata", IMAGE_PATH: "image"}

DEFAULT_RADIUS_M = 50.0
MAX_RADIUS_M = 100_000.0
MAX_SIZE_PX = 640
MAX_FOV = 120.0
DEFAULT_FOV = 90.0
SOURCES = ("default", "outdoor")

JSON_TYPE = "application/json; charset=UTF-8"
TEXT_TYPE = "text/plain; charset=UTF-8"
JPEG_TYPE = "image/jpeg"
PLACEHOLDER_GREY = (228, 227, 223)

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_LAT_LNG = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")
_SIZE = re.compile(r"^(\d{1,4})x(\d{1,4})$")

Params = Mapping[str, Sequence[str]]


class InvalidRequest(ValueError):
    """A parameter is missing or malformed; the message is safe to send back."""


@dataclass(frozen=True)
class Reply:
    """One answer: HTTP status, content type and body; ``api_status`` for metadata."""

    status: int
    content_type: str
    body: bytes
    api_status: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Query:
    """Where to look: a panorama id, a point, or an address the simulator cannot geocode."""

    pano: str | None
    lat: float | None
    lng: float | None
    address: str | None
    radius: float = DEFAULT_RADIUS_M
    source: str = "default"


@dataclass(frozen=True)
class ImageQuery:
    """An image request: where to look plus the camera and the output size."""

    where: Query
    width: int
    height: int
    heading: float | None
    fov: float = DEFAULT_FOV
    pitch: float = 0.0
    return_error_code: bool = False


# -- parsing --------------------------------------------------------------------------------
def parse_query(params: Params) -> Query:
    """The location part shared by both endpoints; InvalidRequest if unusable."""
    radius = _number(params, "radius", DEFAULT_RADIUS_M)
    if not 0.0 <= radius <= MAX_RADIUS_M:
        raise InvalidRequest(f"Invalid 'radius' parameter: must lie in [0, {MAX_RADIUS_M:g}].")
    source = _first(params, "source") or "default"
    if source not in SOURCES:
        raise InvalidRequest("Invalid 'source' parameter: must be 'default' or 'outdoor'.")
    pano = _first(params, "pano")
    if pano:
        return Query(pano=pano, lat=None, lng=None, address=None, radius=radius, source=source)
    location = _first(params, "location")
    if not location:
        raise InvalidRequest("Either the 'location' or the 'pano' parameter is required.")
    match = _LAT_LNG.match(location)
    if match is None:
        return Query(pano=None, lat=None, lng=None, address=location, radius=radius, source=source)
    lat, lng = float(match[1]), float(match[2])
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0):
        raise InvalidRequest("Invalid 'location' parameter: latitude or longitude out of range.")
    return Query(pano=None, lat=lat, lng=lng, address=None, radius=radius, source=source)


def parse_image_query(params: Params) -> ImageQuery:
    """An image request's parameters; InvalidRequest names the first bad one."""
    size = _first(params, "size")
    match = _SIZE.match(size or "")
    if match is None:
        raise InvalidRequest("Invalid 'size' parameter: it is required, as WIDTHxHEIGHT.")
    width, height = int(match[1]), int(match[2])
    if not (1 <= width <= MAX_SIZE_PX and 1 <= height <= MAX_SIZE_PX):
        raise InvalidRequest(f"Invalid 'size' parameter: each side must lie in 1..{MAX_SIZE_PX}.")
    heading = _number(params, "heading", None)
    if heading is not None and not 0.0 <= heading <= 360.0:
        raise InvalidRequest("Invalid 'heading' parameter: must lie in [0, 360].")
    fov = _number(params, "fov", DEFAULT_FOV)
    if not 0.0 < fov <= MAX_FOV:
        raise InvalidRequest(f"Invalid 'fov' parameter: must lie in (0, {MAX_FOV:g}].")
    pitch = _number(params, "pitch", 0.0)
    if not -90.0 <= pitch <= 90.0:
        raise InvalidRequest("Invalid 'pitch' parameter: must lie in [-90, 90].")
    flag = (_first(params, "return_error_code") or "false").lower()
    if flag not in ("true", "false"):
        raise InvalidRequest("Invalid 'return_error_code' parameter: must be true or false.")
    return ImageQuery(
        where=parse_query(params),
        width=width,
        height=height,
        heading=heading,
        fov=fov,
        pitch=pitch,
        return_error_code=flag == "true",
    )


def _first(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


@overload
def _number(params: Params, name: str, default: float) -> float: ...
@overload
def _number(params: Params, name: str, default: None) -> float | None: ...
def _number(params: Params, name: str, default: float | None) -> float | None:
    text = _first(params, name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"Invalid '{name}' parameter: not a number.") from None
    if not math.isfinite(value):
        raise InvalidRequest(f"Invalid '{name}' parameter: not a finite number.")
    return value


# -- answering --------------------------------------------------------------------------------
def find(world: World, where: Query) -> Panorama | None:
    """The panorama a query lands on, or None (an address never lands anywhere)."""
    if where.pano is not None:
        # An id names one panorama; ``source`` filters searches around a point only.
        return world.panorama(where.pano)
    if where.lat is None or where.lng is None:
        return None
    return world.nearest(where.lat, where.lng, radius_m=where.radius, source=where.source)


def metadata_reply(world: World, params: Params) -> Reply:
    """The metadata endpoint's answer to an authorised request within quota."""
    try:
        where = parse_query(params)
    except InvalidRequest as exc:
        return status_reply("INVALID_REQUEST", str(exc))
    if where.address is not None:
        return status_reply("NOT_FOUND")
    pano = find(world, where)
    if pano is None:
        return status_reply("ZERO_RESULTS")
    return _json_reply(
        200,
        {
            "copyright": pano.copyright,
            "date": pano.date,
            "location": {"lat": pano.lat, "lng": pano.lon},
            "pano_id": pano.pano_id,
            "status": "OK",
        },
    )


def image_reply(world: World, params: Params) -> Reply:
    """The image endpoint's answer to an authorised request within quota."""
    try:
        query = parse_image_query(params)
    except InvalidRequest as exc:
        return text_reply(400, f"Invalid request. {exc}")
    pano = find(world, query.where)
    if pano is None:
        if query.return_error_code:
            return text_reply(404, "Sorry, we have no imagery here.")
        return Reply(200, JPEG_TYPE, placeholder_jpeg(query.width, query.height))
    heading = query.heading
    if heading is None:
        lat, lng = query.where.lat, query.where.lng
        heading = 0.0 if lat is None or lng is None else bearing_deg(pano.lat, pano.lon, lat, lng)
    jpeg = world.render(
        pano.pano_id,
        heading=heading,
        pitch=query.pitch,
        fov=query.fov,
        width=query.width,
        height=query.height,
    )
    return Reply(200, JPEG_TYPE, jpeg)


def status_reply(
    status: str,
    error_message: str | None = None,
    http_status: int = 200,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """A metadata answer that carries only a status (and maybe an error message)."""
    body: dict[str, object] = {"status": status}
    if error_message:
        body = {"error_message": error_message, **body}
    return _json_reply(http_status, body, headers)


def text_reply(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A short plain-text answer, as the image endpoint gives for errors."""
    return Reply(status, TEXT_TYPE, f"{message}\n".encode(), headers=headers)


def _json_reply(
    status: int, body: Mapping[str, object], headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    # Google's metadata JSON is indented by three spaces with " : " separators.
    text = json.dumps(body, indent=3, separators=(",", " : "), ensure_ascii=False)
    return Reply(status, JSON_TYPE, f"{text}\n".encode(), str(body.get("status")), headers)


@functools.lru_cache(maxsize=64)
def placeholder_jpeg(width: int, height: int) -> bytes:
    """Google's "no imagery" stand-in: a flat grey JPEG of the requested size."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), PLACEHOLDER_GREY).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial compass bearing in [0, 360) from point 1 to point 2."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dlam = math.radians(lon2 - lon1)
    y = math.sin(dlam) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlam)
    return math.degrees(math.atan2(y, x)) % 360.0
