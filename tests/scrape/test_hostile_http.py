"""A server that lies, one request at a time: floods, bombs, drips, loops and garbage.

Every answer comes from a real server on 127.0.0.1 (``FakeApi`` with the builders of
``tests.scrape.hostile``) through a real ``httpx.AsyncClient``; memory is measured with
``tracemalloc`` (every byte Python allocates), so "not held in memory" is a figure.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from geotag.errors import AuthError
from geotag.scrape.http import (
    METADATA_BYTES,
    BadAnswer,
    Http,
    Rejected,
    TooLarge,
    Unreachable,
)
from geotag.scrape.providers.base import Found, ImageCheck, ImageOptions, Point, check_jpeg
from geotag.scrape.providers.google import GoogleProvider
from geotag.scrape.retry import Retryable
from tests.scrape.fake_api import Reply, drive, serving
from tests.scrape.hostile import (
    MB,
    drip,
    flood,
    forged_size_jpeg,
    framed_garbage,
    gzip_bomb,
    jpeg,
    metadata_ok,
    nan_json,
)

SIZE = 64
CAP = ImageCheck(SIZE, SIZE).max_bytes
KEY, SECRET = "AIza-test-key", "c2VjcmV0LXNpZ25pbmcta2V5"
POINT = Point(1, 0, 47.65, 14.45)
FOUND = Found("pano-1", 47.65, 14.45, None, None, "x", (0.0,))


@contextmanager
def peak_python_memory() -> Iterator[list[int]]:
    """Yields a list that holds, afterwards, the peak bytes Python allocated meanwhile.

    One small request first, unmeasured: a first client loads its CA bundle and lazy
    modules (~2 MB), which is not what the body costs."""
    fetch_raw(Reply(200, b"warm-up"))
    tracemalloc.start()
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def fetch_raw(reply: Reply, max_bytes: int = CAP, deadline_s: float = 10.0) -> Any:
    with serving() as (api,):
        api.route("/x", reply)

        async def get(http: Http) -> Any:
            http.deadline_s = deadline_s
            return await http.get(f"{api.url}/x", max_bytes=max_bytes)

        return drive(get)


def google(operation: Callable[[GoogleProvider, Http], Any], routes: dict[str, Reply]) -> Any:
    with serving() as (api,):
        for path, reply in routes.items():
            api.route(path, reply)
        provider = GoogleProvider(
            KEY, ImageOptions(size=SIZE), signing_secret=SECRET, base_url=api.url
        )
        return drive(lambda http: operation(provider, http), secrets=(KEY, SECRET))


# -- bounded bodies -------------------------------------------------------------------------
# The server runs in this process too: its own 64 KB chunks are part of every peak below.
def test_a_200_mb_body_is_refused_at_its_cap_and_never_held() -> None:
    with peak_python_memory() as peak, pytest.raises(TooLarge, match="over the"):
        fetch_raw(flood(200 * MB))
    assert peak[0] < 2 * MB  # the cap is ~0.3 MB; the body was 200 MB


def test_a_declared_length_over_the_cap_is_refused_before_the_body() -> None:
    with peak_python_memory() as peak, pytest.raises(TooLarge, match="209,715,200 bytes"):
        fetch_raw(flood(200 * MB, declare_length=True))
    assert peak[0] < 2 * MB


def test_a_gzip_bomb_is_refused_as_it_inflates_not_after() -> None:
    # The case, ~300 KB on the wire for 300 MB: over the cap before inflating.
    with pytest.raises(TooLarge):
        fetch_raw(gzip_bomb(300 * MB))
    # ~100 KB on the wire, under the cap: only inflating shows it.
    bomb = gzip_bomb(100 * MB)
    assert len(bomb.body) < CAP
    with peak_python_memory() as peak, pytest.raises(TooLarge, match="once decompressed"):
        fetch_raw(bomb)
    assert peak[0] < 2 * MB  # httpx's own decoder would have inflated 64 MB per chunk


def test_an_honest_gzip_answer_is_inflated() -> None:
    import gzip

    body = b'{"status": "ZERO_RESULTS"}' * 10
    reply = Reply(200, gzip.compress(body), {"Content-Encoding": "gzip"})
    assert fetch_raw(reply, max_bytes=METADATA_BYTES).body == body


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "compress"])
def test_an_encoding_geotag_did_not_ask_for_is_refused(encoding: str) -> None:
    reply = Reply(200, b"\x00" * 100, {"Content-Encoding": encoding})
    with pytest.raises(Rejected, match="unsupported Content-Encoding"):
        fetch_raw(reply)


def test_a_body_that_is_not_gzip_although_it_says_so_is_a_bad_answer() -> None:
    with pytest.raises(BadAnswer, match="gzip"):
        fetch_raw(Reply(200, b"plainly not gzip" * 10, {"Content-Encoding": "gzip"}))


# -- the deadline ---------------------------------------------------------------------------
def test_a_dripping_body_gives_up_at_the_deadline() -> None:
    # One byte every 0.2 s for 30 s: every read is quick, so only the deadline can end it;
    # without one this test would take 30 s and then fail on the body.
    with pytest.raises(Retryable, match=r"no complete answer within 1 s"):
        fetch_raw(drip(every_s=0.2, for_s=30.0), deadline_s=1.0)


# -- redirects, unreachable servers ---------------------------------------------------------
def test_a_redirect_loop_fails_the_request_not_the_run() -> None:
    with serving() as (api,):
        api.route("/loop", Reply.redirect("/loop"))

        async def get(http: Http) -> Any:
            return await http.get(f"{api.url}/loop", max_bytes=CAP)

        with pytest.raises(Rejected, match="redirects"):
            drive(get)
    assert len(api.hits("/loop")) <= 21  # httpx's limit in this client; the scraper's is 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_unreachable_and_charges_no_attempt() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"

    async def get(http: Http) -> Any:
        return await http.get(url, max_bytes=CAP)

    with pytest.raises(Unreachable, match="cannot connect") as raised:
        drive(get)
    assert raised.value.charged is False
    assert Retryable("HTTP 500").charged is True


def test_a_failed_tls_handshake_is_unreachable_too() -> None:
    # https:// to a plain-HTTP server: the handshake fails, as with a bad certificate.
    with serving() as (api,):
        api.route("/x", Reply(200, b"plain"))
        url = api.url.replace("http://", "https://") + "/x"

        async def get(http: Http) -> Any:
            return await http.get(url, max_bytes=CAP)

        with pytest.raises(Unreachable, match=r"cannot connect .*SSL") as raised:
            drive(get)
    assert raised.value.charged is False


# -- images are decoded before they count ---------------------------------------------------
def test_a_good_jpeg_of_the_asked_size_passes() -> None:
    check_jpeg(jpeg(SIZE, SIZE), ImageCheck(SIZE, SIZE))


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (framed_garbage(), BadAnswer, "does not decode"),
        (jpeg(SIZE, SIZE)[:-600], BadAnswer, "does not decode"),  # truncated mid-scan
        (b"<html>Service unavailable</html>", BadAnswer, "does not decode"),
        (forged_size_jpeg(20_000, 20_000), Rejected, "decompression bomb"),
        (forged_size_jpeg(5_000, 5_000), Rejected, "5000x5000; expected 64x64"),
        (jpeg(512, 512), Rejected, "512x512; expected 64x64"),
    ],
    ids=["framed-garbage", "truncated", "html", "forged-20000px", "forged-5000px", "too-large"],
)
def test_a_body_that_is_not_the_asked_image_never_counts(
    body: bytes, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_jpeg(body, ImageCheck(SIZE, SIZE))


def test_a_png_is_not_a_jpeg() -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE)).save(buffer, format="PNG")
    with pytest.raises(BadAnswer):
        check_jpeg(buffer.getvalue(), ImageCheck(SIZE, SIZE))


def test_the_google_provider_refuses_a_forged_giant_through_the_whole_path() -> None:
    async def fetch(provider: GoogleProvider, http: Http) -> bytes:
        return await provider.fetch(http, FOUND, 0.0)

    routes = {"/maps/api/streetview": Reply.jpeg(forged_size_jpeg(20_000, 20_000))}
    with pytest.raises(Rejected, match="decompression bomb"):
        google(fetch, routes)
    good = {"/maps/api/streetview": Reply.jpeg(jpeg(SIZE, SIZE))}
    assert google(fetch, good) == good["/maps/api/streetview"].body


# -- metadata: a small typed parser ---------------------------------------------------------
BAD_METADATA = {
    "lat-abc": (Reply.json(metadata_ok("p", "abc", 14.4)), "location.lat"),  # type: ignore[arg-type]
    "lat-nan": (nan_json(metadata_ok("p", float("nan"), 14.4)), "location.lat"),
    "lng-out-of-range": (Reply.json(metadata_ok("p", 47.6, 540.0)), "location.lng"),
    "no-pano-id": (Reply.json({"status": "OK", "location": {"lat": 1, "lng": 2}}), "pano_id"),
    "pano-id-object": (Reply.json(metadata_ok({"x": 1}, 47.6, 14.4)), "pano_id"),  # type: ignore[arg-type]
    "no-location": (Reply.json({"status": "OK", "pano_id": "p"}), "location"),
    "json-list": (Reply.json([{"status": "OK"}]), "metadata"),
    "html": (Reply(200, b"<html><body>Login</body></html>"), "not JSON"),
    "no-status": (Reply.json({"pano_id": "p"}), "status"),
    "control-chars-in-id": (Reply.json(metadata_ok("p\x1b[2J", 47.6, 14.4)), "pano_id"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_malformed_metadata_is_a_bad_answer_naming_the_field(case: str) -> None:
    reply, field = BAD_METADATA[case]

    async def lookup(provider: GoogleProvider, http: Http) -> Found | None:
        return await provider.lookup(http, POINT)

    with pytest.raises(BadAnswer, match=field):
        google(lookup, {"/maps/api/streetview/metadata": reply})


def test_server_text_reaches_no_terminal_control_and_no_signature() -> None:
    echoed = (
        "\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07 [red]denied[/red] for "
        f"/maps/api/streetview/metadata?location=1,2&key={KEY}&signature=AbC-dEf_123="
        "\u202etxt.exe"
    )
    denied = Reply.json({"status": "REQUEST_DENIED", "error_message": echoed})

    async def lookup(provider: GoogleProvider, http: Http) -> Found | None:
        return await provider.lookup(http, POINT)

    with pytest.raises(AuthError) as raised:
        google(lookup, {"/maps/api/streetview/metadata": denied})
    message = str(raised.value)
    assert "REQUEST_DENIED" in message
    assert "signature=***" in message and "AbC-dEf_123" not in message
    assert KEY not in message
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in message)
    assert "\u202e" not in message


def test_copyright_and_dates_are_stored_clean() -> None:
    answer = metadata_ok(
        "pano-7", 47.6, 14.4, copyright="© \x1b[31mMallory\x1b[0m\r\n[bold]x[/bold]", date="2021-05"
    )

    async def lookup(provider: GoogleProvider, http: Http) -> Found | None:
        return await provider.lookup(http, POINT)

    found = google(lookup, {"/maps/api/streetview/metadata": Reply.json(answer)})
    assert found is not None
    assert found.copyright == "© Mallory [bold]x[/bold]"  # escapes gone, words kept
    assert found.captured == "2021-05"


# -- Mapillary and Panoramax: one malformed entry is skipped, a malformed answer is bad ----
def mapillary_lookup(reply: Reply) -> Found | None:
    from geotag.scrape.providers.mapillary import MapillaryProvider

    with serving() as (api,):
        api.route("/images", reply)
        provider = MapillaryProvider("MLY|token", ImageOptions(radius_m=500), base_url=api.url)
        return drive(lambda http: provider.lookup(http, POINT), secrets=("MLY|token",))


def mapillary_image(image_id: object, lon: object, lat: object) -> dict[str, object]:
    return {"id": image_id, "computed_geometry": {"type": "Point", "coordinates": [lon, lat]}}


def test_mapillary_skips_malformed_entries_and_keeps_the_good_one() -> None:
    entries = [
        mapillary_image("nan", float("nan"), 47.65),
        mapillary_image({"not": "an id"}, 14.45, 47.65),
        mapillary_image("esc\x1b[2J", 14.45, 47.65),
        mapillary_image(True, 14.45, 47.65),
        mapillary_image("far-off-the-map", 14.45, 95.0),
        "a string, not an entry",
        mapillary_image("good", 14.4501, 47.6501),
    ]
    found = mapillary_lookup(nan_json({"data": entries}))
    assert found is not None and found.pano_id == "good"


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (Reply.json([{"data": []}]), "not a JSON object"),
        (Reply(200, b"<html>maintenance</html>"), "not JSON"),
        (Reply.json({"data": {"id": "x"}}), "no data list"),
    ],
    ids=["json-list", "html", "data-not-a-list"],
)
def test_mapillary_answers_not_in_the_apis_shape_are_bad(reply: Reply, match: str) -> None:
    with pytest.raises(BadAnswer, match=match):
        mapillary_lookup(reply)


def panoramax_lookup(reply: Reply) -> Found | None:
    from geotag.scrape.providers.panoramax import PanoramaxProvider

    with serving() as (api,):
        api.route("/api/search", reply)
        provider = PanoramaxProvider(ImageOptions(radius_m=500), base_url=api.url)
        return drive(lambda http: provider.lookup(http, POINT))


def stac_item(item_id: object, lon: object, lat: object, **properties: object) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": item_id,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": properties,
        "assets": {"sd": {"href": f"https://pics.example/{item_id}/sd.jpg"}},
    }


def test_panoramax_skips_malformed_items_and_cleans_their_text() -> None:
    items = [
        stac_item("nan", float("nan"), 47.65),
        stac_item(["list"], 14.45, 47.65),
        stac_item("out", 14.45, -91.0),
        stac_item(
            "good",
            14.4501,
            47.6501,
            license="CC-BY-4.0\x1b[2J",
            **{"geovisio:producer": "\x1b]0;t\x07Ann"},
        ),
    ]
    found = panoramax_lookup(nan_json({"type": "FeatureCollection", "features": items}))
    assert found is not None and found.pano_id == "good"
    assert (found.license, found.copyright) == ("CC-BY-4.0", "Ann")


@pytest.mark.parametrize(
    "reply",
    [Reply.json(["not", "a", "collection"]), Reply(200, b"<html/>"), Reply.json({"features": 3})],
    ids=["json-list", "html", "features-not-a-list"],
)
def test_panoramax_answers_not_in_the_apis_shape_are_bad(reply: Reply) -> None:
    with pytest.raises(BadAnswer):
        panoramax_lookup(reply)
