"""What a lying server costs a real ``geotag scrape``: memory, disk, time and attempts.

Each case runs ``python -m geotag scrape`` as a child process (its own peak RSS, read
with ``os.wait4``) against the test suite's hostile server on 127.0.0.1
(``tests/scrape/fake_api.py`` + ``tests/scrape/hostile.py``) on a small workspace (the
scrape tests' Austrian box, 5 km cells, ``--points`` points, one heading, 64 px). Every
lookup is answered OK with a panorama at the point itself; what varies is the rest:

- ``200 MB bodies``: every image is a 200 MB stream (``--concurrency 2 --max-attempts 5``,
  the issue's case);
- ``gzip bomb``: every image is ~300 KB of gzip that inflates to 300 MB;
- ``drip``: every image body drips a byte every 0.5 s, for an hour (``--deadline 5``:
  6 images x 5 attempts x 5 s over 2 connections, ~75 s with backoff);
- ``garbage JPEG``: FFD8 ... FFD9 with noise between;
- ``wrong --base-url``: a port nobody listens on;
- ``HTML everywhere``: every lookup answers an HTML page.

Columns: exit code, wall seconds, peak RSS of the scrape process, bytes left under
``images/``, and the attempts the manifest charged (summed over points and images).
With ``--compare-with COMMIT`` the same cases run first on that commit (a ``git
worktree``, same virtual environment) without the options it lacks, side by side; a case
is stopped at ``--timeout`` seconds ("killed").

    .venv/bin/python benchmarks/hostile_server.py
    .venv/bin/python benchmarks/hostile_server.py --compare-with 36b5ba9
    .venv/bin/python benchmarks/hostile_server.py --quick     # smoke run: two cases

Prints machine facts and the table; always exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the hostile server lives in the test suite

from machine import machine_line  # noqa: E402 (benchmarks/machine.py)

from geotag.stages.grid import run_grid  # noqa: E402
from geotag.stages.sample import run_sample  # noqa: E402
from geotag.workspace import Workspace  # noqa: E402
from tests.scrape.fake_api import FakeApi, Reply, Request  # noqa: E402
from tests.scrape.hostile import (  # noqa: E402
    MB,
    drip,
    flood,
    framed_garbage,
    gzip_bomb,
    location_of,
    metadata_ok,
)

META_PATH = "/maps/api/streetview/metadata"
IMAGE_PATH = "/maps/api/streetview"
BBOX = "14.4,47.6,14.6,47.8"


@dataclass(frozen=True)
class Case:
    name: str
    metadata: Callable[[Request], Reply] | Reply
    image: Reply | None
    base_url: str | None = None  # None: the hostile server


@dataclass(frozen=True)
class Outcome:
    exit_code: str
    seconds: float
    peak_rss_mb: float
    disk_bytes: int
    charged: int


def ok_metadata(request: Request) -> Reply:
    location = location_of(request)
    lat, lng = (float(v) for v in location.split(","))
    return Reply.json(metadata_ok(f"pano-{location}", lat, lng))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cases(quick: bool) -> list[Case]:
    everything = [
        Case("200 MB bodies", ok_metadata, flood(200 * MB)),
        Case("gzip bomb", ok_metadata, gzip_bomb(300 * MB)),
        Case("drip", ok_metadata, drip(every_s=0.5, for_s=3600.0)),
        Case("garbage JPEG", ok_metadata, Reply.jpeg(framed_garbage())),
        Case("wrong --base-url", ok_metadata, None, f"http://127.0.0.1:{free_port()}"),
        Case("HTML everywhere", Reply(200, b"<html>portal</html>"), None),
    ]
    return everything[:2] if quick else everything


def template(folder: Path, points: int) -> Path:
    root = folder / "template"
    ws = Workspace(root)
    run_grid(ws, bbox=BBOX, cell_km=5.0, shape="square")
    run_sample(ws, total=points, seed=3)
    return root


def run_case(case: Case, source: Path, folder: Path, old: Path | None, timeout: float) -> Outcome:
    ws = folder / case.name.replace(" ", "-").replace("/", "")
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(source, ws)
    api = FakeApi()
    api.route(META_PATH, case.metadata)
    if case.image is not None:
        api.route(IMAGE_PATH, case.image)
    api.start()
    try:
        args = [
            sys.executable, "-m", "geotag", "scrape", "-w", str(ws), "--provider", "sim",
            "--base-url", case.base_url or api.url, "--size", "64", "--headings", "0",
            "--radius", "1000", "--concurrency", "2", "--max-attempts", "5", "--rate", "100",
        ]  # fmt: skip
        env = dict(os.environ)
        if old is not None:
            env["PYTHONPATH"] = str(old)
        else:
            args += ["--deadline", "5"]
        started = time.perf_counter()
        child = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
        )
        code, usage = _wait(child, timeout)
        seconds = time.perf_counter() - started
    finally:
        api.stop()
    disk = sum(p.stat().st_size for p in (ws / "images").rglob("*") if p.is_file())
    return Outcome(code, seconds, usage / 1024, disk, _charged(ws))


def _wait(child: subprocess.Popen[bytes], timeout: float) -> tuple[str, int]:
    """(exit code or "killed", peak RSS in KB) of ``child``, killed after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return str(child.returncode), usage.ru_maxrss
        if time.monotonic() > deadline:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = -9
            return "killed", usage.ru_maxrss
        time.sleep(0.05)


def _charged(ws: Path) -> int:
    manifest = ws / "manifest.sqlite"
    if not manifest.is_file():
        return 0
    with sqlite3.connect(manifest) as db:
        points = db.execute("SELECT COALESCE(SUM(attempts), 0) FROM points").fetchone()[0]
        images = db.execute("SELECT COALESCE(SUM(attempts), 0) FROM images").fetchone()[0]
    return int(points) + int(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=150.0)
    parser.add_argument("--compare-with", help="a commit to run the same cases on first")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = template(folder, 3 if args.quick else args.points)
        old = None
        if args.compare_with:
            old = folder / "old"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                 args.compare_with], check=True, capture_output=True,
            )  # fmt: skip
        try:
            rows = []
            for case in cases(args.quick):
                before = run_case(case, source, folder, old, args.timeout) if old else None
                after = run_case(case, source, folder, None, args.timeout)
                rows.append((case.name, before, after))
        finally:
            if old is not None:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                    capture_output=True,
                )
    print(f"{'case':<18} {'version':<8} {'exit':>6} {'s':>7} {'peak RSS MB':>12} "
          f"{'disk bytes':>12} {'charged':>8}")  # fmt: skip
    for name, before, after in rows:
        for label, outcome in (("before", before), ("now", after)):
            if outcome is None:
                continue
            print(
                f"{name:<18} {label:<8} {outcome.exit_code:>6} {outcome.seconds:>7.1f} "
                f"{outcome.peak_rss_mb:>12.0f} {outcome.disk_bytes:>12,} {outcome.charged:>8}"
            )


if __name__ == "__main__":
    main()
