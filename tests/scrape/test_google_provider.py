"""The google provider end to end against the simulator: key, URL signing, price, secrets.

The simulator checks the key and the HMAC-SHA1 signature exactly as Google does, over the
raw request target, so a URL that httpx re-encoded after signing would be refused here.
(Google's documented signing example itself is covered in tests/test_urlsign.py.)
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pandas as pd
import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.errors import AuthError, InputError
from geotag.scrape.http import NoImagery, Rejected
from geotag.scrape.manifest import Manifest
from geotag.scrape.providers.base import Found, ImageOptions, Point
from geotag.scrape.providers.google import LICENSE, GoogleProvider
from geotag.scrape.registry import PROVIDERS
from geotag.scrape.retry import Retryable
from geotag.sim.server import SimServer
from geotag.sim.world import World
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.workspace import Workspace
from tests.conftest import snapshot
from tests.scrape.conftest import (
    HEADINGS,
    IMAGE_PATH,
    META_PATH,
    RADIUS_M,
    SIZE,
    Cells,
    image_answers,
    is_valid_jpeg,
    nearest_panoramas,
    points_of,
    sim_options,
    unique_panoramas,
)
from tests.scrape.fake_api import FakeApi, Reply, drive, jpeg_bytes, serving

KEY = "SECRET-KEY-123"
SECRET_BYTES = b"geotag e2e url-signing secret!"
SECRET = base64.urlsafe_b64encode(SECRET_BYTES).decode()
OTHER_SECRET = base64.urlsafe_b64encode(b"some other signing secret....").decode()
GOOGLE_TERMS_NOTICE = PROVIDERS["google"].terms_notice
PRICE_PER_1000_USD = PROVIDERS["google"].price_per_1000_usd


def google_options(base_url: str | None, **overrides: object) -> ScrapeOptions:
    return sim_options(base_url, provider="google", **overrides)


def shard_images(world: World, ws: Workspace, shard: tuple[int, int]) -> int:
    points = points_of(ws)
    points = points[points["point_id"] % shard[1] == shard[0]]
    cell_of = Cells(ws)
    panos = unique_panoramas(nearest_panoramas(world, points).values())
    return len(HEADINGS) * sum(1 for p in panos.values() if cell_of(p.lat, p.lon) != -1)


def test_signed_requests_work_end_to_end(ws: Workspace, world: World) -> None:
    expected = shard_images(world, ws, (0, 2))
    assert expected > 0
    notices: list[str] = []
    with SimServer(world, key=KEY, signing_secret=SECRET) as server:
        options = google_options(server.base_url, api_key=KEY, signing_secret=SECRET, shard=(0, 2))
        result = run_scrape(ws, options, on_notice=notices.append)
        log = server.requests
        # The terms notice is shown once per workspace, not on every run.
        again = run_scrape(ws, google_options(server.base_url, api_key=KEY, signing_secret=SECRET))
    assert {r.status for r in log} == {200}  # a refused key or signature would be a 403
    assert image_answers(log) == result.counts.images_done == expected
    assert result.totals.get("points_pending", 0) == 0
    table = pd.read_parquet(ws.images_parquet)
    assert len(table) > expected  # the second, unsharded run added the rest
    assert (table["provider"] == "google").all() and (table["license"] == LICENSE).all()
    assert all(is_valid_jpeg((ws.root / p).read_bytes()) for p in table["path"])
    assert notices == [GOOGLE_TERMS_NOTICE] and result.notices == (GOOGLE_TERMS_NOTICE,)
    assert again.notices == ()
    assert ws.stage_settings("notices") == {"google_terms": True}  # as workspaces always had
    assert ws.stage_settings("scrape")["signed"] is True


@pytest.mark.parametrize(
    ("secret", "why"),
    [(OTHER_SECRET, "'signature' is not valid"), (None, "Missing the 'signature' parameter")],
    ids=["wrong-secret", "unsigned"],
)
def test_a_wrong_or_missing_signature_is_refused_at_once(
    ws: Workspace, world: World, secret: str | None, why: str
) -> None:
    with SimServer(world, key=KEY, signing_secret=SECRET) as server:
        with pytest.raises(AuthError, match="REQUEST_DENIED") as raised:
            run_scrape(ws, google_options(server.base_url, api_key=KEY, signing_secret=secret))
        log = server.requests
    assert why in str(raised.value)
    assert 1 <= len(log) <= 8 < len(points_of(ws))
    assert all(r.path == META_PATH for r in log)
    for text in (KEY, SECRET, OTHER_SECRET):
        assert text not in str(raised.value)
    assert pd.read_parquet(ws.images_parquet).empty


def test_google_needs_a_key_and_says_where_to_put_it(ws: Workspace, world: World) -> None:
    before = snapshot(ws.root)
    with SimServer(world) as server:
        with pytest.raises(InputError, match="--api-key or set GOOGLE_MAPS_API_KEY"):
            run_scrape(ws, google_options(server.base_url, api_key=None))
        assert server.requests == []
    assert snapshot(ws.root) == before


def test_google_dry_run_sends_nothing_and_states_the_price(ws: Workspace, world: World) -> None:
    n = len(points_of(ws))
    with SimServer(world, key=KEY) as server:
        result = run_scrape(ws, google_options(server.base_url, api_key=KEY, dry_run=True))
        cli = CliRunner().invoke(
            app,
            [
                "scrape",
                "-w",
                str(ws.root),
                "--base-url",
                server.base_url,
                "--api-key",
                KEY,
                "--max-images",
                "100",
                "--dry-run",
            ],
        )
        assert server.requests == []
    plan = result.dry_run
    assert plan is not None
    assert plan.max_images == n * len(HEADINGS)
    assert plan.price_usd == pytest.approx(plan.max_images * PRICE_PER_1000_USD / 1000)
    assert plan.price_source is not None and "Static Street View" in plan.price_source
    assert cli.exit_code == 0, cli.output
    assert f"${100 * PRICE_PER_1000_USD / 1000:.2f}" in cli.stdout
    assert KEY not in cli.output


def test_simulator_options_on_the_command_line_are_ignored_for_google(
    ws: Workspace, world: World
) -> None:
    with SimServer(world, key=KEY) as server:
        common = ["scrape", "-w", str(ws.root), "--base-url", server.base_url]
        common += ["--api-key", KEY, "--dry-run"]
        plain = CliRunner().invoke(app, common)
        with_sim_options = CliRunner().invoke(app, [*common, "--seed", "7", "--photospheres", "1"])
        assert server.requests == []
    assert plain.exit_code == with_sim_options.exit_code == 0, with_sim_options.output
    assert with_sim_options.output == plain.output


def test_an_option_google_does_not_take_is_refused_in_one_line(ws: Workspace) -> None:
    before = snapshot(ws.root)
    options = google_options(None, api_key=KEY, provider_options={"seed": 7})
    with pytest.raises(InputError) as raised:
        run_scrape(ws, options)
    assert str(raised.value) == "the google provider has no option 'seed'; it takes none"
    assert snapshot(ws.root) == before


def test_secrets_appear_in_no_workspace_file_and_no_output(ws: Workspace, world: World) -> None:
    secrets = {
        "key": KEY.encode(),
        "secret": SECRET.encode(),
        "secret bytes": SECRET_BYTES,
        "other secret": OTHER_SECRET.encode(),
    }
    runner = CliRunner()
    outputs = []
    # A second connection keeps the manifest's write-ahead log on disk, to be searched too.
    with (
        Manifest(ws.manifest),
        SimServer(
            world, key=KEY, signing_secret=SECRET, fail_rate=0.3, faults=("500", "truncate")
        ) as server,
    ):
        common = ["scrape", "-w", str(ws.root), "--base-url", server.base_url]
        common += ["--size", str(SIZE), "--radius", f"{RADIUS_M:g}", "--rate", "500"]
        run = runner.invoke(
            app,
            [*common, "--api-key", KEY, "--signing-secret", SECRET, "--max-attempts", "1"],
        )
        assert run.exit_code == 0, run.output
        outputs.append(run.output)
        # Failures are recorded with their error text, then a wrong secret is refused.
        refused = runner.invoke(
            app,
            [*common, "--max-attempts", "3"],
            env={"GOOGLE_MAPS_API_KEY": KEY, "GOOGLE_MAPS_URL_SIGNING_SECRET": OTHER_SECRET},
        )
        assert refused.exit_code == 1, refused.output
        assert refused.stderr.startswith("Error: ") and "refused" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        outputs.append(refused.output)
        wal = ws.manifest.with_name(ws.manifest.name + "-wal")
        assert wal.stat().st_size > 0
        files = {p: p.read_bytes() for p in ws.root.rglob("*") if p.is_file()}

    with Manifest(ws.manifest) as manifest:
        totals = manifest.counts("google")
    assert totals.get("images_failed", 0) + totals.get("points_failed", 0) > 0, totals
    assert totals.get("images_done", 0) > 0
    names = {str(p.relative_to(ws.root)) for p in files}
    assert {"geotag.toml", "manifest.sqlite", "manifest.sqlite-wal", "images.parquet"} <= names
    for path, data in files.items():
        for what, secret in secrets.items():
            assert secret not in data, f"the {what} is in {path}"
    for output in outputs:
        for what, secret in secrets.items():
            assert secret.decode("latin-1") not in output, f"the {what} was printed"


def test_options_repr_and_recorded_settings_hide_the_secrets() -> None:
    options = ScrapeOptions(api_key=KEY, signing_secret=SECRET)
    assert KEY not in repr(options) and SECRET not in repr(options)
    assert KEY not in str(options.settings()) and SECRET not in str(options.settings())


def test_a_malformed_signing_secret_is_one_clear_error(ws: Workspace) -> None:
    with pytest.raises(InputError, match="not url-safe base64") as raised:
        run_scrape(ws, google_options("http://127.0.0.1:9", api_key=KEY, signing_secret="a+b/"))
    assert "a+b/" not in str(raised.value)


# -- request and response handling, against a small canned server --------------------------
POINT = Point(point_id=1, cell_id=0, lat=47.6512345678, lon=14.4512345678)
FOUND = Found("CAoSLEFGMVFpcE", 47.65, 14.45, "2021-05", "© Google", LICENSE, (90.0,))


def google(api: FakeApi, secret: str | None = None) -> GoogleProvider:
    options = ImageOptions(size=320, fov=80, pitch=5, radius_m=250, source="outdoor")
    return GoogleProvider(KEY, options, signing_secret=secret, base_url=api.url + "/")


def metadata(api: FakeApi, reply: Reply, secret: str | None = None) -> Found | None:
    api.route(META_PATH, reply)
    provider = google(api, secret)
    return drive(lambda http: provider.lookup(http, POINT), secrets=(KEY, secret), name="google")


def image(api: FakeApi, reply: Reply) -> bytes:
    api.route(IMAGE_PATH, reply)
    provider = google(api)
    return drive(lambda http: provider.fetch(http, FOUND, 90.0), secrets=(KEY,), name="google")


def test_requests_carry_the_documented_parameters() -> None:
    body = jpeg_bytes(size=(320, 320))
    with serving() as (api,):
        found = metadata(
            api,
            Reply.json(
                {
                    "copyright": "© Google",
                    "date": "2021-05",
                    "location": {"lat": 47.65, "lng": 14.45},
                    "pano_id": FOUND.pano_id,
                    "status": "OK",
                }
            ),
            secret=SECRET,
        )
        assert image(api, Reply.jpeg(body)) == body
    assert found == replace(FOUND, headings=HEADINGS)  # the default headings
    lookup_request, image_request = api.requests
    assert lookup_request.path == META_PATH
    assert lookup_request.query == {
        "location": "47.6512346,14.4512346",
        "radius": "250",
        "source": "outdoor",
        "key": KEY,
        "signature": lookup_request.query["signature"],
    }
    assert image_request.path == IMAGE_PATH
    assert image_request.query == {
        "size": "320x320",
        "pano": FOUND.pano_id,
        "heading": "90",
        "fov": "80",
        "pitch": "5",
        "return_error_code": "true",  # so a grey "no imagery" picture is never saved
        "key": KEY,
    }


@pytest.mark.parametrize("status", ["ZERO_RESULTS", "NOT_FOUND"])
def test_no_panorama_is_none_not_an_error(status: str) -> None:
    with serving() as (api,):
        assert metadata(api, Reply.json({"status": status})) is None


@pytest.mark.parametrize("status", ["OVER_QUERY_LIMIT", "UNKNOWN_ERROR"])
def test_transient_metadata_statuses_are_retryable_with_retry_after(status: str) -> None:
    reply = Reply(200, json.dumps({"status": status}).encode(), {"Retry-After": "3"})
    with serving() as (api,), pytest.raises(Retryable, match=status) as raised:
        metadata(api, reply)
    assert raised.value.retry_after == 3.0


def test_request_denied_stops_everything_without_echoing_the_key() -> None:
    reply = Reply.json({"status": "REQUEST_DENIED", "error_message": f"The key {KEY} is bad."})
    with serving() as (api,), pytest.raises(AuthError, match="REQUEST_DENIED") as raised:
        metadata(api, reply)
    assert KEY not in str(raised.value)


def test_invalid_request_is_rejected_for_good() -> None:
    with serving() as (api,), pytest.raises(Rejected, match="INVALID_REQUEST"):
        metadata(api, Reply.json({"status": "INVALID_REQUEST"}))


def test_image_answers_are_sorted_into_no_imagery_rejected_retry_and_stop() -> None:
    body = jpeg_bytes(size=(64, 64))
    with serving() as (api,):
        with pytest.raises(NoImagery):
            image(api, Reply(404, b"Sorry, we have no imagery here."))
        with pytest.raises(Rejected, match="HTTP 400"):
            image(api, Reply(400, b"Invalid request."))
        # A complete HTTP answer whose body is not a whole JPEG is never saved.
        for bad in (body[: len(body) // 2], b"<html>error</html>"):
            with pytest.raises(Retryable, match="does not decode as a JPEG"):
                image(api, Reply(200, bad, {"Content-Type": "image/jpeg"}))
        with pytest.raises(AuthError) as raised:
            image(api, Reply(403, b"The provided API key is invalid."))
    assert KEY not in str(raised.value)
