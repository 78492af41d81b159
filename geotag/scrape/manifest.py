"""``manifest.sqlite``: the truth about a scrape, so that any rerun resumes it.

Three tables, each keyed by provider so that several providers can fill one workspace:

- ``points``: every sampled point and what its lookup found (``pending``, ``found``,
  ``no_imagery``, ``failed``), with attempts and the last error;
- ``panoramas``: each panorama once, however many points snapped to it, with its true
  location, the cell that location is in (``-1``: outside the region), date,
  attribution and licence;
- ``images``: one row per (panorama, heading) with its file, sha256 and size once
  ``done``, or attempts and the last error.

WAL journaling and a commit after every change: a ``kill -9`` loses at most the request in
flight, and nothing marked done is ever lost. No secret is ever written here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from geotag.errors import DataError
from geotag.scrape.providers.base import Found, Point
from geotag.workspace import Workspace

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    provider TEXT NOT NULL,
    point_id INTEGER NOT NULL,
    cell_id INTEGER NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    pano_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT,
    PRIMARY KEY (provider, point_id)
);
CREATE TABLE IF NOT EXISTS panoramas (
    provider TEXT NOT NULL,
    pano_id TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    cell_id INTEGER NOT NULL,
    captured TEXT,
    copyright TEXT,
    license TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    first_point_id INTEGER,
    created_at TEXT,
    PRIMARY KEY (provider, pano_id)
);
CREATE TABLE IF NOT EXISTS images (
    provider TEXT NOT NULL,
    pano_id TEXT NOT NULL,
    heading REAL NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    sha256 TEXT,
    bytes INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT,
    PRIMARY KEY (provider, pano_id, heading)
);
CREATE INDEX IF NOT EXISTS images_status ON images (provider, status);
CREATE INDEX IF NOT EXISTS points_status ON points (provider, status);
"""

OUTSIDE_REGION = -1


@dataclass(frozen=True)
class ImageJob:
    """An image still to download, with what the provider needs to fetch it."""

    found: Found
    heading: float
    path: str
    attempts: int


class DoneImage(NamedTuple):
    """A downloaded image as images.parquet describes it (less the group)."""

    path: str
    pano_id: str
    lat: float
    lon: float
    heading: float
    #: The cell of the panorama's own location, ``OUTSIDE_REGION`` when in none.
    cell_id: int
    captured: str | None
    copyright: str | None
    provider: str
    license: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """A connection to ``manifest.sqlite``; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is not a usable manifest: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- points ----------------------------------------------------------------------------
    def add_points(self, provider: str, points: Iterable[Point]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO points (provider, point_id, cell_id, lat, lon) "
                "VALUES (?, ?, ?, ?, ?)",
                ((provider, p.point_id, p.cell_id, p.lat, p.lon) for p in points),
            )

    def points_to_look_up(
        self, provider: str, point_ids: Iterable[int], max_attempts: int
    ) -> list[tuple[Point, int]]:
        """Pending or failed points (with attempts left) among ``point_ids``."""
        wanted = set(point_ids)
        rows = self._db.execute(
            "SELECT point_id, cell_id, lat, lon, attempts FROM points WHERE provider = ? "
            "AND (status = 'pending' OR (status = 'failed' AND attempts < ?)) "
            "ORDER BY point_id",
            (provider, max_attempts),
        )
        return [
            (Point(int(r[0]), int(r[1]), float(r[2]), float(r[3])), int(r[4]))
            for r in rows
            if r[0] in wanted
        ]

    def point_done(
        self,
        provider: str,
        point_id: int,
        status: str,
        pano_id: str | None,
        tries: int,
        error: str | None = None,
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE points SET status = ?, pano_id = ?, attempts = attempts + ?, "
                "last_error = ?, updated_at = ? WHERE provider = ? AND point_id = ?",
                (status, pano_id, tries, error, _now(), provider, point_id),
            )

    def refund_point(self, provider: str, point_id: int, tries: int) -> None:
        """Give back ``tries`` attempts of a failed point and leave it to be retried."""
        with self._db:
            self._db.execute(
                "UPDATE points SET status = 'failed', attempts = MAX(attempts - ?, 0) "
                "WHERE provider = ? AND point_id = ? AND status IN ('failed', 'rejected')",
                (tries, provider, point_id),
            )

    def retry_failed(self, provider: str, point_ids: Iterable[int]) -> tuple[int, int]:
        """Make failed and rejected points (of ``point_ids``) and images pending again, with
        no attempts used; returns how many of each."""
        wanted = [(provider, int(p)) for p in point_ids]
        with self._db:
            before = self._db.total_changes
            self._db.executemany(
                "UPDATE points SET status = 'pending', attempts = 0 WHERE provider = ? "
                "AND point_id = ? AND status IN ('failed', 'rejected')",
                wanted,
            )
            points = self._db.total_changes - before
            images = self._db.execute(
                "UPDATE images SET status = 'pending', attempts = 0 WHERE provider = ? "
                "AND status IN ('failed', 'rejected')",
                (provider,),
            ).rowcount
        return points, images

    # -- panoramas and their images --------------------------------------------------------
    def add_panorama(
        self,
        provider: str,
        found: Found,
        cell_id: int,
        point_id: int,
        images: Iterable[tuple[float, str]],
    ) -> bool:
        """Record a panorama and its images once; False if it was already known."""
        with self._db:
            # ON CONFLICT, not OR IGNORE: only a known panorama is skipped; a row breaking a
            # constraint (a NaN coordinate is NULL to SQLite) is an error, never dropped.
            inserted = self._db.execute(
                "INSERT INTO panoramas (provider, pano_id, lat, lon, cell_id, "
                "captured, copyright, license, extra, first_point_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (provider, pano_id) DO NOTHING",
                (
                    provider,
                    found.pano_id,
                    found.lat,
                    found.lon,
                    cell_id,
                    found.captured,
                    found.copyright,
                    found.license,
                    json.dumps(dict(found.extra)),
                    point_id,
                    _now(),
                ),
            ).rowcount
            if inserted and cell_id != OUTSIDE_REGION:
                self._db.executemany(
                    "INSERT OR IGNORE INTO images (provider, pano_id, heading, path) "
                    "VALUES (?, ?, ?, ?)",
                    ((provider, found.pano_id, heading, path) for heading, path in images),
                )
        return bool(inserted)

    def images_to_fetch(self, provider: str, max_attempts: int) -> list[ImageJob]:
        rows = self._db.execute(
            "SELECT i.pano_id, i.heading, i.path, i.attempts, p.lat, p.lon, p.captured, "
            "p.copyright, p.license, p.extra FROM images i JOIN panoramas p "
            "ON p.provider = i.provider AND p.pano_id = i.pano_id "
            "WHERE i.provider = ? AND (i.status = 'pending' "
            "OR (i.status = 'failed' AND i.attempts < ?)) ORDER BY i.pano_id, i.heading",
            (provider, max_attempts),
        )
        return [
            ImageJob(
                Found(r[0], r[4], r[5], r[6], r[7], r[8], (r[1],), json.loads(r[9])),
                float(r[1]),
                str(r[2]),
                int(r[3]),
            )
            for r in rows
        ]

    def image_done(
        self, provider: str, pano_id: str, heading: float, sha256: str, size: int, tries: int
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE images SET status = 'done', sha256 = ?, bytes = ?, "
                "attempts = attempts + ?, last_error = NULL, updated_at = ? "
                "WHERE provider = ? AND pano_id = ? AND heading = ?",
                (sha256, size, tries, _now(), provider, pano_id, heading),
            )

    def image_failed(
        self, provider: str, pano_id: str, heading: float, status: str, error: str, tries: int
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE images SET status = ?, attempts = attempts + ?, last_error = ?, "
                "updated_at = ? WHERE provider = ? AND pano_id = ? AND heading = ?",
                (status, tries, error, _now(), provider, pano_id, heading),
            )

    def refund_image(self, provider: str, pano_id: str, heading: float, tries: int) -> None:
        """Give back ``tries`` attempts of a failed image and leave it to be retried."""
        with self._db:
            self._db.execute(
                "UPDATE images SET status = 'failed', attempts = MAX(attempts - ?, 0) "
                "WHERE provider = ? AND pano_id = ? AND heading = ? "
                "AND status IN ('failed', 'rejected')",
                (tries, provider, pano_id, heading),
            )

    # -- reading back ----------------------------------------------------------------------
    def done_images(self) -> Iterator[DoneImage]:
        """Every downloaded image with its panorama's location and attribution, by path."""
        for row in self._db.execute(
            "SELECT i.path, i.pano_id, p.lat, p.lon, i.heading, p.cell_id, p.captured, "
            "p.copyright, i.provider, p.license FROM images i JOIN panoramas p "
            "ON p.provider = i.provider AND p.pano_id = i.pano_id "
            "WHERE i.status = 'done' ORDER BY i.path"
        ):
            yield DoneImage(*row)

    def counts(self, provider: str) -> dict[str, int]:
        """Totals by state, for summaries: points_*, images_*, panoramas, outside_region."""
        result: dict[str, int] = {}
        for table in ("points", "images"):
            for status, count in self._db.execute(
                f"SELECT status, COUNT(*) FROM {table} WHERE provider = ? GROUP BY status",
                (provider,),
            ):
                result[f"{table}_{status}"] = int(count)
        result["panoramas"] = int(
            self._db.execute(
                "SELECT COUNT(*) FROM panoramas WHERE provider = ?", (provider,)
            ).fetchone()[0]
        )
        result["outside_region"] = int(
            self._db.execute(
                "SELECT COUNT(*) FROM panoramas WHERE provider = ? AND cell_id = ?",
                (provider, OUTSIDE_REGION),
            ).fetchone()[0]
        )
        return result


def export_images(workspace: Workspace, manifest: Manifest) -> int:
    """Write images.parquet from the manifest's done images, keeping imported rows."""
    import pandas as pd

    from geotag.dataset import IMAGE_COLUMNS, merge_images, read_images, write_images
    from geotag.geo.locate import OUTSIDE

    rows = [row for row in manifest.done_images() if row.cell_id != OUTSIDE]
    scraped = pd.DataFrame(rows, columns=list(DoneImage._fields))
    scraped["group"] = scraped["pano_id"]
    scraped = scraped[list(IMAGE_COLUMNS)]
    old = read_images(workspace)
    write_images(workspace, merge_images(old, scraped))
    return len(scraped)
