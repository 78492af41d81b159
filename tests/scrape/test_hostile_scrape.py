"""Whole scrapes against a server that lies: one bad answer fails one point, a run that
fails says so, and a misconfigured run costs nothing that a fixed rerun cannot retry.

The hostile server is ``FakeApi`` on 127.0.0.1 speaking the Street View metadata and image
API (what the ``sim`` provider speaks), answering each point as the test planned it.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.scrape.scraper import BREAKER_STEPS
from geotag.sim.server import SimServer
from geotag.sim.world import World
from geotag.stages.scrape import run_scrape
from geotag.workspace import Workspace
from tests.scrape.conftest import IMAGE_PATH, META_PATH, SIZE, image_files, points_of, sim_options
from tests.scrape.fake_api import Reply, Request, serving
from tests.scrape.hostile import (
    MB,
    flood,
    forged_size_jpeg,
    framed_garbage,
    gzip_bomb,
    jpeg,
    location_of,
    metadata_ok,
    nan_json,
)
from tests.scrape.test_hostile_http import free_port

GOOD_IMAGE = jpeg(SIZE, SIZE)


def point_rows(ws: Workspace) -> pd.DataFrame:
    with sqlite3.connect(ws.manifest) as db:
        return pd.read_sql("SELECT point_id, status, attempts, last_error FROM points", db)


def image_rows(ws: Workspace) -> pd.DataFrame:
    with sqlite3.connect(ws.manifest) as db:
        return pd.read_sql("SELECT pano_id, status, attempts, last_error FROM images", db)


def plan_points(ws: Workspace, kinds: list[str]) -> dict[str, str]:
    """Each point's location (as the provider sends it) -> a kind, cycling through ``kinds``."""
    points = points_of(ws).sort_values("point_id")
    return {
        f"{row.lat:.7f},{row.lon:.7f}": kinds[i % len(kinds)]
        for i, row in enumerate(points.itertuples(index=False))
    }


def metadata_route(plan: dict[str, str], answers: dict[str, Callable[[str], Reply]]):
    """Answer each point by its planned kind; ``answers[kind](location)`` builds the reply."""

    def route(request: Request) -> Reply:
        location = location_of(request)
        return answers[plan[location]](location)

    return route


def ok_for(location: str, **extra: object) -> Reply:
    lat, lng = (float(v) for v in location.split(","))
    return Reply.json(metadata_ok(f"pano-{location}", lat, lng, **extra))


BAD_ANSWERS: dict[str, Callable[[str], Reply]] = {
    "lat-abc": lambda loc: Reply.json(metadata_ok("p-abc", "abc", 14.5)),  # type: ignore[arg-type]
    "nan": lambda loc: nan_json(metadata_ok("p-nan", float("nan"), float("nan"))),
    "no-pano-id": lambda loc: Reply.json({"status": "OK", "location": {"lat": 47.7, "lng": 14.5}}),
    "json-list": lambda loc: Reply.json([{"status": "OK"}]),
    "html": lambda loc: Reply(200, b"<html>captive portal</html>", {"Content-Type": "text/html"}),
    "redirect-loop": lambda loc: Reply.redirect("/loop"),
}


def test_one_bad_answer_fails_its_point_and_the_run_goes_on(ws: Workspace) -> None:
    kinds = ["ok", "ok", "ok", "ok", *BAD_ANSWERS]
    plan = plan_points(ws, kinds)
    with serving() as (api,):
        api.route(META_PATH, metadata_route(plan, {"ok": ok_for, **BAD_ANSWERS}))
        api.route("/loop", Reply.redirect("/loop"))
        api.route(IMAGE_PATH, Reply.jpeg(GOOD_IMAGE))
        result = run_scrape(ws, sim_options(api.url, max_attempts=2))
        loops = len(api.hits("/loop"))
    rows = point_rows(ws).set_index("point_id")
    points = points_of(ws).sort_values("point_id")
    kind_of = {
        int(r.point_id): plan[f"{r.lat:.7f},{r.lon:.7f}"] for r in points.itertuples(index=False)
    }
    for point_id, kind in kind_of.items():
        row = rows.loc[point_id]
        if kind == "ok":
            assert row.status == "found"
        elif kind == "redirect-loop":
            # Refused for good at once: the same loop would come back on every try.
            assert (row.status, row.attempts) == ("rejected", 1)
            assert "more than 5 redirects" in row.last_error
        else:
            # Every field was checked; the point failed with its reason, to be retried.
            assert row.status == "failed", (kind, row.last_error)
            assert row.attempts == 2
            assert row.last_error, kind
    errors = rows.loc[[p for p, k in kind_of.items() if k != "ok"], "last_error"]
    assert any("location.lat" in e for e in errors)
    assert any("pano_id" in e for e in errors)
    assert any("not JSON" in e for e in errors)
    loop_points = sum(k == "redirect-loop" for k in kind_of.values())
    assert loops == 5 * loop_points  # the scraper's client follows five redirects, no more
    with sqlite3.connect(ws.manifest) as db:
        stored = db.execute("SELECT COUNT(*) FROM panoramas WHERE lat IS NULL OR lat != lat")
        assert stored.fetchone()[0] == 0  # no NaN panorama stored, none silently dropped
    found = sum(k == "ok" for k in kind_of.values())
    assert result.counts.images_done == found * 4  # four headings
    assert result.problem is None  # 5 of 9 kinds failing is under half of the steps


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (flood(200 * MB), "cap"),
        (gzip_bomb(100 * MB), "once decompressed"),
        (Reply.jpeg(framed_garbage()), "does not decode"),
        (Reply.jpeg(forged_size_jpeg(20_000, 20_000)), "decompression bomb"),
        (Reply.jpeg(jpeg(SIZE * 4, SIZE * 4)), f"expected {SIZE}x{SIZE}"),
    ],
    ids=["200MB", "gzip-bomb", "framed-garbage", "forged-20000px", "wrong-size"],
)
def test_images_that_lie_are_never_written_and_the_run_says_it_failed(
    ws: Workspace, image: Reply, reason: str
) -> None:
    plan = plan_points(ws, ["ok"])
    with serving() as (api,):
        api.route(META_PATH, metadata_route(plan, {"ok": ok_for}))
        api.route(IMAGE_PATH, image)
        result = run_scrape(ws, sim_options(api.url, concurrency=2, max_attempts=2))
    assert image_files(ws) == []  # nothing on disk, not even a .part
    images = image_rows(ws)
    assert len(images) and set(images.status) <= {"failed", "rejected"}
    assert all(reason in e for e in images.last_error), images.last_error.tolist()
    assert result.problem is not None and reason in result.problem
    assert result.problem.startswith(f"every one of {len(images)} downloads failed")


# -- a misconfigured run --------------------------------------------------------------------
def cli_scrape(ws: Workspace, base_url: str, *extra: str) -> object:
    return CliRunner().invoke(
        app,
        [
            "scrape",
            "-w",
            str(ws.root),
            "--provider",
            "sim",
            "--base-url",
            base_url,
            "--size",
            str(SIZE),
            "--radius",
            "1000",
            "--rate",
            "500",
            "--max-attempts",
            "2",
            *extra,
        ],
    )


def test_a_wrong_base_url_exits_1_and_the_fixed_rerun_retries_every_point(
    ws: Workspace, world: World
) -> None:
    wrong = cli_scrape(ws, f"http://127.0.0.1:{free_port()}")
    assert wrong.exit_code == 1, wrong.output
    assert "cannot connect" in wrong.stderr and "Error:" in wrong.stderr
    assert "Traceback" not in wrong.output
    rows = point_rows(ws)
    assert (rows.attempts == 0).all()  # nothing reached a server: no attempt used
    with SimServer(world) as server:
        fixed = cli_scrape(ws, server.base_url)
    assert fixed.exit_code == 0, fixed.output
    after = point_rows(ws)
    assert set(after.status) <= {"found", "no_imagery"}
    assert (after.status == "found").any()
    assert f"{len(after)} of {len(after)}" in fixed.stdout  # every point looked up again


@pytest.mark.parametrize(
    "answer",
    [
        Reply(200, b"<!doctype html><title>Welcome to nginx!</title>"),
        Reply.json({"status": "OVER_QUERY_LIMIT"}),
        Reply(500, b"oops"),
        Reply(404, b"Not Found"),
    ],
    ids=["html", "over-query-limit", "http-500", "http-404"],
)
def test_a_server_that_never_answers_properly_stops_the_run_and_charges_nothing(
    ws: Workspace, world: World, answer: Reply
) -> None:
    with serving() as (api,):
        api.route(META_PATH, answer)
        stopped = cli_scrape(ws, api.url, "--concurrency", "2")
        asked = len(api.hits(META_PATH))
    assert stopped.exit_code == 1, stopped.output
    assert "stopped after the first" in stopped.stderr or "every one of" in stopped.stderr
    assert "commonest reason" in stopped.stderr
    rows = point_rows(ws)
    tried = rows[rows.last_error.notna()]
    assert BREAKER_STEPS <= len(tried) < len(rows)  # stopped early, not after every point
    assert asked <= (BREAKER_STEPS + 2) * 2  # steps x attempts, plus those in flight
    assert (rows.attempts == 0).all()  # nothing succeeded: the failures charged nothing
    with SimServer(world) as server:
        fixed = cli_scrape(ws, server.base_url)
    assert fixed.exit_code == 0, fixed.output
    assert set(point_rows(ws).status) <= {"found", "no_imagery"}


def test_failures_over_the_threshold_exit_1_naming_the_commonest_reason(ws: Workspace) -> None:
    plan = plan_points(ws, ["ok"])
    with serving() as (api,):
        api.route(META_PATH, metadata_route(plan, {"ok": ok_for}))
        api.route(IMAGE_PATH, Reply(503, b"busy"))
        result = cli_scrape(ws, api.url)
        lenient = cli_scrape(ws, api.url, "--retry-failed", "--max-failure-rate", "1")
    assert result.exit_code == 1, result.output
    assert "downloads failed" in result.stderr and "HTTP 503" in result.stderr
    # Every lookup worked, but no image: a failed run, whatever the threshold.
    assert lenient.exit_code == 1, lenient.output


def test_a_partial_failure_under_the_threshold_is_a_success(ws: Workspace, tmp_path: Path) -> None:
    twin = Workspace(tmp_path / "twin")
    shutil.copytree(ws.root, twin.root)
    plan = plan_points(ws, ["ok"])

    def images(request: Request) -> Reply:
        # One heading in four is refused for good: 30 of 150 steps (20%) fail.
        return Reply(400, b"no") if request.query["heading"] == "90" else Reply.jpeg(GOOD_IMAGE)

    with serving() as (api,):
        api.route(META_PATH, metadata_route(plan, {"ok": ok_for}))
        api.route(IMAGE_PATH, images)
        passed = cli_scrape(ws, api.url)
        strict = cli_scrape(twin, api.url, "--max-failure-rate", "0.1")
    assert passed.exit_code == 0, passed.output
    assert "commonest failure" in passed.stdout and "image HTTP 400" in passed.stdout
    assert strict.exit_code == 1
    assert "over --max-failure-rate 0.1" in strict.stderr


def test_retry_failed_tries_refused_images_again_from_zero(ws: Workspace) -> None:
    plan = plan_points(ws, ["ok"])
    good = {"now": False}

    def images(request: Request) -> Reply:
        return Reply.jpeg(GOOD_IMAGE) if good["now"] else Reply(400, b"not yet")

    with serving() as (api,):
        api.route(META_PATH, metadata_route(plan, {"ok": ok_for}))
        api.route(IMAGE_PATH, images)
        first = cli_scrape(ws, api.url)
        good["now"] = True
        plain_rerun = cli_scrape(ws, api.url)
        files_before = len(image_files(ws))
        retried = cli_scrape(ws, api.url, "--retry-failed")
    assert first.exit_code == 1
    assert plain_rerun.exit_code == 0  # nothing left to try: refused images stay refused
    assert "--retry-failed retries all" in plain_rerun.stdout
    assert files_before == 0
    assert retried.exit_code == 0, retried.output
    assert set(image_rows(ws).status) == {"done"}
    assert "retried afresh" in retried.stdout


def test_server_text_in_the_summary_is_shown_not_obeyed(ws: Workspace) -> None:
    plan = plan_points(ws, ["ok"])
    nasty = "\x1b[2J\x1b[31m[bold red]pwned[/bold red]\x07"
    with serving() as (api,):
        api.route(META_PATH, metadata_route(plan, {"ok": lambda loc: ok_for(loc, copyright=nasty)}))
        api.route(IMAGE_PATH, Reply(400, nasty.encode()))
        result = cli_scrape(ws, api.url, "--max-failure-rate", "1")
    assert "\x1b" not in result.output and "\x07" not in result.output
    with sqlite3.connect(ws.manifest) as db:
        copyrights = {r[0] for r in db.execute("SELECT copyright FROM panoramas")}
    assert copyrights == {"[bold red]pwned[/bold red]"}  # markup is escaped when shown
