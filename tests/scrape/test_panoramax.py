from __future__ import annotations

import math
from typing import Any

import pytest

from geotag.errors import AuthError
from geotag.scrape.http import Rejected
from geotag.scrape.providers.base import Found, ImageOptions, Point
from geotag.scrape.providers.panoramax import PanoramaxProvider
from geotag.scrape.registry import make_provider
from geotag.scrape.retry import Retryable
from tests.scrape.fake_api import FakeApi, Reply, drive, jpeg_bytes, serving

POINT = Point(point_id=4, cell_id=2, lat=48.1204522, lon=-1.7199004)
M_PER_DEG = 6_371_008.8 * math.pi / 180


def offset(north_m: float, east_m: float) -> list[float]:
    lat = POINT.lat + north_m / M_PER_DEG
    lon = POINT.lon + east_m / (M_PER_DEG * math.cos(math.radians(POINT.lat)))
    return [lon, lat]


def item(
    item_id: str, north_m: float = 0.0, east_m: float = 0.0, **properties: Any
) -> dict[str, Any]:
    """A STAC item as GeoVisio serves it (trimmed to what matters here)."""
    props: dict[str, Any] = {
        "datetime": "2023-07-04T10:20:30+00:00",
        "license": "CC-BY-SA-4.0",
        "view:azimuth": 45,
        "geovisio:producer": "bob",
    }
    props.update(properties)
    pictures = f"https://panoramax.example.org/api/pictures/{item_id}"
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": {"type": "Point", "coordinates": offset(north_m, east_m)},
        "providers": [{"name": "bob", "roles": ["producer"], "id": "acc-1"}],
        "properties": props,
        "assets": {
            "hd": {"roles": ["data"], "type": "image/jpeg", "href": f"{pictures}/hd.jpg"},
            "sd": {"roles": ["visual"], "type": "image/jpeg", "href": f"{pictures}/sd.jpg"},
            "thumb": {
                "roles": ["thumbnail"],
                "type": "image/jpeg",
                "href": f"{pictures}/thumb.jpg",
            },
        },
        "collection": "seq-1",
    }


def collection(*items: dict[str, Any]) -> Reply:
    return Reply.json({"type": "FeatureCollection", "features": list(items), "links": []})


def lookup(api: FakeApi, radius_m: float = 50.0) -> Found | None:
    pmx = PanoramaxProvider(ImageOptions(radius_m=radius_m), base_url=api.url + "/")
    return drive(lambda http: pmx.lookup(http, POINT), name="panoramax")


def fetch(found: Found) -> bytes:
    pmx = PanoramaxProvider(ImageOptions(), base_url="http://127.0.0.1:9")
    return drive(lambda http: pmx.fetch(http, found, found.headings[0]), name="panoramax")


def found_at(href: str) -> Found:
    return Found("p1", POINT.lat, POINT.lon, None, None, "CC-BY-SA-4.0", (0.0,), {"asset": href})


def test_registry_builds_it_without_a_key() -> None:
    pmx = make_provider("panoramax", ImageOptions())
    assert isinstance(pmx, PanoramaxProvider) and pmx.name == "panoramax"
    assert pmx.base_url == "https://api.panoramax.xyz"
    assert 0 < pmx.default_rate <= 5


def test_lookup_sends_the_documented_place_search() -> None:
    with serving() as (api,):
        api.route("/api/search", collection())
        assert lookup(api, radius_m=49.2) is None
    (sent,) = api.requests
    assert sent.path == "/api/search"
    assert sent.query == {
        "place_position": "-1.7199004,48.1204522",  # lon,lat
        "place_distance": "0-50",  # whole metres, rounded up
        "place_fov_tolerance": "180",  # keep photos that are not aimed exactly at the point
        "limit": "1",
    }
    assert "authorization" not in sent.headers


def test_lookup_parses_an_item() -> None:
    picture = item(
        "0a1b-uuid",
        6,
        -8,
        datetime="2023-07-05T01:30:00+02:00",  # 2023-07-04 in UTC
        license="etalab-2.0",
        **{"view:azimuth": 400.5},
    )
    with serving() as (api,):
        api.route("/api/search", collection(picture))
        hit = lookup(api)
    assert hit is not None
    assert hit.pano_id == "0a1b-uuid"
    assert [hit.lon, hit.lat] == pytest.approx(offset(6, -8))
    assert hit.captured == "2023-07-04"
    assert hit.copyright == "bob"
    assert hit.license == "etalab-2.0"
    assert hit.headings == (40.5,)
    # The documented 2048 px copy, not the original: plenty for training, lighter to serve.
    assert hit.extra == {
        "asset": "https://panoramax.example.org/api/pictures/0a1b-uuid/sd.jpg",
        "asset_name": "sd",
    }


def test_missing_fields_fall_back_sensibly() -> None:
    picture = item("p2", datetime="2022-01-02T03:04:05Z", **{"geovisio:producer": "carol"})
    del picture["properties"]["license"], picture["properties"]["view:azimuth"]
    del picture["providers"], picture["assets"]["sd"]
    with serving() as (api,):
        api.route("/api/search", collection(picture))
        hit = lookup(api)
    assert hit is not None
    assert hit.license == "CC-BY-SA-4.0"  # the federation's default licence
    assert hit.copyright == "carol"  # from geovisio:producer
    assert hit.headings == (0.0,)
    assert hit.captured == "2022-01-02"
    assert hit.extra == {
        "asset": "https://panoramax.example.org/api/pictures/p2/hd.jpg",
        "asset_name": "hd",
    }


def test_the_producer_is_the_first_provider_with_that_role() -> None:
    picture = item("p3")
    picture["providers"] = [
        {"name": "Host Org", "roles": ["host"]},
        {"name": "dave", "roles": ["producer"], "id": "acc-9"},
        {"name": "Exif Artist", "roles": ["producer"]},
    ]
    with serving() as (api,):
        api.route("/api/search", collection(picture))
        hit = lookup(api)
    assert hit is not None and hit.copyright == "dave"


def test_no_features_or_no_usable_picture_is_no_imagery() -> None:
    bare = item("p4")
    bare["assets"] = {"thumb": bare["assets"]["thumb"]}  # only a thumbnail: not worth it
    with serving() as (api,):
        api.route("/api/search", collection())
        assert lookup(api) is None
        api.route("/api/search", collection(bare, {"id": "x", "geometry": None}))
        assert lookup(api) is None


def test_the_nearest_of_several_answers_wins() -> None:
    with serving() as (api,):
        api.route(
            "/api/search", collection(item("far", 30, 0), item("near", 0, 4), item("mid", 9, 0))
        )
        hit = lookup(api)
    assert hit is not None and hit.pano_id == "near"


@pytest.mark.parametrize("status", [400, 404])
def test_400_and_404_are_rejected(status: int) -> None:
    with serving() as (api,):
        api.route(
            "/api/search",
            Reply.json({"message": "Invalid place_position", "status_code": status}, status),
        )
        with pytest.raises(Rejected, match=f"search HTTP {status}: Invalid place_position"):
            lookup(api)


def test_a_refusing_instance_stops_the_run_with_a_clear_message() -> None:
    with serving() as (api,):
        api.route("/api/search", Reply.json({"message": "Forbidden"}, 403))
        with pytest.raises(AuthError, match="refused the search"):
            lookup(api)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"<html>", {"Content-Type": "text/html"}),
        Reply.json({"type": "Feature"}),
        Reply(502),
    ],
)
def test_transient_search_answers_are_retryable(reply: Reply) -> None:
    with serving() as (api,):
        api.route("/api/search", reply)
        with pytest.raises(Retryable):
            lookup(api)


def test_fetch_downloads_the_recorded_asset_following_a_storage_redirect() -> None:
    picture = jpeg_bytes((200, 30, 30), (64, 32))
    with serving(2) as (instance, storage):
        instance.route(
            "/api/pictures/p1/hd.jpg", Reply.redirect(f"{storage.url}/main-pictures/p1.jpg")
        )
        storage.route("/main-pictures/p1.jpg", Reply.jpeg(picture))
        assert fetch(found_at(f"{instance.url}/api/pictures/p1/hd.jpg")) == picture
    assert [r.path for r in instance.requests] == ["/api/pictures/p1/hd.jpg"]
    assert [r.path for r in storage.requests] == ["/main-pictures/p1.jpg"]


@pytest.mark.parametrize("body", [jpeg_bytes()[:-150], b"<html>oops</html>"])
def test_a_truncated_or_non_jpeg_picture_is_retryable(body: bytes) -> None:
    with serving() as (api,):
        api.route("/hd.jpg", Reply(200, body, {"Content-Type": "image/jpeg"}))
        with pytest.raises(Retryable, match="does not decode as a JPEG"):
            fetch(found_at(f"{api.url}/hd.jpg"))


@pytest.mark.parametrize(
    ("status", "match"), [(404, "HTTP 404"), (400, "HTTP 400"), (403, "not public")]
)
def test_a_gone_or_hidden_picture_is_rejected(status: int, match: str) -> None:
    with serving() as (api,):
        api.route("/hd.jpg", Reply.json({"message": "nope"}, status))
        with pytest.raises(Rejected, match=match):
            fetch(found_at(f"{api.url}/hd.jpg"))


def test_fetch_without_an_asset_is_rejected() -> None:
    bare = Found("p9", POINT.lat, POINT.lon, None, None, "CC-BY-SA-4.0", (0.0,))
    with pytest.raises(Rejected, match="no recorded asset"):
        fetch(bare)
