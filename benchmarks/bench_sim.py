"""Benchmark the street-view simulator: image rendering, and the HTTP server on loopback.

What it measures:

1. ``World.render`` at 256 x 256: the median (and 90th percentile) wall time per JPEG over
   ``--renders`` calls, cycling through 24 panoramas near Bangalore and 8 headings, after
   one untimed warm-up; once on the main thread and once on a worker thread, which is
   where the server renders (glibc gives threads other malloc arenas, and a renderer that
   allocates big temporaries can pay page faults there).
2. ``SimServer`` throughput in requests/s. The server runs in a child process, so that the
   clients do not share its interpreter lock; N = 1, 8 and 32 concurrent clients (asyncio
   tasks, one keep-alive connection each) send requests back to back for ``--seconds``,
   and answered requests / wall time is the rate; median of ``--repeats`` runs. The
   endpoints are measured separately: metadata by ``location`` (a nearest-panorama search
   within 50 m), and 256 x 256 images by ``pano`` id with varying headings. Every answer
   must be a 200. ``--client raw`` (default) is a minimal HTTP/1.1 client, so the rate is
   the server's; ``--client httpx`` uses ``httpx.AsyncClient``, as the scraper does (on a
   small machine httpx itself is then the bottleneck for metadata).

Targets: rendering at most 10 ms per 256 x 256 image (median, main thread); with 8
clients, at least 1,000 metadata requests/s, and images at least 70% of the rate that
rendering alone allows on one worker thread (the server's own overhead stays small).

Run it with::

    .venv/bin/python benchmarks/bench_sim.py [--repeats N] [--seconds S] [--client raw|httpx]
    .venv/bin/python benchmarks/bench_sim.py --quick    # one short run of everything

The script prints machine facts, the table and one PASS/MISS line per target, and always
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import numpy as np
from machine import machine_line  # benchmarks/machine.py

from geotag.sim.world import Panorama, World

SEED = 0
CENTRE = (12.97, 77.59)  # Bangalore: dense roads, so every probe finds a panorama
PANORAMAS = 24
HEADINGS = tuple(range(0, 360, 45))
SIZE = 256
CLIENTS = (1, 8, 32)
DEFAULT_REPEATS = 3
DEFAULT_SECONDS = 2.0
DEFAULT_RENDERS = 200

RENDER_TARGET_MS = 10.0
METADATA_TARGET_RPS = 1000.0
TARGET_CLIENTS = 8
IMAGE_SHARE_TARGET = 0.7

# The child process: start a server, tell the parent where, serve until SIGINT/SIGTERM.
SERVER_SCRIPT = """
import signal, sys
from geotag.sim.server import SimServer
from geotag.sim.world import World
signal.signal(signal.SIGTERM, signal.default_int_handler)
world = World(seed=int(sys.argv[1]))
world.nearest(float(sys.argv[2]), float(sys.argv[3]), radius_m=5000)  # load the land mask
server = SimServer(world).start()
print(server.base_url, flush=True)
server.serve_forever()
"""


Target = tuple[str, dict[str, str | int | float]]  # path, query parameters


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    case: str
    clients: int | None
    value: float
    unit: str
    notes: str = ""


def find_panoramas(world: World, count: int) -> list[Panorama]:
    """Distinct panoramas on a spiral of probes around ``CENTRE``."""
    found: dict[str, Panorama] = {}
    step = 0
    while len(found) < count and step < 10 * count:
        angle, distance = step * 2.4, 0.004 * (1 + step)
        lat = CENTRE[0] + distance * np.sin(angle)
        lon = CENTRE[1] + distance * np.cos(angle)
        pano = world.nearest(float(lat), float(lon), radius_m=3000)
        if pano is not None:
            found[pano.pano_id] = pano
        step += 1
    return list(found.values())


def render_times_ms(world: World, panoramas: Sequence[Panorama], renders: int) -> list[float]:
    world.render(panoramas[0].pano_id, width=SIZE, height=SIZE)  # fonts, caches
    times = []
    for i in range(renders):
        pano = panoramas[i % len(panoramas)]
        heading = HEADINGS[(i // len(panoramas)) % len(HEADINGS)]
        started = time.perf_counter()
        world.render(pano.pano_id, heading=heading, width=SIZE, height=SIZE)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def percentile_note(times: Sequence[float]) -> str:
    return f"median; p90 {float(np.percentile(times, 90)):.1f} ms"


def request_targets(panoramas: Sequence[Panorama], endpoint: str) -> list[Target]:
    if endpoint == "metadata":
        return [
            ("/maps/api/streetview/metadata", {"location": f"{p.lat:.6f},{p.lon:.6f}"})
            for p in panoramas
        ]
    return [
        ("/maps/api/streetview", {"pano": p.pano_id, "size": f"{SIZE}x{SIZE}", "heading": h})
        for h in HEADINGS
        for p in panoramas
    ]


async def hammer(
    base_url: str, targets: Sequence[Target], clients: int, seconds: float, client: str = "raw"
) -> float:
    """Requests/s answered with 200 by ``clients`` keep-alive clients in ``seconds``."""
    run_one = _raw_client if client == "raw" else _httpx_client
    loop = asyncio.get_running_loop()
    ready = [loop.create_future() for _ in range(clients)]
    go: asyncio.Future[float] = loop.create_future()
    tasks = [
        asyncio.ensure_future(run_one(base_url, targets[i::clients] or targets, ready[i], go))
        for i in range(clients)
    ]
    # Connections (and httpx's SSL contexts, ~20 ms each) are set up before the clock starts.
    await asyncio.gather(*ready)
    started = time.perf_counter()
    go.set_result(started + seconds)
    counts = await asyncio.gather(*tasks)
    return sum(counts) / (time.perf_counter() - started)


async def _raw_client(
    base_url: str,
    targets: Sequence[Target],
    ready: asyncio.Future[None],
    go: asyncio.Future[float],
) -> int:
    """A minimal HTTP/1.1 keep-alive client: the rate then measures the server, not httpx."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    requests = [
        f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        for path, params in targets
    ]
    reader, writer = await asyncio.open_connection(host, int(port))
    ready.set_result(None)
    deadline, count = await go, 0
    try:
        while time.perf_counter() < deadline:
            writer.write(requests[count % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the server answered {head[:12].decode()}")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            count += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return count


async def _httpx_client(
    base_url: str,
    targets: Sequence[Target],
    ready: asyncio.Future[None],
    go: asyncio.Future[float],
) -> int:
    """What the scraper uses: one keep-alive ``httpx.AsyncClient``."""
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        ready.set_result(None)
        deadline, count = await go, 0
        while time.perf_counter() < deadline:
            path, params = targets[count % len(targets)]
            response = await http.get(path, params=params)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
            count += 1
    return count


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(SEED), *map(str, CENTRE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://"):
        process.kill()
        raise RuntimeError("the simulator server did not start")
    return process, base_url


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def throughput_rows(
    panoramas: Sequence[Panorama], repeats: int, seconds: float, client: str
) -> list[Row]:
    process, base_url = start_server()
    rows = []
    try:
        for endpoint in ("metadata", "image"):
            targets = request_targets(panoramas, endpoint)
            asyncio.run(hammer(base_url, targets, 4, min(seconds, 0.5)))  # warm the server
            for clients in CLIENTS:
                rates = [
                    asyncio.run(hammer(base_url, targets, clients, seconds, client))
                    for _ in range(repeats)
                ]
                spread = f"runs {min(rates):,.0f}..{max(rates):,.0f}" if repeats > 1 else ""
                rows.append(
                    Row(
                        f"{endpoint} ({client})", clients, statistics.median(rates), "req/s", spread
                    )
                )
    finally:
        stop_server(process)
    return rows


def format_table(rows: Sequence[Row]) -> list[str]:
    header = ("case", "clients", "value", "unit", "notes")
    body = [
        (
            row.case,
            "-" if row.clients is None else str(row.clients),
            f"{row.value:,.1f}" if row.unit != "req/s" else f"{row.value:,.0f}",
            row.unit,
            row.notes,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(line: Sequence[str]) -> str:
        cells = [
            text.rjust(width) if i in (1, 2) else text.ljust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [render(header), "  ".join("-" * w for w in widths), *map(render, body)]


def verdicts(render_ms: float, thread_render_ms: float, rows: Sequence[Row]) -> list[str]:
    def rate(endpoint: str) -> float:
        return next(
            r.value
            for r in rows
            if r.case.startswith(f"{endpoint} (") and r.clients == TARGET_CLIENTS
        )

    metadata, image = rate("metadata"), rate("image")
    render_bound = 1000.0 / thread_render_ms
    checks = [
        (
            render_ms <= RENDER_TARGET_MS,
            f"render {SIZE}x{SIZE} <= {RENDER_TARGET_MS:g} ms ({render_ms:.1f} ms)",
        ),
        (
            metadata >= METADATA_TARGET_RPS,
            f"metadata >= {METADATA_TARGET_RPS:,.0f} req/s with {TARGET_CLIENTS} clients "
            f"({metadata:,.0f})",
        ),
        (
            image >= IMAGE_SHARE_TARGET * render_bound,
            f"images >= {IMAGE_SHARE_TARGET:.0%} of a worker thread's render rate "
            f"{render_bound:,.0f}/s with {TARGET_CLIENTS} clients ({image:,.0f})",
        ),
    ]
    return [f"{'PASS' if ok else 'MISS'}  {text}" for ok, text in checks]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="runs per rate")
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="length of one throughput run"
    )
    parser.add_argument("--renders", type=int, default=DEFAULT_RENDERS, help="timed renders")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="the load generator"
    )
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0 or args.renders < 1:
        parser.error("--repeats, --seconds and --renders must be positive")
    if args.quick:
        args.repeats, args.seconds, args.renders = 1, 0.3, 20
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_line())
    print(f"httpx: {httpx.__version__}")
    world = World(seed=SEED)
    panoramas = find_panoramas(world, PANORAMAS)
    main_times = render_times_ms(world, panoramas, args.renders)
    with ThreadPoolExecutor(1) as worker:
        thread_times = worker.submit(render_times_ms, world, panoramas, args.renders).result()
    render_ms, thread_render_ms = statistics.median(main_times), statistics.median(thread_times)
    rows = [
        Row(f"World.render {SIZE}x{SIZE}", None, render_ms, "ms", percentile_note(main_times)),
        Row(
            f"World.render {SIZE}x{SIZE}, worker thread",
            None,
            thread_render_ms,
            "ms",
            f"{percentile_note(thread_times)}; x{thread_render_ms / render_ms:.2f} main thread",
        ),
        *throughput_rows(panoramas, args.repeats, args.seconds, args.client),
    ]
    print(
        f"{len(panoramas)} panoramas, {args.renders} renders, {args.repeats} run(s) of "
        f"{args.seconds:g} s per rate"
    )
    print("\n".join(format_table(rows)))
    print("\n".join(verdicts(render_ms, thread_render_ms, rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
