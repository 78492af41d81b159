from __future__ import annotations

import math
from typing import Any

import pytest

from geotag.errors import AuthError, InputError
from geotag.geo.distance import haversine_m
from geotag.scrape.http import Http, NoImagery, Rejected
from geotag.scrape.providers.base import Found, ImageOptions, Point
from geotag.scrape.providers.mapillary import MapillaryProvider
from geotag.scrape.registry import make_provider
from geotag.scrape.retry import Retryable
from tests.scrape.fake_api import FakeApi, Reply, Request, drive, jpeg_bytes, serving

TOKEN = "MLY|4242|s3cr3t-t0ken"
POINT = Point(point_id=1, cell_id=3, lat=12.9716, lon=77.5946)
M_PER_DEG = 6_371_008.8 * math.pi / 180


def offset(north_m: float, east_m: float, point: Point = POINT) -> list[float]:
    """GeoJSON [lon, lat] of the place ``north_m`` / ``east_m`` metres from ``point``."""
    lat = point.lat + north_m / M_PER_DEG
    lon = point.lon + east_m / (M_PER_DEG * math.cos(math.radians(point.lat)))
    return [lon, lat]


def image(image_id: str, north_m: float, east_m: float, **fields: Any) -> dict[str, Any]:
    """One entry of a Graph API image search, in its documented shape."""
    entry: dict[str, Any] = {
        "id": image_id,
        "thumb_1024_url": f"https://cdn.invalid/{image_id}.jpg?stale=1",
        "computed_geometry": {"type": "Point", "coordinates": offset(north_m, east_m)},
        "captured_at": 1_625_097_600_000,  # 2021-07-01T00:00:00Z
        "compass_angle": 90.0,
        "creator": {"username": "alice", "id": "99"},
        "is_pano": False,
    }
    entry.update(fields)
    return entry


def provider(api: FakeApi, radius_m: float = 50.0) -> MapillaryProvider:
    return MapillaryProvider(TOKEN, ImageOptions(radius_m=radius_m), base_url=api.url)


def lookup(api: FakeApi, point: Point = POINT, **kw: Any) -> Found | None:
    mly = provider(api, **kw)
    return drive(lambda http: mly.lookup(http, point), secrets=[TOKEN], name="mapillary")


def fetch(api: FakeApi, found: Found) -> bytes:
    mly = provider(api)
    return drive(
        lambda http: mly.fetch(http, found, found.headings[0]), secrets=[TOKEN], name="mapillary"
    )


def found(image_id: str = "1001") -> Found:
    return Found(image_id, POINT.lat, POINT.lon, None, None, "CC BY-SA 4.0", (0.0,))


def test_a_missing_token_is_a_clear_input_error() -> None:
    for token in (None, ""):
        with pytest.raises(InputError, match="--api-key or set MAPILLARY_ACCESS_TOKEN"):
            MapillaryProvider(token, ImageOptions())


def test_registry_builds_it_with_its_polite_default_rate() -> None:
    mly = make_provider("mapillary", ImageOptions(), api_key=TOKEN, base_url="http://h/")
    assert isinstance(mly, MapillaryProvider) and mly.name == "mapillary"
    assert mly.base_url == "http://h"
    # Far under the published 10,000 searches per minute per app.
    assert 0 < mly.default_rate * 60 <= 1_000


def test_lookup_sends_the_documented_search_with_the_token_in_a_header_only() -> None:
    with serving() as (api,):
        api.route("/images", Reply.json({"data": []}))
        assert lookup(api) is None
    (sent,) = api.requests
    assert sent.path == "/images"
    assert set(sent.query) == {"bbox", "fields", "limit"}
    assert sent.query["fields"] == (
        "id,thumb_1024_url,computed_geometry,captured_at,compass_angle,creator,is_pano"
    )
    assert 1 <= int(sent.query["limit"]) <= 2000
    assert sent.headers["authorization"] == f"OAuth {TOKEN}"
    assert TOKEN not in sent.path + repr(sent.query)
    # A box of +/- 50 m in both directions: wider in degrees of longitude, by 1/cos(lat).
    min_lon, min_lat, max_lon, max_lat = map(float, sent.query["bbox"].split(","))
    assert min_lon < POINT.lon < max_lon and min_lat < POINT.lat < max_lat
    for lat, lon in ((min_lat, POINT.lon), (max_lat, POINT.lon), (POINT.lat, min_lon)):
        assert haversine_m(POINT.lat, POINT.lon, lat, lon) == pytest.approx(50.0, abs=0.05)
    assert (max_lon - min_lon) / (max_lat - min_lat) == pytest.approx(
        1 / math.cos(math.radians(POINT.lat)),
        rel=1e-3,  # the query carries 7 decimals
    )


def test_the_box_stays_valid_near_a_pole_and_the_antimeridian() -> None:
    mly = MapillaryProvider(TOKEN, ImageOptions(radius_m=50.0))
    min_lon, min_lat, max_lon, max_lat = mly.bbox(Point(1, 1, 89.99999, 179.9999))
    assert -180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90
    assert max_lon == 180.0  # cut at the antimeridian, not wrapped


def test_lookup_keeps_the_nearest_image_inside_the_radius() -> None:
    data = [
        image("far-corner", 45, 45),  # inside the box, but 64 m away: outside the circle
        image("30m", 0, -30),
        image("12m", 12, 0),
        # SfM moved this one: its computed position (40 m) counts, not its raw GPS (1 m).
        image("moved", 40, 0, geometry={"type": "Point", "coordinates": offset(1, 0)}),
        image("no-geometry", 0, 0, computed_geometry=None),
        {"id": "broken", "computed_geometry": {"type": "Point", "coordinates": ["x"]}},
        "not-an-object",
    ]
    with serving() as (api,):
        api.route("/images", Reply.json({"data": data}))
        hit = lookup(api)
    assert hit is not None and hit.pano_id == "12m"
    assert [hit.lon, hit.lat] == pytest.approx(offset(12, 0))


def test_lookup_falls_back_to_the_raw_geometry() -> None:
    gps_only = image("gps", 0, 0, computed_geometry=None)
    gps_only["geometry"] = {"type": "Point", "coordinates": offset(5, 5)}
    with serving() as (api,):
        api.route("/images", Reply.json({"data": [image("20m", 20, 0), gps_only]}))
        hit = lookup(api)
    assert hit is not None and hit.pano_id == "gps"
    assert [hit.lon, hit.lat] == pytest.approx(offset(5, 5))


def test_only_images_outside_the_radius_is_no_imagery() -> None:
    with serving() as (api,):
        api.route("/images", Reply.json({"data": [image("40m", 40, 0)]}))
        assert lookup(api, radius_m=30.0) is None


def test_lookup_parses_date_attribution_licence_and_direction() -> None:
    just_before_midnight_utc = 1_625_183_999_000  # 2021-07-01T23:59:59Z
    entry = image("777", 3, 4, captured_at=just_before_midnight_utc, compass_angle=370.5)
    with serving() as (api,):
        api.route("/images", Reply.json({"data": [entry]}))
        hit = lookup(api)
    assert hit == Found(
        pano_id="777",
        lat=pytest.approx(offset(3, 4)[1]),  # type: ignore[arg-type]
        lon=pytest.approx(offset(3, 4)[0]),  # type: ignore[arg-type]
        captured="2021-07-01",  # the UTC date, whatever the local time zone
        copyright="alice",
        license="CC BY-SA 4.0",
        headings=(10.5,),
        extra={"is_pano": "false"},
    )
    assert all(TOKEN not in v for v in hit.extra.values())


def test_missing_optional_fields_have_plain_defaults() -> None:
    entry = {"id": 5, "computed_geometry": {"type": "Point", "coordinates": offset(0, 0)}}
    entry["is_pano"] = True
    with serving() as (api,):
        api.route("/images", Reply.json({"data": [entry]}))
        hit = lookup(api)
    assert hit is not None
    assert (hit.pano_id, hit.captured, hit.copyright, hit.headings) == ("5", None, None, (0.0,))
    assert hit.extra == {"is_pano": "true"}


def _error(message: str, code: int, kind: str = "OAuthException") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": "Fx1"}}


@pytest.mark.parametrize(
    "reply",
    [
        Reply.json(_error(f"Invalid OAuth access token {TOKEN}", 190), status=401),
        Reply.json(_error("Forbidden", 10, "PermissionError"), status=403),
        # Graph APIs may report a bad token under 400; it is still a credentials problem.
        Reply.json(_error(f"Malformed access token {TOKEN}", 190), status=400),
    ],
)
def test_a_refused_token_stops_the_run_without_showing_the_token(reply: Reply) -> None:
    with serving() as (api,):
        api.route("/images", reply)
        with pytest.raises(AuthError) as caught:
            lookup(api)
        api.route("/1001", reply)
        with pytest.raises(AuthError) as caught_fetch:
            fetch(api, found())
    for error in (caught.value, caught_fetch.value):
        assert TOKEN not in str(error) and "s3cr3t" not in repr(error.args)
        assert "mapillary" in str(error)


@pytest.mark.parametrize("status", [400, 404])
def test_400_and_404_are_rejected_and_the_message_hides_the_token(status: int) -> None:
    reply = Reply.json(
        _error(f"Unsupported get request ({TOKEN})", 100, "GraphMethodException"), status
    )
    with serving() as (api,):
        api.route("/images", reply)
        with pytest.raises(Rejected, match=f"HTTP {status}") as caught:
            lookup(api)
        api.route("/1001", reply)
        with pytest.raises(Rejected, match=f"HTTP {status}") as caught_fetch:
            fetch(api, found())
    for error in (caught.value, caught_fetch.value):
        assert TOKEN not in str(error) and "Unsupported get request (***)" in str(error)


@pytest.mark.parametrize(
    "reply",
    [
        Reply.json({"error": {"message": "busy"}}, status=503),
        Reply.json({"error": {"message": "slow down"}}, status=429),
        Reply(200, b"<html>maintenance</html>", {"Content-Type": "text/html"}),
        Reply.json({"images": []}),  # no data list: not the documented answer
    ],
)
def test_transient_answers_are_retryable(reply: Reply) -> None:
    with serving() as (api,):
        api.route("/images", reply)
        with pytest.raises(Retryable):
            lookup(api)


def test_fetch_gets_a_fresh_thumbnail_url_at_fetch_time_and_never_sends_the_token_there() -> None:
    picture = jpeg_bytes()
    with serving(2) as (graph, cdn):
        issued: list[str] = []

        def entity(request: Request) -> Reply:
            issued.append(str(len(issued) + 1))  # each answer signs a new, short-lived URL
            url = f"{cdn.url}/t/1001.jpg?sig={issued[-1]}&oe=65A0"
            return Reply.json({"id": "1001", "thumb_1024_url": url})

        def thumbnail(request: Request) -> Reply:
            if request.query.get("sig") != issued[-1]:
                return Reply(403, b"URL signature expired")
            return Reply.jpeg(picture)

        stale = image("1001", 1, 1, thumb_1024_url=f"{cdn.url}/t/1001.jpg?sig=0&oe=0")
        graph.route("/images", Reply.json({"data": [stale]}))
        graph.route("/1001", entity)
        cdn.route("/t/1001.jpg", thumbnail)
        hit = lookup(graph)
        assert hit is not None and not graph.hits("/1001")  # lookup asked for no thumbnail
        assert "sig=0" not in repr(hit.extra)  # nothing that expires is stored
        assert fetch(graph, hit) == picture
        assert fetch(graph, hit) == picture  # a second download asks again

    assert issued == ["1", "2"]
    entity_requests = graph.hits("/1001")
    assert [r.query for r in entity_requests] == [{"fields": "thumb_1024_url"}] * 2
    assert all(r.headers["authorization"] == f"OAuth {TOKEN}" for r in entity_requests)
    assert [r.query["sig"] for r in cdn.requests] == ["1", "2"]
    for sent in cdn.requests:
        assert "authorization" not in sent.headers
        assert TOKEN not in sent.raw


def test_an_expired_thumbnail_url_is_retried_not_a_credentials_failure() -> None:
    with serving(2) as (graph, cdn):
        graph.route("/1001", Reply.json({"thumb_1024_url": f"{cdn.url}/t.jpg?sig=old"}))
        cdn.route("/t.jpg", Reply(403, b"URL signature expired"))
        with pytest.raises(Retryable, match="thumbnail URL refused"):
            fetch(graph, found())


@pytest.mark.parametrize(
    "body",
    [
        jpeg_bytes()[:-200],  # cut short, yet a complete HTTP answer
        b"<html>not a picture</html>",
        b"",
    ],
)
def test_a_truncated_or_non_jpeg_thumbnail_is_retryable(body: bytes) -> None:
    with serving(2) as (graph, cdn):
        graph.route("/1001", Reply.json({"thumb_1024_url": f"{cdn.url}/t.jpg"}))
        cdn.route("/t.jpg", Reply(200, body, {"Content-Type": "image/jpeg"}))
        with pytest.raises(Retryable, match="does not decode as a JPEG"):
            fetch(graph, found())


def test_a_thumbnail_cut_by_the_connection_is_retryable() -> None:
    picture = jpeg_bytes()
    with serving(2) as (graph, cdn):
        graph.route("/1001", Reply.json({"thumb_1024_url": f"{cdn.url}/t.jpg"}))
        # The server promises more bytes than it sends, then closes the connection.
        cdn.route("/t.jpg", Reply(200, picture[:100], {"Content-Length": str(len(picture))}))
        with pytest.raises(Retryable, match="connection failed"):
            fetch(graph, found())


def test_a_missing_thumbnail_is_no_imagery_and_a_gone_one_is_rejected() -> None:
    with serving(2) as (graph, cdn):
        graph.route("/1001", Reply.json({"id": "1001"}))
        with pytest.raises(NoImagery, match="1001"):
            fetch(graph, found())
        graph.route("/1001", Reply.json({"thumb_1024_url": f"{cdn.url}/gone.jpg"}))
        with pytest.raises(Rejected, match="thumbnail HTTP 404"):
            fetch(graph, found())
        graph.route("/1001", Reply.json({"thumb_1024_url": "file:///etc/passwd"}))
        with pytest.raises(Rejected, match="not an http"):
            fetch(graph, found())


def test_an_image_id_cannot_leave_the_graph_path() -> None:
    with serving() as (api,), pytest.raises(Rejected):
        fetch(api, found("../../me"))
    (sent,) = api.requests
    assert sent.path == "/..%2F..%2Fme"


def test_the_token_is_in_no_exception_the_http_layer_raises() -> None:
    mly = MapillaryProvider(TOKEN, ImageOptions(), base_url="http://127.0.0.1:9")  # closed

    async def attempt(http: Http) -> Exception:
        try:
            await mly.lookup(http, POINT)
        except Retryable as exc:
            return exc
        raise AssertionError("expected a Retryable")

    error = drive(attempt, secrets=[TOKEN], name="mapillary")
    assert TOKEN not in str(error) and error.__cause__ is None
