"""Benchmark ``geotag scrape`` against the street-view simulator on loopback.

The simulator (``SimServer``) runs in a child process, so its threads do not share an
interpreter lock with the scraper being measured. Its ``latency_ms`` holds every answer
back (default 30 ms), standing in for the network round trip to Google, which is what makes
a sequential scraper slow in real life. Every scrape gets a fresh copy of one workspace
(grid and points made once by ``run_grid`` / ``run_sample``), so every run downloads.

What it measures:

1. Rate fidelity: ``run_scrape`` with ``rate=100`` (``--rate 100``) and the default
   concurrency until 2,000 images are done (``max_images``). The achieved rate is taken at
   the server, over the whole run: (requests - 1) / (last arrival - first arrival), every
   metadata and image request counted, as the token bucket counts them. The notes add the
   most requests that arrived in any 1 s window (the bucket allows ``rate`` + 1).
2. Unthrottled throughput: images/s of ``run_scrape`` with concurrency 16 and
   ``rate=100000``, timed end to end (the call includes loading the grid, the manifest
   and writing images.parquet), side by side with a sequential ``httpx.Client`` loop like
   the original study's scraper: for each point one metadata request, then, for a
   panorama not seen before, one image request per heading, each written to a file. Same
   points, same server, same image size; the two run interleaved for ``--repeats`` runs
   after one untimed warm-up each (the server caches its tiles), and the table gives
   medians and the ratio of the medians. This runs at ``--latency-ms`` (the target) and,
   for reference, at 0 ms, where both sides are bound by CPU (the server renders every
   JPEG in one interpreter) and no target applies.

Targets: the achieved rate at least 95% of 100 requests/s; geotag at least 5x the
sequential loop's images/s with the emulated latency.

Run it with::

    .venv/bin/python benchmarks/bench_scrape.py [--repeats N] [--latency-ms MS] [--size PX]
    .venv/bin/python benchmarks/bench_scrape.py --quick    # one short run of everything

The script prints machine facts, the table and one PASS/MISS line per target, and always
exits 0.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from machine import machine_line  # benchmarks/machine.py

from geotag.scrape.providers.base import ImageOptions
from geotag.stages.grid import run_grid
from geotag.stages.sample import run_sample
from geotag.stages.scrape import ScrapeOptions, run_scrape
from geotag.workspace import Workspace

SEED = 0
# Central India: the simulator's roads are dense there, so about 97% of the points find a
# panorama within RADIUS_M and almost none of those lies outside the box.
BBOX = "76.5,20.0,79.5,24.0"
CELL_KM = 25.0
RADIUS_M = 3000.0
HEADINGS = (0.0, 90.0, 180.0, 270.0)
DEFAULT_SIZE = 128
DEFAULT_LATENCY_MS = 30.0
DEFAULT_REPEATS = 3

RATE = 100.0
RATE_IMAGES = 2000
QUICK_RATE_IMAGES = 200
RATE_SHARE_TARGET = 0.95
#: Points sampled for the rate run: enough for the images even if some find no panorama.
POINTS_PER_RATE_IMAGE = 0.3

CONCURRENCY = 16
UNTHROTTLED_RATE = 100_000.0
THROUGHPUT_POINTS = 150  # about 580 images
QUICK_THROUGHPUT_POINTS = 25
RATIO_TARGET = 5.0

METADATA_PATH = "/maps/api/streetview/metadata"
IMAGE_PATH = "/maps/api/streetview"
#: The simulator is started without a key, so it takes any; the scrapers still send one.
KEY = "bench"

# The child process: serve; every line on stdin asks for the requests logged since the
# last one, as JSON [[arrival (monotonic s), path, status], ...]; EOF or SIGTERM stops it.
SERVER_SCRIPT = """
import json, signal, sys
from geotag.sim.server import SimServer
signal.signal(signal.SIGTERM, signal.default_int_handler)
server = SimServer(seed=int(sys.argv[1]), latency_ms=float(sys.argv[2])).start()
print(server.base_url, flush=True)
seen = 0
try:
    for _ in sys.stdin:
        log = server.requests
        print(json.dumps([list(r) for r in log[seen:]]), flush=True)
        seen = len(log)
except KeyboardInterrupt:
    pass
finally:
    server.stop()
"""


@dataclass(frozen=True)
class Logged:
    """What the server saw of one request."""

    time: float
    path: str
    status: int | str


class SimProcess:
    """``SimServer`` in a child process, with its request log on demand."""

    def __init__(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self._process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(SEED), str(latency_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.base_url = self._process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.stop()
            raise RuntimeError("the simulator server did not start")

    def take_log(self) -> list[Logged]:
        """The requests the server logged since the last call, oldest first."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write("log\n")
        self._process.stdin.flush()
        return [Logged(*entry) for entry in json.loads(self._process.stdout.readline())]

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()  # EOF: the child stops its server and exits
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- workspaces -------------------------------------------------------------------------


class Workspaces:
    """A sampled workspace per point count, and fresh copies of them for each run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._grid = Workspace(root / "grid")
        run_grid(self._grid, bbox=BBOX, cell_km=CELL_KM)
        self._runs = 0

    def sampled(self, points: int) -> Workspace:
        """A workspace with ``points`` points over the grid (made once per count)."""
        workspace = Workspace(self.root / f"points-{points}")
        if not workspace.points_parquet.exists():
            shutil.copytree(self._grid.root, workspace.root)
            run_sample(workspace, total=points, seed=SEED)
        return workspace

    def fresh(self, base: Workspace) -> Workspace:
        """A copy of ``base`` with no manifest and no images: a run downloads everything."""
        self._runs += 1
        copy = Workspace(self.root / f"run-{self._runs}")
        shutil.copytree(base.root, copy.root)
        return copy

    def discard(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)


def image_options(size: int) -> ImageOptions:
    return ImageOptions(headings=HEADINGS, size=size, radius_m=RADIUS_M)


def read_points(workspace: Workspace) -> list[tuple[float, float]]:
    import pandas as pd

    frame = pd.read_parquet(workspace.points_parquet, columns=["lat", "lon"])
    return [(float(lat), float(lon)) for lat, lon in frame.itertuples(index=False)]


# -- the scrapers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One scrape: images written, requests the server saw, wall time."""

    images: int
    requests: int
    seconds: float
    statuses: dict[str, int]

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def server_statuses(log: Sequence[Logged]) -> dict[str, int]:
    return dict(Counter(str(entry.status) for entry in log))


def geotag_run(
    workspaces: Workspaces,
    base: Workspace,
    server: SimProcess,
    size: int,
    rate: float,
    concurrency: int | None = None,
    max_images: int | None = None,
) -> tuple[Run, list[Logged]]:
    """``run_scrape`` on a fresh copy of ``base``, timed end to end."""
    workspace = workspaces.fresh(base)
    options = ScrapeOptions(
        provider="sim",
        base_url=server.base_url,
        image=image_options(size),
        concurrency=concurrency if concurrency is not None else ScrapeOptions().concurrency,
        rate=rate,
        max_images=max_images,
    )
    server.take_log()  # forget whatever came before
    started = time.perf_counter()
    result = run_scrape(workspace, options)
    seconds = time.perf_counter() - started
    log = server.take_log()
    workspaces.discard(workspace.root)
    run = Run(result.counts.images_done, len(log), seconds, server_statuses(log))
    return run, log


def metadata_params(lat: float, lon: float) -> dict[str, str]:
    return {
        "location": f"{lat:.7f},{lon:.7f}",
        "radius": f"{RADIUS_M:g}",
        "source": "outdoor",
        "key": KEY,
    }


def warm_up(server: SimProcess, workspace: Workspace) -> None:
    """Ask for every point's panorama once, so the server has made the tiles around it.

    A cold simulator spends tens of milliseconds making each new tile of its world, which
    the real API does not; without this the first lookups of a run stall for most of a
    second and the rate run measures the simulator's start, not geotag's limiter.
    """
    points = read_points(workspace)
    with (
        httpx.Client(base_url=server.base_url, timeout=60) as http,
        ThreadPoolExecutor(CONCURRENCY) as pool,
    ):
        list(pool.map(lambda p: http.get(METADATA_PATH, params=metadata_params(*p)), points))
    server.take_log()


def sequential_scrape(
    base_url: str, points: Sequence[tuple[float, float]], size: int, folder: Path
) -> tuple[int, float]:
    """The original study's way: one blocking request after another. (images, seconds)."""
    folder.mkdir(parents=True)
    seen: set[str] = set()
    images = 0
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for lat, lon in points:
            metadata = http.get(METADATA_PATH, params=metadata_params(lat, lon)).json()
            pano = metadata.get("pano_id")
            if metadata.get("status") != "OK" or pano in seen:
                continue
            seen.add(pano)
            for heading in HEADINGS:
                response = http.get(
                    IMAGE_PATH,
                    params={
                        "size": f"{size}x{size}",
                        "pano": pano,
                        "heading": f"{heading:g}",
                        "fov": "90",
                        "pitch": "0",
                        "return_error_code": "true",
                        "key": KEY,
                    },
                )
                response.raise_for_status()
                (folder / f"{pano}_{heading:g}.jpg").write_bytes(response.content)
                images += 1
    return images, time.perf_counter() - started


def sequential_run(
    workspaces: Workspaces, base: Workspace, server: SimProcess, size: int
) -> tuple[Run, list[Logged]]:
    points = read_points(base)
    folder = workspaces.fresh(base).root / "images"
    server.take_log()
    images, seconds = sequential_scrape(server.base_url, points, size, folder)
    log = server.take_log()
    workspaces.discard(folder.parent)
    return Run(images, len(log), seconds, server_statuses(log)), log


# -- measurements -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    case: str
    latency_ms: float
    images: int | None
    requests: int | None
    seconds: float | None
    value: float
    unit: str
    target: str = "-"
    verdict: str = "-"
    notes: str = ""


def achieved_rate(times: Sequence[float]) -> float:
    """Requests/s between the first and the last arrival."""
    if len(times) < 2 or times[-1] <= times[0]:
        return math.nan
    return (len(times) - 1) / (times[-1] - times[0])


def busiest_second(times: Sequence[float]) -> int:
    """The most arrivals in any window of 1 s (``times`` sorted)."""
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def statuses_note(run: Run) -> str:
    others = {k: v for k, v in run.statuses.items() if k != "200"}
    return (
        "all 200" if not others else "non-200: " + ", ".join(f"{k} x{v}" for k, v in others.items())
    )


def rate_row(
    workspaces: Workspaces, server: SimProcess, images: int, size: int
) -> tuple[Row, bool]:
    points = math.ceil(images * POINTS_PER_RATE_IMAGE)
    base = workspaces.sampled(points)
    warm_up(server, base)
    run, log = geotag_run(workspaces, base, server, size, RATE, max_images=images)
    times = sorted(entry.time for entry in log)
    achieved = achieved_rate(times)
    share = achieved / RATE
    ok = run.images >= images and share >= RATE_SHARE_TARGET
    concurrency = ScrapeOptions().concurrency
    row = Row(
        case=f"rate {RATE:g}/s, concurrency {concurrency}",
        latency_ms=server.latency_ms,
        images=run.images,
        requests=run.requests,
        seconds=run.seconds,
        value=achieved,
        unit="req/s (server)",
        target=f">= {RATE_SHARE_TARGET:.0%} of {RATE:g}/s",
        verdict="PASS" if ok else "MISS",
        notes=(
            f"{share:.1%} of target; max {busiest_second(times)} in any 1 s; "
            f"{run.requests / run.seconds:.1f} req/s end to end; {statuses_note(run)}"
        ),
    )
    return row, ok


def spread(runs: Sequence[Run]) -> str:
    rates = [r.images_per_s for r in runs]
    return f"runs {min(rates):,.1f}..{max(rates):,.1f}" if len(rates) > 1 else ""


def throughput_rows(
    workspaces: Workspaces,
    server: SimProcess,
    points: int,
    size: int,
    repeats: int,
    judged: bool,
) -> tuple[list[Row], bool]:
    """geotag vs the sequential loop at this server's latency; interleaved repeats."""
    base = workspaces.sampled(points)
    geotag_run(workspaces, base, server, size, UNTHROTTLED_RATE, CONCURRENCY)  # warm-up
    sequential_run(workspaces, base, server, size)  # warm-up
    geotag_runs: list[Run] = []
    sequential_runs: list[Run] = []
    for repeat in range(repeats):
        # Alternate which goes first, so a drift in the machine's speed hits both alike.
        order = ("geotag", "sequential") if repeat % 2 == 0 else ("sequential", "geotag")
        for which in order:
            if which == "geotag":
                run, _ = geotag_run(workspaces, base, server, size, UNTHROTTLED_RATE, CONCURRENCY)
                geotag_runs.append(run)
            else:
                sequential_runs.append(sequential_run(workspaces, base, server, size)[0])
    latency = server.latency_ms
    geotag_ips = statistics.median(r.images_per_s for r in geotag_runs)
    sequential_ips = statistics.median(r.images_per_s for r in sequential_runs)
    ratio = geotag_ips / sequential_ips
    ok = ratio >= RATIO_TARGET

    def median_row(case: str, runs: Sequence[Run], value: float, notes: str) -> Row:
        return Row(
            case=case,
            latency_ms=latency,
            images=runs[-1].images,
            requests=runs[-1].requests,
            seconds=statistics.median(r.seconds for r in runs),
            value=value,
            unit="images/s",
            notes="; ".join(n for n in (spread(runs), notes, statuses_note(runs[-1])) if n),
        )

    rows = [
        median_row(
            f"geotag, concurrency {CONCURRENCY}, unthrottled",
            geotag_runs,
            geotag_ips,
            "run_scrape end to end",
        ),
        median_row("sequential httpx.Client loop", sequential_runs, sequential_ips, ""),
        Row(
            case="geotag / sequential",
            latency_ms=latency,
            images=None,
            requests=None,
            seconds=None,
            value=ratio,
            unit="x",
            target=f">= {RATIO_TARGET:g}x" if judged else "-",
            verdict=("PASS" if ok else "MISS") if judged else "-",
            notes="ratio of medians" + ("" if judged else "; reference, no target"),
        ),
    ]
    return rows, ok


# -- report -----------------------------------------------------------------------------

TABLE_HEADER = (
    "case",
    "latency ms",
    "images",
    "requests",
    "wall s",
    "value",
    "unit",
    "target",
    "verdict",
    "notes",
)


def table_cells(row: Row) -> tuple[str, ...]:
    def count(n: int | None) -> str:
        return "-" if n is None else f"{n:,}"

    return (
        row.case,
        f"{row.latency_ms:g}",
        count(row.images),
        count(row.requests),
        "-" if row.seconds is None else f"{row.seconds:.2f}",
        f"{row.value:,.2f}" if row.unit == "x" else f"{row.value:,.1f}",
        row.unit,
        row.target,
        row.verdict,
        row.notes,
    )


def format_table(rows: Sequence[Row]) -> list[str]:
    """Plain, aligned text: text columns to the left, numbers to the right."""
    body = [table_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [TABLE_HEADER, *body]) for i in range(len(TABLE_HEADER))]
    right_aligned = {1, 2, 3, 4, 5}

    def render(line: Sequence[str]) -> str:
        parts = [
            text.rjust(width) if i in right_aligned else text.ljust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [render(TABLE_HEADER), "  ".join("-" * w for w in widths), *map(render, body)]


def verdict_lines(rate: Row, rate_ok: bool, ratio: Row, ratio_ok: bool) -> list[str]:
    return [
        f"{'PASS' if rate_ok else 'MISS'}  rate --rate {RATE:g} over {rate.images:,} images "
        f">= {RATE_SHARE_TARGET:.0%} of {RATE:g}/s ({rate.value:.1f} req/s, "
        f"{rate.value / RATE:.1%})",
        f"{'PASS' if ratio_ok else 'MISS'}  geotag (concurrency {CONCURRENCY}) >= "
        f"{RATIO_TARGET:g}x the sequential loop at {ratio.latency_ms:g} ms latency "
        f"({ratio.value:.2f}x)",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="interleaved throughput runs"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=DEFAULT_LATENCY_MS,
        help="the simulator's delay before every answer (the emulated network)",
    )
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image side in pixels")
    parser.add_argument(
        "--quick", action="store_true", help="one short run of everything, fewer images"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or not 1 <= args.size <= 640:
        parser.error("--repeats must be positive and --size lie in 1..640")
    if not (math.isfinite(args.latency_ms) and args.latency_ms >= 0):
        parser.error("--latency-ms must be zero or more")
    args.rate_images, args.points = RATE_IMAGES, THROUGHPUT_POINTS
    if args.quick:
        args.repeats, args.rate_images, args.points = 1, QUICK_RATE_IMAGES, QUICK_THROUGHPUT_POINTS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_line())
    print(f"httpx: {httpx.__version__}")
    print(
        f"simulator in a child process on loopback, answers held {args.latency_ms:g} ms "
        f"(emulated network latency); images {args.size}x{args.size}, "
        f"headings {','.join(f'{h:g}' for h in HEADINGS)}, radius {RADIUS_M:g} m, "
        f"points in bbox {BBOX}"
    )
    print(
        f"rate run: {args.rate_images:,} images; throughput: {args.points} points, "
        f"{args.repeats} interleaved run(s) after a warm-up (median)\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        workspaces = Workspaces(Path(tmp))
        with SimProcess(args.latency_ms) as server:
            rate, rate_ok = rate_row(workspaces, server, args.rate_images, args.size)
            judged, ratio_ok = throughput_rows(
                workspaces, server, args.points, args.size, args.repeats, judged=True
            )
        reference: list[Row] = []
        if args.latency_ms > 0:
            with SimProcess(0.0) as server:
                reference, _ = throughput_rows(
                    workspaces, server, args.points, args.size, args.repeats, judged=False
                )
    print("\n".join(format_table([rate, *judged, *reference])))
    print(
        "\ngeotag images/s: images / wall time of run_scrape (grid, manifest and "
        "images.parquet included); it drops\npanoramas outside the region, so it may fetch "
        "a few images fewer. sequential: one metadata request per\npoint, then one image "
        "request per heading of each new panorama, each written to a file.\nAt 0 ms both "
        "are bound by CPU: the simulator renders every JPEG in one interpreter, and 16\n"
        "connections cost it more than one.\n"
    )
    print("\n".join(verdict_lines(rate, rate_ok, judged[-1], ratio_ok)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
