"""The scrape loop: points -> lookups -> panoramas (deduplicated, labelled) -> images.

One ``httpx.AsyncClient`` with keep-alive, ``concurrency`` workers on one priority queue
(images of panoramas already found go before new lookups, so an interrupted run leaves
whole panoramas), a token bucket on every attempt, retries with backoff, and the manifest
updated after every step. Files are written as ``.part`` and renamed into place before
the manifest calls them done.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from geotag.errors import AuthError
from geotag.geo.locate import OUTSIDE, CellLocator
from geotag.scrape.http import Http, NoImagery, Rejected
from geotag.scrape.manifest import ImageJob, Manifest
from geotag.scrape.paths import image_relpath
from geotag.scrape.providers.base import Found, Point, Provider, is_jpeg
from geotag.scrape.ratelimit import TokenBucket
from geotag.scrape.retry import Retryable, RetryPolicy, with_retries

IMAGE_PRIORITY, LOOKUP_PRIORITY = 0, 1


class _Failed(Exception):
    """Every try of one step failed; ``status`` is what the manifest records."""

    def __init__(self, cause: Exception, tries: int) -> None:
        super().__init__(str(cause))
        self.tries = tries
        if isinstance(cause, Retryable):
            # Worth retrying in a later run, up to --max-attempts in all.
            self.status, self.reason = "failed", cause.reason
        elif isinstance(cause, NoImagery):
            self.status, self.reason = "no_imagery", str(cause)
        else:
            self.status, self.reason = "rejected", str(cause)


@dataclass
class ScrapeCounts:
    """Live counters, handed to the progress callback after every step."""

    points: int = 0
    lookups_done: int = 0
    found: int = 0
    duplicates: int = 0
    no_imagery: int = 0
    outside_region: int = 0
    lookups_failed: int = 0
    images_queued: int = 0
    images_done: int = 0
    images_existing: int = 0
    images_failed: int = 0
    retries: int = 0
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def requests_per_second(self) -> float:
        return self.requests / max(time.monotonic() - self.started, 1e-9)


@dataclass(frozen=True)
class LoopSettings:
    concurrency: int
    rate: float
    max_attempts: int
    max_images: int | None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class ScrapeLoop:
    """One run of the loop over one provider; create, then ``await run()``."""

    def __init__(
        self,
        *,
        root: Path,
        provider: Provider,
        manifest: Manifest,
        locator: CellLocator,
        settings: LoopSettings,
        secrets: tuple[str | None, ...] = (),
        client: httpx.AsyncClient | None = None,
        on_update: Callable[[ScrapeCounts], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.root = root
        self.provider = provider
        self.manifest = manifest
        self.locator = locator
        self.settings = settings
        self.secrets = secrets
        self.counts = ScrapeCounts()
        self._client = client
        self._on_update = on_update or (lambda counts: None)
        self._rng = rng or random.Random(0)
        self._queue: asyncio.PriorityQueue[tuple[int, int, Any]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._fatal: list[BaseException] = []
        self._stop = asyncio.Event()
        self._http: Http | None = None

    # -- the run ---------------------------------------------------------------------------
    async def run(self, lookups: list[tuple[Point, int]], images: list[ImageJob]) -> ScrapeCounts:
        self.counts.points = len(lookups)
        for job in images:
            self._schedule_image(job)
        for point, attempts in lookups:
            self._put(LOOKUP_PRIORITY, (point, attempts))
        owned = self._client is None
        client = self._client or httpx.AsyncClient(
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(
                max_connections=self.settings.concurrency,
                max_keepalive_connections=self.settings.concurrency,
            ),
            follow_redirects=True,
        )
        self._http = Http(client, TokenBucket(self.settings.rate), self.secrets, self.provider.name)
        workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.concurrency)]
        try:
            joined = asyncio.create_task(self._queue.join())
            stopped = asyncio.create_task(self._stop.wait())
            await asyncio.wait({joined, stopped}, return_when=asyncio.FIRST_COMPLETED)
            joined.cancel()
            stopped.cancel()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if owned:
                await client.aclose()
        if self._fatal:
            raise self._fatal[0]
        return self.counts

    def _put(self, priority: int, item: Any) -> None:
        self._queue.put_nowait((priority, next(self._order), item))

    def _schedule_image(self, job: ImageJob) -> None:
        budget = self.settings.max_images
        if budget is not None and self.counts.images_queued >= budget:
            return  # stays pending in the manifest for the next run
        self.counts.images_queued += 1
        self._put(IMAGE_PRIORITY, job)

    async def _worker(self) -> None:
        while True:
            _, _, item = await self._queue.get()
            try:
                if isinstance(item, ImageJob):
                    await self._fetch(item)
                else:
                    await self._look_up(*item)
            except AuthError as exc:
                self._fatal.append(exc)
                self._stop.set()
            except Exception as exc:  # a bug must stop the run loudly, not hang the queue
                self._fatal.append(exc)
                self._stop.set()
            finally:
                self._queue.task_done()
                assert self._http is not None
                self.counts.requests = self._http.counts.requests
                self._on_update(self.counts)

    # -- steps -----------------------------------------------------------------------------
    async def _attempts(self, operation: Callable[[], Any], done_before: int) -> tuple[Any, int]:
        """Run ``operation`` with retries; returns (result, tries made)."""
        tries = 0
        left = max(1, self.settings.max_attempts - done_before)

        async def attempt() -> Any:
            nonlocal tries
            tries += 1
            return await operation()

        def note(failure: Retryable, attempt_no: int, wait: float) -> None:
            self.counts.retries += 1

        policy = RetryPolicy(left, self.settings.retry.base_s, self.settings.retry.cap_s)
        try:
            return await with_retries(attempt, policy, rng=self._rng, on_retry=note), tries
        except (Retryable, NoImagery, Rejected) as exc:
            raise _Failed(exc, tries) from None

    async def _look_up(self, point: Point, attempts: int) -> None:
        budget = self.settings.max_images
        if budget is not None and self.counts.images_queued >= budget:
            return  # the image budget is spent; the point stays pending
        assert self._http is not None
        http = self._http
        name = self.provider.name
        try:
            found, tries = await self._attempts(lambda: self.provider.lookup(http, point), attempts)
        except _Failed as failure:
            self.manifest.point_done(
                name,
                point.point_id,
                failure.status,
                None,
                failure.tries,
                http.redact(failure.reason),
            )
            self.counts.lookups_failed += 1
            return
        finally:
            self.counts.lookups_done += 1
        if found is None:
            self.manifest.point_done(name, point.point_id, "no_imagery", None, tries)
            self.counts.no_imagery += 1
            return
        self._record_panorama(point, found, tries)

    def _record_panorama(self, point: Point, found: Found, tries: int) -> None:
        name = self.provider.name
        cell = self.locator.cell(found.lat, found.lon)
        images = [(h, image_relpath(cell, found.pano_id, h)) for h in found.headings]
        new = self.manifest.add_panorama(name, found, cell, point.point_id, images)
        self.manifest.point_done(name, point.point_id, "found", found.pano_id, tries)
        if not new:
            self.counts.duplicates += 1
        elif cell == OUTSIDE:
            self.counts.outside_region += 1
        else:
            self.counts.found += 1
            for heading, path in images:
                self._schedule_image(ImageJob(found, heading, path, 0))

    async def _fetch(self, job: ImageJob) -> None:
        name = self.provider.name
        target = self.root / job.path
        if target.is_file():
            # Renamed into place, then killed before the manifest heard of it: keep it.
            body = target.read_bytes()
            if is_jpeg(body):
                self._mark_done(job, body, 0)
                self.counts.images_existing += 1
                return
        assert self._http is not None
        http = self._http
        try:
            body, tries = await self._attempts(
                lambda: self.provider.fetch(http, job.found, job.heading), job.attempts
            )
        except _Failed as failure:
            self.manifest.image_failed(
                name,
                job.found.pano_id,
                job.heading,
                failure.status,
                http.redact(failure.reason),
                failure.tries,
            )
            self.counts.images_failed += 1
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        part.write_bytes(body)
        os.replace(part, target)
        self._mark_done(job, body, tries)
        self.counts.images_done += 1

    def _mark_done(self, job: ImageJob, body: bytes, tries: int) -> None:
        self.manifest.image_done(
            self.provider.name,
            job.found.pano_id,
            job.heading,
            hashlib.sha256(body).hexdigest(),
            len(body),
            tries,
        )


def remove_stale_parts(images_dir: Path) -> int:
    """Delete ``.part`` files a killed run left behind; returns how many."""
    if not images_dir.is_dir():
        return 0
    removed = 0
    for part in images_dir.rglob("*.part"):
        part.unlink(missing_ok=True)
        removed += 1
    return removed
