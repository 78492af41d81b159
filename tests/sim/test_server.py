"""The simulator end to end: a real server on 127.0.0.1 in a thread, real httpx requests."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
from PIL import Image

from geotag.errors import InputError
from geotag.sim.server import FAULTS, SimServer
from geotag.sim.world import Panorama, World
from geotag.urlsign import sign_url

META = "/maps/api/streetview/metadata"
IMAGE = "/maps/api/streetview"
BANGALORE = (12.97, 77.59)
OCEAN = (0.0, -30.0)  # mid-Atlantic: no panorama within any radius we use
KEY = "sim-KEY-0123456789abcdef"
SECRET = "vNIXE0xscrmjlyV-12Nj_BvUPaw="
# Metres to degrees of latitude, to step a known distance away from a panorama.
M_PER_DEG = 111_320.0


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


@pytest.fixture(scope="module")
def pano(world: World) -> Panorama:
    found = world.nearest(*BANGALORE, radius_m=5000)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def sim(world: World, pano: Panorama) -> Iterator[SimServer]:
    with SimServer(world) as server:
        yield server


def get(server: SimServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.base_url + path, params=params)


def decode(response: httpx.Response) -> np.ndarray:
    assert response.headers["content-type"] == "image/jpeg"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=float)


# -- metadata ------------------------------------------------------------------------------
def test_metadata_ok_snaps_to_the_nearest_panorama(sim: SimServer, pano: Panorama) -> None:
    response = get(sim, META, location=f"{pano.lat + 20 / M_PER_DEG},{pano.lon}", radius=100)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "copyright": pano.copyright,
        "date": pano.date,
        "location": {"lat": pano.lat, "lng": pano.lon},
        "pano_id": pano.pano_id,
        "status": "OK",
    }


def test_metadata_by_pano_id(sim: SimServer, pano: Panorama) -> None:
    body = get(sim, META, pano=pano.pano_id).json()
    assert (body["status"], body["pano_id"], body["date"]) == ("OK", pano.pano_id, pano.date)


@pytest.mark.parametrize(
    "params",
    [
        {"location": f"{OCEAN[0]},{OCEAN[1]}", "radius": 5000},
        {"location": f"{BANGALORE[0]},{BANGALORE[1]}", "radius": 0},
        {"pano": "A" * 22},  # well-formed, but not one this world made
        {"pano": "not-a-pano"},
    ],
)
def test_metadata_zero_results(sim: SimServer, params: dict[str, Any]) -> None:
    response = get(sim, META, **params)
    assert (response.status_code, response.json()) == (200, {"status": "ZERO_RESULTS"})


def test_default_radius_is_50_m(sim: SimServer, world: World, pano: Panorama) -> None:
    # A point south of the panorama, 50-100 m from it and over 50 m from any other.
    points = [(pano.lat - m / M_PER_DEG, pano.lon) for m in range(55, 100, 5)]
    beyond = [p for p in points if world.nearest(*p) is None and world.nearest(*p, 100) == pano]
    assert beyond, "no test point: the world changed"
    location = f"{beyond[0][0]},{beyond[0][1]}"
    assert get(sim, META, location=location).json()["status"] == "ZERO_RESULTS"
    assert get(sim, META, location=location, radius=100).json()["pano_id"] == pano.pano_id


@pytest.mark.parametrize("address", ["City Hall, New York, NY", "Chagrin Falls, OH", "nan,nan"])
def test_metadata_address_is_not_found(sim: SimServer, address: str) -> None:
    response = get(sim, META, location=address)
    assert (response.status_code, response.json()) == (200, {"status": "NOT_FOUND"})


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({}, "'location' or the 'pano'"),
        ({"location": ""}, "'location' or the 'pano'"),
        ({"location": "12.97,77.59", "radius": "wide"}, "'radius'"),
        ({"location": "12.97,77.59", "radius": -1}, "'radius'"),
        ({"location": "12.97,77.59", "source": "indoor"}, "'source'"),
        ({"location": "95,77.59"}, "'location'"),
    ],
)
def test_metadata_invalid_request(sim: SimServer, params: dict[str, Any], complaint: str) -> None:
    response = get(sim, META, **params)
    body = response.json()
    assert (response.status_code, body["status"]) == (200, "INVALID_REQUEST")
    assert complaint in body["error_message"]


def test_outdoor_source_skips_user_contributed_panoramas() -> None:
    users_only = World(seed=0, user_fraction=1.0)
    with SimServer(users_only) as server:
        location = f"{BANGALORE[0]},{BANGALORE[1]}"
        default = get(server, META, location=location, radius=5000).json()
        outdoor = get(server, META, location=location, radius=5000, source="outdoor").json()
    assert default["status"] == "OK"
    assert default["copyright"].startswith("© ") and default["copyright"] != "© Google"
    assert outdoor == {"status": "ZERO_RESULTS"}


# -- images ---------------------------------------------------------------------------------
def test_image_has_the_requested_size_and_turns_with_heading(
    sim: SimServer, pano: Panorama
) -> None:
    north = get(sim, IMAGE, pano=pano.pano_id, size="320x200", heading=0)
    east = get(sim, IMAGE, pano=pano.pano_id, size="320x200", heading=90)
    assert north.status_code == east.status_code == 200
    a, b = decode(north), decode(east)
    assert a.shape == b.shape == (200, 320, 3)
    assert np.abs(a - b).mean() > 5


def test_image_is_deterministic(sim: SimServer, pano: Panorama) -> None:
    params = {"pano": pano.pano_id, "size": "64x48", "heading": 33, "fov": 60, "pitch": 10}
    assert get(sim, IMAGE, **params).content == get(sim, IMAGE, **params).content


def test_image_heading_defaults_to_the_bearing_towards_the_location(
    sim: SimServer, world: World, pano: Panorama
) -> None:
    # Due south of the panorama, so the camera must look at heading 180.
    south = (pano.lat - 10 / M_PER_DEG, pano.lon)
    assert world.nearest(*south) == pano
    by_location = get(sim, IMAGE, location=f"{south[0]},{south[1]}", size="96x64").content
    assert by_location == get(sim, IMAGE, pano=pano.pano_id, size="96x64", heading=180).content
    assert by_location != get(sim, IMAGE, pano=pano.pano_id, size="96x64", heading=0).content


def test_pano_image_heading_defaults_to_north(sim: SimServer, pano: Panorama) -> None:
    default = get(sim, IMAGE, pano=pano.pano_id, size="64x64").content
    assert default == get(sim, IMAGE, pano=pano.pano_id, size="64x64", heading=0).content


@pytest.mark.parametrize(
    "where",
    [{"location": f"{OCEAN[0]},{OCEAN[1]}"}, {"pano": "A" * 22}, {"location": "Atlantis"}],
)
def test_no_imagery_is_a_grey_placeholder_or_404(sim: SimServer, where: dict[str, str]) -> None:
    placeholder = get(sim, IMAGE, size="200x120", **where)
    assert placeholder.status_code == 200
    pixels = decode(placeholder)
    assert pixels.shape == (120, 200, 3)
    assert pixels.std() < 3 and abs(pixels.mean() - 226) < 10  # flat grey
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() < 12  # no colour

    missing = get(sim, IMAGE, size="200x120", return_error_code="true", **where)
    assert missing.status_code == 404
    assert not missing.headers["content-type"].startswith("image/")


@pytest.mark.parametrize(
    "params",
    [
        {},  # no size
        {"size": "641x100"},
        {"size": "0x100"},
        {"size": "big"},
        {"size": "64x64", "fov": 121},
        {"size": "64x64", "fov": 0},
        {"size": "64x64", "pitch": 91},
        {"size": "64x64", "heading": 361},
        {"size": "64x64", "heading": "east"},
        {"size": "64x64", "return_error_code": "maybe"},
        {"size": "64x64", "radius": -5},
        {"size": "64x64", "source": "indoor"},
    ],
)
@pytest.mark.parametrize("return_error_code", [None, "true"])
def test_invalid_image_request_is_400(
    sim: SimServer, pano: Panorama, params: dict[str, Any], return_error_code: str | None
) -> None:
    if return_error_code and "return_error_code" not in params:
        params = {**params, "return_error_code": return_error_code}
    response = get(sim, IMAGE, pano=pano.pano_id, **params)
    assert response.status_code == 400
    assert "Invalid" in response.text


def test_image_needs_location_or_pano(sim: SimServer) -> None:
    assert get(sim, IMAGE, size="64x64").status_code == 400


def test_image_sizes_at_the_limits(sim: SimServer, pano: Panorama) -> None:
    assert decode(get(sim, IMAGE, pano=pano.pano_id, size="640x640")).shape == (640, 640, 3)
    assert decode(get(sim, IMAGE, pano=pano.pano_id, size="1x1")).shape == (1, 1, 3)


def test_unknown_path_is_404(sim: SimServer) -> None:
    assert get(sim, "/maps/api/geocode/json", address="x").status_code == 404


# -- key and signature ----------------------------------------------------------------------
@pytest.mark.parametrize("given", [None, "", "wrong-key"])
def test_bad_or_missing_key_is_denied(pano: Panorama, world: World, given: str | None) -> None:
    params = {} if given is None else {"key": given}
    with SimServer(world, key=KEY) as server:
        meta = get(server, META, pano=pano.pano_id, **params)
        image = get(server, IMAGE, pano=pano.pano_id, size="64x64", **params)
        good = get(server, META, pano=pano.pano_id, key=KEY)
    assert meta.status_code == 200
    assert meta.json()["status"] == "REQUEST_DENIED" and meta.json()["error_message"]
    assert image.status_code == 403
    assert good.json()["status"] == "OK"


def signed(server: SimServer, path: str, secret: str = SECRET, **params: Any) -> str:
    return sign_url(f"{server.base_url}{path}?{urlencode(params)}", secret)


def test_signed_requests_are_accepted(world: World, pano: Panorama) -> None:
    with SimServer(world, key=KEY, signing_secret=SECRET) as server, httpx.Client() as client:
        location = f"{pano.lat},{pano.lon}"
        meta = client.get(signed(server, META, location=location, key=KEY))
        image = client.get(signed(server, IMAGE, pano=pano.pano_id, size="80x60", key=KEY))
    assert meta.json()["status"] == "OK"
    assert (image.status_code, decode(image).shape) == (200, (60, 80, 3))


def test_bad_or_missing_signature_is_denied(world: World, pano: Panorama) -> None:
    with SimServer(world, key=KEY, signing_secret=SECRET) as server, httpx.Client() as client:
        good = signed(server, META, pano=pano.pano_id, key=KEY)
        tampered = good.replace(f"pano={pano.pano_id}", "pano=" + "A" * 22)
        other_secret = signed(
            server, META, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", pano=pano.pano_id, key=KEY
        )
        unsigned = f"{server.base_url}{META}?{urlencode({'pano': pano.pano_id, 'key': KEY})}"
        for url in (tampered, other_secret, unsigned):
            body = client.get(url).json()
            assert body["status"] == "REQUEST_DENIED", url
            assert "signature" in body["error_message"]
        image = signed(server, IMAGE, pano=pano.pano_id, size="64x64", key=KEY)
        assert client.get(image.replace("64x64", "640x640")).status_code == 403
        assert client.get(image.split("&signature=")[0]).status_code == 403
        assert client.get(image).status_code == 200


def test_secrets_never_leave_the_server(world: World, pano: Panorama) -> None:
    wrong = "WRONG-" + KEY
    with SimServer(world, key=KEY, signing_secret=SECRET, qps=5, seed=1) as server:
        with httpx.Client() as client:
            urls = [
                signed(server, META, pano=pano.pano_id, key=KEY),
                signed(server, IMAGE, pano=pano.pano_id, size="32x32", key=KEY),
                signed(server, META, pano=pano.pano_id, key=wrong),
                signed(server, IMAGE, pano=pano.pano_id, size="32x32", key=wrong),
                signed(server, META, key=KEY),  # invalid request
                signed(server, IMAGE, size="999x1", pano=pano.pano_id, key=KEY),
            ] * 2  # the second round runs over the quota
            responses = [client.get(url) for url in urls]
        log, text = server.requests, repr(server)
    assert {r.status_code for r in responses} >= {200, 400, 403, 429}
    for response in responses:
        for secret in (KEY, wrong, SECRET, "signature="):
            assert secret.encode() not in response.content
            assert secret not in str(response.headers)
    for secret in (KEY, wrong, SECRET, "key=", "signature"):
        assert secret not in repr(log)
    assert KEY not in text and SECRET not in text
    assert [entry.path for entry in log] == [META, IMAGE] * 6


# -- quota --------------------------------------------------------------------------------
def test_over_qps_is_429_with_retry_after(world: World, pano: Panorama) -> None:
    with SimServer(world, qps=3) as server, httpx.Client(base_url=server.base_url) as client:
        metas = [client.get(META, params={"pano": pano.pano_id}) for _ in range(6)]
        image = client.get(IMAGE, params={"pano": pano.pano_id, "size": "32x32"})
        time.sleep(0.5)  # 1.5 tokens come back
        again = client.get(META, params={"pano": pano.pano_id})
    assert [m.status_code for m in metas] == [200, 200, 200, 429, 429, 429]
    assert [m.json()["status"] for m in metas[3:]] == ["OVER_QUERY_LIMIT"] * 3
    assert all(m.headers["retry-after"] == "1" for m in metas[3:])
    assert (image.status_code, image.headers["retry-after"]) == (429, "1")
    assert again.json()["status"] == "OK"


# -- faults ---------------------------------------------------------------------------------
def only(fault: str, world: World) -> SimServer:
    return SimServer(world, fail_rate=1.0, faults=[fault])


@pytest.mark.parametrize(("fault", "status"), [("500", 500), ("503", 503)])
def test_http_error_faults(world: World, pano: Panorama, fault: str, status: int) -> None:
    with only(fault, world) as server:
        assert get(server, META, pano=pano.pano_id).status_code == status
        assert get(server, IMAGE, pano=pano.pano_id, size="32x32").status_code == status
        assert [entry.status for entry in server.requests] == [status, status]


def test_drop_fault_closes_without_an_answer(world: World, pano: Panorama) -> None:
    with only("drop", world) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            get(server, META, pano=pano.pano_id)
        assert [entry.status for entry in server.requests] == ["drop"]


@pytest.mark.parametrize("path", [META, IMAGE])
def test_truncate_fault_cuts_the_body_short(world: World, pano: Panorama, path: str) -> None:
    with only("truncate", world) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            get(server, path, pano=pano.pano_id, size="64x64")
        # The headers promised a whole 200 answer; the log says it was cut off on the wire.
        assert [entry.status for entry in server.requests] == ["truncate"]


def test_unknown_error_fault(world: World, pano: Panorama) -> None:
    with only("unknown_error", world) as server:
        meta = get(server, META, pano=pano.pano_id)
        image = get(server, IMAGE, pano=pano.pano_id, size="32x32")
    assert (meta.status_code, meta.json()) == (200, {"status": "UNKNOWN_ERROR"})
    assert image.status_code == 500


def test_faults_follow_the_seed(world: World, pano: Panorama) -> None:
    def statuses(seed: int) -> list[int]:
        server = SimServer(world, seed=seed, fail_rate=0.4, faults=["500", "503"])
        with server, httpx.Client(base_url=server.base_url) as client:
            return [client.get(META, params={"pano": pano.pano_id}).status_code for _ in range(40)]

    first = statuses(7)
    assert first == statuses(7)
    assert first != statuses(8)
    assert {200, 500, 503} == set(first)
    assert 6 <= sum(s != 200 for s in first) <= 26


def test_a_client_that_keeps_its_connection_survives_faults(world: World, pano: Panorama) -> None:
    ok = errors = 0
    with SimServer(world, seed=3, fail_rate=0.3) as server, httpx.Client() as client:
        for _ in range(30):
            try:
                response = client.get(f"{server.base_url}{META}", params={"pano": pano.pano_id})
            except httpx.TransportError:
                errors += 1
            else:
                ok += response.status_code == 200 and response.json()["status"] == "OK"
    assert ok >= 10 and errors >= 1
    assert ok + errors <= 30


def test_latency_delays_every_answer(world: World, pano: Panorama) -> None:
    with SimServer(world, latency_ms=150) as server, httpx.Client() as client:
        started = time.perf_counter()
        client.get(f"{server.base_url}{META}", params={"pano": pano.pano_id})
        client.get(f"{server.base_url}{IMAGE}", params={"size": "10x10"})  # even a 400
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.3


# -- connections ----------------------------------------------------------------------------
def test_keep_alive_reuses_one_connection(sim: SimServer, pano: Panorama) -> None:
    with httpx.Client(base_url=sim.base_url) as client:
        ports = {
            client.get(META, params={"pano": pano.pano_id})
            .extensions["network_stream"]
            .get_extra_info("client_addr")[1]
            for _ in range(5)
        }
    assert len(ports) == 1


def test_many_concurrent_keep_alive_clients_are_all_answered(world: World, pano: Panorama) -> None:
    clients, per_client = 32, 6

    def work(index: int) -> list[tuple[int, str]]:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            out = []
            for i in range(per_client):
                if i % 3 == 2:
                    params: dict[str, str | int] = {
                        "pano": pano.pano_id,
                        "size": "64x64",
                        "heading": index * 11 % 360,
                    }
                    response = client.get(IMAGE, params=params)
                    out.append((response.status_code, response.headers["content-type"]))
                else:
                    response = client.get(META, params={"pano": pano.pano_id})
                    out.append((response.status_code, response.json()["status"]))
            return out

    with SimServer(world) as server, ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(work, range(clients)) for r in batch]
        logged = server.requests
    assert len(results) == clients * per_client
    assert {status for status, _ in results} == {200}
    assert {kind for _, kind in results} == {"OK", "image/jpeg"}
    assert len(logged) == clients * per_client


def test_stop_releases_the_port_and_closes_kept_connections(world: World) -> None:
    server = SimServer(world).start()
    base = server.base_url
    with httpx.Client(base_url=base) as client:
        assert client.get(META).status_code == 200  # INVALID_REQUEST, connection kept
        server.stop()
        with pytest.raises(httpx.TransportError):
            client.get(META)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    server.stop()  # idempotent


def test_serve_forever_returns_when_stopped(world: World) -> None:
    server = SimServer(world).start()
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    assert get(server, META, location="1,1").json()["status"] == "ZERO_RESULTS"
    server.stop()
    serving.join(timeout=5)
    assert not serving.is_alive()


def test_log_records_time_path_and_status(world: World) -> None:
    with SimServer(world) as server:
        before = time.monotonic()
        get(server, META, location="1,1")
        get(server, "/nowhere")
        log = server.requests
    assert [(e.path, e.status) for e in log] == [(META, 200), ("/nowhere", 404)]
    assert before <= log[0].time <= log[1].time <= time.monotonic()
    _, path, status = log[0]  # a plain 3-tuple too
    assert (path, status) == (META, 200)


# -- options --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fail_rate": 1.5}, "fail_rate must lie in \\[0, 1\\]; got 1.5"),
        ({"fail_rate": -0.1}, "fail_rate must lie in"),
        ({"fail_rate": float("nan")}, "fail_rate must lie in"),
        ({"qps": 0}, "qps must be a positive number"),
        ({"qps": -2.0}, "qps must be a positive number"),
        ({"faults": ["truncated"]}, "unknown fault 'truncated'.*did you mean 'truncate'"),
        ({"faults": ["dorp"]}, "did you mean 'drop'"),
        ({"faults": []}, "faults must name at least one"),
        ({"latency_ms": -1}, "latency_ms must be zero or more"),
        ({"port": 70000}, "port must lie in"),
        ({"key": ""}, "key must not be empty"),
    ],
)
def test_bad_options_are_one_line_input_errors(
    world: World, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        SimServer(world, **options)
    assert "\n" not in str(info.value)


def test_malformed_signing_secret_is_refused_without_quoting_it(world: World) -> None:
    with pytest.raises(InputError, match="signing secret") as info:
        SimServer(world, signing_secret="my*private*secret")
    assert "private" not in str(info.value)


def test_one_fault_may_be_named_as_a_string(world: World, pano: Panorama) -> None:
    with SimServer(world, fail_rate=1.0, faults="503") as server:
        assert get(server, META, pano=pano.pano_id).status_code == 503
    assert set(FAULTS) == {"500", "503", "drop", "truncate", "unknown_error"}


def test_busy_port_is_an_input_error(world: World) -> None:
    with SimServer(world) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            SimServer(world, port=port).start()


def test_metadata_json_is_utf8() -> None:
    users = World(seed=0, user_fraction=1.0)
    found = users.nearest(*BANGALORE, radius_m=5000)
    assert found is not None and found.photographer
    with SimServer(users) as server:
        response = get(server, META, pano=found.pano_id)
    assert "charset=UTF-8" in response.headers["content-type"]
    assert json.loads(response.content.decode("utf-8"))["copyright"] == f"© {found.photographer}"
