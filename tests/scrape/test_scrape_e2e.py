"""``geotag scrape`` end to end: the real simulator on 127.0.0.1, real sockets, real files.

What each test proves is read back from three independent places: the server's request
log (what was really sent and answered), the simulated world (what the answers must be),
and the workspace (manifest, files, images.parquet).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from geotag.cli import app
from geotag.dataset import IMAGE_COLUMNS
from geotag.errors import AuthError, InputError
from geotag.geo.locate import CellLocator
from geotag.gridfile import load_grid
from geotag.scrape.manifest import Manifest, export_images
from geotag.scrape.paths import image_relpath
from geotag.scrape.providers.base import Found, ImageOptions, Point
from geotag.scrape.registry import make_provider
from geotag.scrape.scraper import LoopSettings, ScrapeLoop
from geotag.sim.defaults import DEFAULT_USER_FRACTION
from geotag.sim.server import SimServer
from geotag.sim.world import World
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.workspace import Workspace
from tests.conftest import snapshot
from tests.scrape.conftest import (
    BBOX,
    HEADINGS,
    META_PATH,
    RADIUS_M,
    SIZE,
    Cells,
    image_answers,
    image_files,
    is_valid_jpeg,
    nearest_panoramas,
    points_of,
    sha,
    sim_options,
    unique_panoramas,
)

DOCUMENTED_COLUMNS = [
    "path",
    "pano_id",
    "lat",
    "lon",
    "heading",
    "cell_id",
    "captured",
    "copyright",
    "provider",
    "license",
]


def manifest_rows(ws: Workspace, sql: str) -> list[tuple]:
    """Read the manifest through a separate connection, as another process would."""
    db = sqlite3.connect(ws.manifest)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def expected_images(world: World, ws: Workspace) -> dict[tuple[str, float], bytes]:
    """(pano_id, heading) -> the JPEG a fault-free simulator serves, for every inside pano."""
    panos = unique_panoramas(nearest_panoramas(world, points_of(ws)).values())
    cell_of = Cells(ws)
    return {
        (pano_id, heading): world.render(pano_id, heading=heading, width=SIZE, height=SIZE)
        for pano_id, pano in panos.items()
        if cell_of(pano.lat, pano.lon) != -1
        for heading in HEADINGS
    }


def assert_complete_and_intact(ws: Workspace, world: World) -> pd.DataFrame:
    """Every expected image is in images.parquet once, on disk, byte-identical to the world."""
    expected = expected_images(world, ws)
    table = pd.read_parquet(ws.images_parquet)
    keys = list(zip(table["pano_id"], table["heading"], strict=True))
    assert len(keys) == len(set(keys)), "an image is listed twice"
    assert table["path"].is_unique
    assert set(keys) == set(expected)
    for row in table.itertuples(index=False):
        data = (ws.root / row.path).read_bytes()
        assert is_valid_jpeg(data), row.path
        assert data == expected[(row.pano_id, row.heading)], row.path
    assert sorted(str(p.relative_to(ws.root)) for p in image_files(ws)) == sorted(table["path"])
    return table


# -- a full run ----------------------------------------------------------------------------
def test_full_run_fetches_each_panorama_once_and_labels_by_true_location(
    ws: Workspace, world: World
) -> None:
    points = points_of(ws)
    snapped = nearest_panoramas(world, points)
    panos = unique_panoramas(snapped.values())
    by_pano: dict[str, int] = defaultdict(int)
    for pano in snapped.values():
        if pano is not None:
            by_pano[pano.pano_id] += 1
    assert max(by_pano.values()) >= 2, "the fixture must make two points find one panorama"
    cell_of = Cells(ws)
    inside = {k: p for k, p in panos.items() if cell_of(p.lat, p.lon) != -1}
    assert len(inside) >= 10

    with SimServer(world) as server:
        result = run_scrape(ws, sim_options(server.base_url))
        log = server.requests

    # One metadata request per point, one image request per (unique panorama, heading).
    assert sum(1 for r in log if r.path == META_PATH) == len(points)
    assert image_answers(log) == len(inside) * len(HEADINGS)
    assert all(r.status == 200 for r in log)
    counts = result.counts
    assert counts.lookups_done == len(points)
    assert counts.no_imagery == sum(1 for p in snapped.values() if p is None)
    assert counts.duplicates == sum(n - 1 for n in by_pano.values())
    assert counts.images_done == len(inside) * len(HEADINGS)
    assert result.images_exported == len(inside) * len(HEADINGS)

    table = assert_complete_and_intact(ws, world)
    assert set(DOCUMENTED_COLUMNS) <= set(table.columns) == set(IMAGE_COLUMNS)
    assert (table["group"] == table["pano_id"]).all()  # folds keep a panorama together
    assert (table["provider"] == "sim").all()
    assert table["license"].str.contains("simulated").all()
    for row in table.itertuples(index=False):
        pano = inside[row.pano_id]
        assert (row.lat, row.lon) == (pano.lat, pano.lon)  # the panorama's, not the point's
        assert (row.captured, row.copyright) == (pano.date, pano.copyright)
        assert row.cell_id == cell_of(pano.lat, pano.lon)
        assert row.path == image_relpath(row.cell_id, row.pano_id, row.heading)
    # A point that snapped across a cell border is labelled by the panorama's cell.
    moved = [
        p
        for pid, p in snapped.items()
        if p is not None
        and p.pano_id in inside
        and cell_of(p.lat, p.lon) != int(points.set_index("point_id").at[pid, "cell_id"])
    ]
    assert moved, "the fixture must have a panorama in another cell than its point"


def test_sim_provider_without_base_url_starts_its_own_simulator(
    ws: Workspace, world: World
) -> None:
    result = run_scrape(ws, sim_options(None, provider_options={"seed": 0}))
    assert result.counts.images_done > 0
    assert_complete_and_intact(ws, world)
    assert ws.stage_settings("scrape")["sim_seed"] == 0


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_the_built_in_simulator_takes_the_share_of_photospheres(
    ws: Workspace, share: float
) -> None:
    image = ImageOptions(headings=(0.0,), size=SIZE, radius_m=RADIUS_M, source="default")
    run_scrape(ws, sim_options(None, image=image, provider_options={"photospheres": share}))
    table = pd.read_parquet(ws.images_parquet)
    by_users = table["copyright"] != "© Google"
    assert len(table) >= 10 and by_users.mean() == share
    assert ws.stage_settings("scrape")["sim_photospheres"] == share


def test_the_command_line_hands_the_simulator_its_options(ws: Workspace) -> None:
    image = ["--headings", "0", "--size", str(SIZE), "--radius", f"{RADIUS_M:g}"]
    image += ["--source", "default"]
    sim = ["--provider", "sim", "--seed", "3", "--photospheres", "1"]
    result = CliRunner().invoke(app, ["scrape", "-w", str(ws.root), *sim, *image, "--rate", "500"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(ws.images_parquet)
    world_3 = World(seed=3, user_fraction=1.0)
    snapped = nearest_panoramas(world_3, points_of(ws), source="default")
    assert set(table["pano_id"]) <= set(unique_panoramas(snapped.values()))  # seed 3's world
    assert len(table) > 0 and (table["copyright"] != "© Google").all()  # all photospheres
    # geotag.toml keeps the keys it always had, so existing workspaces read the same.
    text = ws.settings_path.read_text(encoding="utf-8")
    assert "sim_seed = 3\n" in text and "sim_photospheres = 1.0\n" in text
    assert "provider_options" not in text


def test_recorded_settings_name_each_provider_option_after_its_provider() -> None:
    settings = ScrapeOptions(provider="sim").settings()
    assert (settings["sim_seed"], settings["sim_photospheres"]) == (0, DEFAULT_USER_FRACTION)
    settings = ScrapeOptions(provider="sim", provider_options={"seed": 5}).settings()
    assert (settings["sim_seed"], settings["sim_photospheres"]) == (5, DEFAULT_USER_FRACTION)
    assert not any(k.startswith("sim_") for k in ScrapeOptions(provider="google").settings())


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"sede": 1}, "the sim provider has no option 'sede'; it takes seed, photospheres"),
        ({"seed": "3"}, "option 'seed' of the sim provider must be int; got '3'"),
        ({"seed": 1.5}, "option 'seed' of the sim provider must be int; got 1.5"),
        (
            {"photospheres": True},
            "option 'photospheres' of the sim provider must be float; got True",
        ),
    ],
    ids=["unknown", "text", "fraction", "bool"],
)
def test_a_bad_provider_option_is_refused_in_one_line_before_anything_starts(
    ws: Workspace, given: dict[str, object], message: str
) -> None:
    before = snapshot(ws.root)
    with pytest.raises(InputError) as raised:
        run_scrape(ws, sim_options(None, provider_options=given))
    assert str(raised.value) == message
    assert snapshot(ws.root) == before


# -- faults --------------------------------------------------------------------------------
def test_faults_every_image_arrives_exactly_once_and_intact(ws: Workspace, world: World) -> None:
    with SimServer(world, seed=7, fail_rate=0.3) as server:
        result = run_scrape(ws, sim_options(server.base_url))
        log = server.requests
    statuses = {r.status for r in log}
    assert {500, 503, "drop", "truncate"} <= statuses, statuses
    assert result.counts.retries > 0
    totals = result.totals
    assert totals.get("images_failed", 0) == 0 and totals.get("images_pending", 0) == 0
    assert totals.get("points_failed", 0) == 0
    table = assert_complete_and_intact(ws, world)
    # Each image was delivered complete exactly once: no download was repeated.
    assert image_answers(log) == len(table)


# -- 429 with Retry-After ------------------------------------------------------------------
def test_429_retry_after_is_honoured(ws: Workspace, world: World) -> None:
    sent: dict[tuple, list[float]] = defaultdict(list)
    refused: dict[tuple, list[float]] = defaultdict(list)

    def identity(url: httpx.URL) -> tuple:
        query = parse_qs(url.query.decode())
        return (url.path, *(query.get(k, [""])[0] for k in ("location", "pano", "heading")))

    async def on_request(request: httpx.Request) -> None:
        sent[identity(request.url)].append(time.monotonic())

    async def on_response(response: httpx.Response) -> None:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            refused[identity(response.request.url)].append(time.monotonic())

    # No keep-alive, so nothing outlives the run's event loop.
    client = httpx.AsyncClient(
        event_hooks={"request": [on_request], "response": [on_response]},
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    image = ImageOptions(headings=(0.0, 180.0), size=SIZE, radius_m=RADIUS_M)
    with SimServer(world, qps=8) as server:
        result = run_scrape(
            ws, sim_options(server.base_url, image=image, rate=100.0, shard=(0, 3)), client=client
        )
        log = server.requests
    asyncio.run(client.aclose())

    assert sum(1 for r in log if r.status == 429) >= 3, "the quota must have been hit"
    assert result.counts.retries >= 3
    totals = result.totals
    assert totals.get("images_done", 0) > 0
    assert set(totals) & {"images_failed", "images_pending", "points_failed"} == set()
    checked = 0
    for key, refusals in refused.items():
        attempts = sorted(sent[key])
        for refused_at in refusals:
            later = [t for t in attempts if t > refused_at]
            assert later, f"{key} was never retried"
            assert later[0] - refused_at >= 1.0 - 0.02, "retried before Retry-After"
            checked += 1
    assert checked >= 3


# -- rate limit ----------------------------------------------------------------------------
def test_rate_measured_at_the_server_stays_at_or_under_rate(ws: Workspace, world: World) -> None:
    rate = 50.0
    image = ImageOptions(
        headings=(0.0, 60.0, 120.0, 180.0, 240.0, 300.0), size=SIZE, radius_m=RADIUS_M
    )
    with SimServer(world) as server:
        options = sim_options(server.base_url, image=image, rate=rate, concurrency=8)
        result = run_scrape(ws, options)
        times = sorted(r.time for r in server.requests)
    assert len(times) >= 100
    assert result.counts.requests == len(times)
    # A burst of one token: any window of one second holds at most rate + 1 requests;
    # +2 for requests the server's threads saw late, then early.
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    overall = (len(times) - 1) / (times[-1] - times[0])
    assert busiest <= rate + 3, f"{busiest} requests within 1 s"
    assert overall <= rate * 1.03, f"{overall:.1f} requests/s"


#: ``python -m geotag`` that takes Ctrl-C even when started from a background job, which
#: inherits SIGINT ignored (then Python installs no KeyboardInterrupt handler).
CHILD = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from geotag.cli import main; main()"
)


def scrape_command(ws: Workspace, base_url: str) -> list[str]:
    """``geotag scrape`` of the simulator in a child process, slow enough to interrupt."""
    return [
        sys.executable,
        "-c",
        CHILD,
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
        f"{RADIUS_M:g}",
        "--concurrency",
        "2",
        "--rate",
        "1000",
    ]


def wait_for_images(ws: Workspace, process: subprocess.Popen, count: int) -> None:
    """Return once ``count`` images are in place, while the child is still running."""
    deadline = time.monotonic() + 60
    while len(list(ws.images_dir.rglob("*.jpg"))) < count:
        assert process.poll() is None, "the scrape ended before it could be interrupted"
        assert time.monotonic() < deadline, "the scrape made no progress"
        time.sleep(0.01)


# -- kill -9 -------------------------------------------------------------------------------
def test_kill_9_mid_run_then_rerun_loses_and_repeats_nothing(ws: Workspace, world: World) -> None:
    expected = expected_images(world, ws)
    with SimServer(world, latency_ms=40) as server:
        command = scrape_command(ws, server.base_url)
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ws.root
        )
        try:
            wait_for_images(ws, process, 8)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
        assert process.returncode == -signal.SIGKILL
        # Requests the child sent just before it died may still be read by the server;
        # let them land, so that every request logged after this is the rerun's.
        time.sleep(0.2)
        killed_at = time.monotonic()

        done_before = dict(
            ((pano, heading), (path, digest))
            for pano, heading, path, digest in manifest_rows(
                ws,
                "SELECT pano_id, heading, path, sha256 FROM images WHERE status = 'done'",
            )
        )
        assert 0 < len(done_before) < len(expected), "killed too late or too early"
        for path, digest in done_before.values():  # nothing marked done is lost or corrupt
            assert sha((ws.root / path).read_bytes()) == digest

        result = run_scrape(ws, sim_options(server.base_url))
        log = server.requests

    assert_complete_and_intact(ws, world)
    assert not list(ws.root.rglob("*.part"))
    fetched_again = image_answers(r for r in log if r.time >= killed_at)
    counts = result.counts
    # Every image fetched by the rerun was a new download, and done ones were not fetched:
    assert fetched_again == counts.images_done
    assert counts.images_done + counts.images_existing + len(done_before) == len(expected)
    done_after = dict(
        ((pano, heading), (path, digest))
        for pano, heading, path, digest in manifest_rows(
            ws, "SELECT pano_id, heading, path, sha256 FROM images WHERE status = 'done'"
        )
    )
    assert {k: done_after[k] for k in done_before} == done_before
    # Across both runs at most the requests in flight at the kill (concurrency 2) repeat.
    assert image_answers(log) <= len(expected) + 2


def test_a_second_scrape_of_one_workspace_is_refused_until_the_first_is_gone(
    ws: Workspace, world: World
) -> None:
    args = ["scrape", "-w", str(ws.root), "--provider", "sim", "--size", str(SIZE)]
    with SimServer(world, latency_ms=40) as server:
        first = subprocess.Popen(
            scrape_command(ws, server.base_url), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=ws.root,
        )  # fmt: skip
        try:
            wait_for_images(ws, first, 4)
            second = CliRunner().invoke(app, [*args, "--base-url", server.base_url])
            answered = image_answers(server.requests)
            assert first.poll() is None  # still running: the refusal was the lock's
            os.kill(first.pid, signal.SIGKILL)  # its lock dies with it
        finally:
            first.kill()
            first.wait()
        third = CliRunner().invoke(
            app, [*args, "--base-url", server.base_url, "--radius", str(RADIUS_M)]
        )
    assert second.exit_code == 1, second.output
    assert f"is in use by `geotag scrape` (pid {first.pid}" in second.stderr
    assert answered >= 4  # the first had downloaded while the second was refused
    assert third.exit_code == 0, third.output  # a dead holder's lock is taken over
    assert_complete_and_intact(ws, world)


def test_ctrl_c_writes_images_parquet_and_exits_130(ws: Workspace, world: World) -> None:
    with SimServer(world, latency_ms=40) as server:
        process = subprocess.Popen(
            scrape_command(ws, server.base_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ws.root,
        )
        try:
            wait_for_images(ws, process, 8)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 130, (out, err)
    assert "Interrupted" in err and "Traceback" not in out + err
    done = manifest_rows(ws, "SELECT path FROM images WHERE status = 'done' ORDER BY path")
    table = pd.read_parquet(ws.images_parquet)
    assert 0 < len(done) < len(expected_images(world, ws))
    assert sorted(table["path"]) == [path for (path,) in done]
    assert all(is_valid_jpeg((ws.root / p).read_bytes()) for p in table["path"])


# -- a bad key -----------------------------------------------------------------------------
def test_a_bad_key_stops_at_once_and_keeps_earlier_work(ws: Workspace, world: World) -> None:
    points = points_of(ws)
    with SimServer(world, key="right-key") as server:
        first = run_scrape(ws, sim_options(server.base_url, api_key="right-key", shard=(0, 2)))
        assert first.images_exported > 0
        before_parquet = pd.read_parquet(ws.images_parquet)
        before_manifest = manifest_rows(ws, "SELECT * FROM images ORDER BY path")
        seen = len(server.requests)
        with pytest.raises(AuthError) as raised:
            run_scrape(ws, sim_options(server.base_url, api_key="wrong-key-42"))
        refused = server.requests[seen:]
    pending = len(points) - sum(1 for p in points["point_id"] if p % 2 == 0)
    assert pending >= 10
    assert 1 <= len(refused) <= 2 * 4, "the run went on after the key was refused"
    assert "REQUEST_DENIED" in str(raised.value)
    assert "wrong-key-42" not in str(raised.value)
    pd.testing.assert_frame_equal(pd.read_parquet(ws.images_parquet), before_parquet)
    assert manifest_rows(ws, "SELECT * FROM images ORDER BY path") == before_manifest


def test_a_bad_key_on_the_command_line_is_one_line_without_the_key(
    ws: Workspace, world: World
) -> None:
    with SimServer(world, key="right-key") as server:
        result = CliRunner().invoke(
            app,
            [
                "scrape",
                "-w",
                str(ws.root),
                "--provider",
                "sim",
                "--base-url",
                server.base_url,
                "--api-key",
                "wrong-key-42",
                "--size",
                str(SIZE),
            ],
        )
        seen = len(server.requests)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "REQUEST_DENIED" in lines[0]
    assert "Traceback" not in result.output
    assert "wrong-key-42" not in result.output
    assert seen <= 2 * 8  # default concurrency 8


# -- outside the region --------------------------------------------------------------------
def test_panoramas_outside_the_region_are_dropped_and_counted(ws: Workspace, world: World) -> None:
    west, south, _, north = BBOX
    grid = load_grid(ws)
    locator = CellLocator(grid, grid.cells_in_plane())
    lats = [south + (north - south) * (i + 0.5) / 16 for i in range(16)]
    lons = [west + 0.002] * len(lats)  # about 150 m inside the western edge
    edge = pd.DataFrame(
        {
            "point_id": range(len(lats)),
            "cell_id": [locator.cell(la, lo) for la, lo in zip(lats, lons, strict=True)],
            "lat": lats,
            "lon": lons,
        }
    )
    edge.to_parquet(ws.points_parquet, index=False)
    radius = 3000.0
    panos = unique_panoramas(nearest_panoramas(world, edge, radius_m=radius).values())
    region = Cells(ws)
    outside = {k for k, p in panos.items() if not region.inside(p.lat, p.lon)}
    inside = set(panos) - outside
    assert len(outside) >= 2 and len(inside) >= 2

    image = ImageOptions(headings=(0.0,), size=SIZE, radius_m=radius)
    with SimServer(world) as server:
        result = run_scrape(ws, sim_options(server.base_url, image=image))
        log = server.requests

    assert result.counts.outside_region == len(outside)
    assert result.totals["outside_region"] == len(outside)
    recorded = dict(manifest_rows(ws, "SELECT pano_id, cell_id FROM panoramas"))
    assert {k for k, c in recorded.items() if c == -1} == outside
    assert not manifest_rows(
        ws, "SELECT * FROM images i JOIN panoramas p USING (provider, pano_id) WHERE cell_id = -1"
    )
    table = pd.read_parquet(ws.images_parquet)
    assert set(table["pano_id"]) == inside
    assert (table["cell_id"] >= 0).all()
    assert image_answers(log) == len(inside)  # nothing was downloaded only to be dropped


# -- shards, dry run, budget ---------------------------------------------------------------
def test_shards_are_disjoint_and_cover_every_point(
    ws: Workspace, world: World, tmp_path: Path
) -> None:
    import shutil

    all_ids = set(points_of(ws)["point_id"])
    shards = []
    with SimServer(world) as server:
        for index in range(3):
            copy = Workspace(tmp_path / f"shard{index}")
            shutil.copytree(ws.root, copy.root)
            before = len(server.requests)
            result = run_scrape(copy, sim_options(server.base_url, shard=(index, 3)))
            looked_up = {r[0] for r in manifest_rows(copy, "SELECT point_id FROM points")}
            metadata = sum(1 for r in server.requests[before:] if r.path == META_PATH)
            assert result.counts.lookups_done == metadata == len(looked_up) > 0
            shards.append(looked_up)
    assert sum(len(s) for s in shards) == len(all_ids)
    assert set().union(*shards) == all_ids
    assert copy.stage_settings("scrape")["shard"] == "2/3"


def test_dry_run_sends_nothing_and_reports_the_most_it_could_do(
    ws: Workspace, world: World
) -> None:
    n = len(points_of(ws))
    with SimServer(world) as server:
        result = run_scrape(ws, sim_options(server.base_url, dry_run=True))
        assert server.requests == []
    plan = result.dry_run
    assert plan is not None
    assert (plan.lookups, plan.pending_images) == (n, 0)
    assert plan.max_images == n * len(HEADINGS)
    assert plan.max_requests == n + n * len(HEADINGS)
    assert plan.price_usd is None  # the simulator is free
    assert not ws.images_dir.exists() and not ws.images_parquet.exists()

    with SimServer(world) as server:
        result = run_scrape(ws, sim_options(server.base_url, dry_run=True, max_images=5))
        assert server.requests == []
    assert result.dry_run is not None and result.dry_run.max_images == 5


def test_max_images_stops_after_exactly_n_and_a_rerun_continues(
    ws: Workspace, world: World
) -> None:
    expected = expected_images(world, ws)
    with SimServer(world) as server:
        first = run_scrape(ws, sim_options(server.base_url, max_images=7))
        assert image_answers(server.requests) == 7
        assert first.counts.images_done == first.images_exported == 7
        assert len(pd.read_parquet(ws.images_parquet)) == 7
        assert len(image_files(ws)) == 7
        plan = run_scrape(ws, sim_options(server.base_url, dry_run=True)).dry_run
        assert plan is not None and plan.pending_images > 0

        second = run_scrape(ws, sim_options(server.base_url))
        assert image_answers(server.requests) == len(expected)
    assert second.counts.images_done == len(expected) - 7
    assert_complete_and_intact(ws, world)


# -- path sanitising -----------------------------------------------------------------------
HOSTILE_IDS = (
    "../../x",
    "../../../../../../tmp/geotag-escape",
    "/etc/passwd",
    "a/../../b",
    "..",
    "C:\\evil",
    "x\x00y",
    "../../x/",  # sanitises like the first one; must not share its file
)


class HostileProvider:
    """Answers every point with a panorama whose id tries to leave the images folder."""

    name = "hostile"
    default_rate = 1000.0

    def __init__(self, jpeg: bytes) -> None:
        self.jpeg = jpeg

    async def lookup(self, http: object, point: Point) -> Found | None:
        return Found(
            pano_id=HOSTILE_IDS[point.point_id],
            lat=point.lat,
            lon=point.lon,
            captured=None,
            copyright=None,
            license="test",
            headings=(0.0, 90.0),
        )

    async def fetch(self, http: object, found: Found, heading: float) -> bytes:
        return self.jpeg


def test_hostile_panorama_ids_cannot_escape_the_images_folder(
    ws: Workspace, world: World, tmp_path: Path
) -> None:
    points = points_of(ws).head(len(HOSTILE_IDS))
    jpeg = world.render(
        next(iter(unique_panoramas(nearest_panoramas(world, points).values()))),
        width=SIZE,
        height=SIZE,
    )
    files_before = {p for p in tmp_path.rglob("*") if p.is_file()}
    grid = load_grid(ws)
    with Manifest(ws.manifest) as manifest:
        jobs = [
            (Point(int(p.point_id), int(p.cell_id), p.lat, p.lon), 0)
            for p in points.itertuples(index=False)
        ]
        manifest.add_points("hostile", [job[0] for job in jobs])
        loop = ScrapeLoop(
            root=ws.root,
            provider=HostileProvider(jpeg),
            manifest=manifest,
            locator=CellLocator(grid, grid.cells_in_plane()),
            settings=LoopSettings(concurrency=2, rate=1000.0, max_attempts=1, max_images=None),
        )
        asyncio.run(loop.run(jobs, []))
        export_images(ws, manifest)

    assert loop.counts.images_done == 2 * len(HOSTILE_IDS)
    images_root = ws.images_dir.resolve()
    files = image_files(ws)
    assert len(files) == 2 * len(HOSTILE_IDS)  # no two ids share a file
    for file in files:
        assert file.resolve().parent.parent == images_root
        assert file.read_bytes() == jpeg
    table = pd.read_parquet(ws.images_parquet)
    assert set(table["pano_id"]) == set(HOSTILE_IDS)  # the ids themselves are kept as data
    for path in table["path"]:
        assert (ws.root / path).resolve().is_relative_to(images_root)
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - files_before
    workspace_files = {ws.images_parquet, ws.manifest}
    workspace_files |= {ws.manifest.with_name(ws.manifest.name + s) for s in ("-wal", "-shm")}
    assert all(ws.images_dir in p.parents or p in workspace_files for p in written), written
    assert not list(Path("/tmp").glob("geotag-escape*"))


# -- the order of file and manifest --------------------------------------------------------
class CheckingManifest(Manifest):
    """Fails the run if an image is marked done before its complete file is in place."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws.manifest)
        self.ws = ws
        self.checked = 0

    def image_done(
        self, provider: str, pano_id: str, heading: float, sha256: str, size: int, tries: int
    ) -> None:
        ((path,),) = manifest_rows(
            self.ws,
            f"SELECT path FROM images WHERE pano_id = '{pano_id}' AND heading = {heading}",
        )
        data = (self.ws.root / path).read_bytes()  # FileNotFoundError if not there yet
        assert (len(data), sha(data)) == (size, sha256) and is_valid_jpeg(data)
        assert not (self.ws.root / f"{path}.part").exists()
        self.checked += 1
        super().image_done(provider, pano_id, heading, sha256, size, tries)


def test_an_image_is_marked_done_only_once_its_file_is_complete(
    ws: Workspace, world: World
) -> None:
    grid = load_grid(ws)
    points = [
        Point(int(p.point_id), int(p.cell_id), float(p.lat), float(p.lon))
        for p in points_of(ws).itertuples(index=False)
    ]
    with SimServer(world) as server, CheckingManifest(ws) as manifest:
        manifest.add_points("sim", points)
        loop = ScrapeLoop(
            root=ws.root,
            provider=make_provider(
                "sim", ImageOptions(size=SIZE, radius_m=RADIUS_M), base_url=server.base_url
            ),
            manifest=manifest,
            locator=CellLocator(grid, grid.cells_in_plane()),
            settings=LoopSettings(concurrency=4, rate=500.0, max_attempts=3, max_images=None),
        )
        asyncio.run(loop.run([(p, 0) for p in points], []))
    assert manifest.checked == loop.counts.images_done > 0


# -- resume --------------------------------------------------------------------------------
def test_a_rerun_after_a_complete_run_sends_nothing(ws: Workspace, world: World) -> None:
    with SimServer(world) as server:
        first = run_scrape(ws, sim_options(server.base_url))
        assert first.counts.images_done > 0
        table = pd.read_parquet(ws.images_parquet)
        seen = len(server.requests)
        stale = ws.images_dir / "0" / "leftover.jpg.part"
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"\xff\xd8\xff half an image")
        second = run_scrape(ws, sim_options(server.base_url))
        assert server.requests[seen:] == []
    assert second.counts.lookups_done == second.counts.images_done == 0
    assert second.stale_parts_removed == 1 and not stale.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(ws.images_parquet), table)
    assert_complete_and_intact(ws, world)
