"""The scrape loop: points -> lookups -> panoramas (deduplicated, labelled) -> images.

One ``httpx.AsyncClient`` with keep-alive, ``concurrency`` workers on one priority queue
(images of panoramas already found go before new lookups, so an interrupted run leaves
whole panoramas), a token bucket on every attempt, retries with backoff, and the manifest
updated after every step. Files are written as ``.part`` and renamed into place before
the manifest calls them done.

A run that fails from its first step (a wrong ``--base-url``, a proxy answering HTML, a
dead network) is misconfigured, not unlucky: it stops after ``BREAKER_STEPS`` such
failures with nothing succeeding, and a run in which nothing succeeded charges none of
them against ``--max-attempts``, so the same command retries them once the cause is
fixed. Refusals of one item (400, a body over its cap, no imagery) are the item's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from geotag.errors import AuthError
from geotag.geo.locate import OUTSIDE, CellLocator
from geotag.scrape.http import DEFAULT_DEADLINE_S, MAX_REDIRECTS, Http, NoImagery, Rejected
from geotag.scrape.manifest import ImageJob, Manifest
from geotag.scrape.paths import image_relpath
from geotag.scrape.providers.base import Found, Point, Provider, check_jpeg
from geotag.scrape.ratelimit import TokenBucket
from geotag.scrape.retry import Retryable, RetryPolicy, with_retries

IMAGE_PRIORITY, LOOKUP_PRIORITY = 0, 1
#: Failed steps, with none succeeding, after which a run stops as misconfigured.
BREAKER_STEPS = 20


class _Failed(Exception):
    """Every try of one step failed; ``status`` is what the manifest records and
    ``tries`` how many of them count against ``--max-attempts``."""

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
    #: Images the provider said it has no imagery for (among ``images_failed``).
    images_missing: int = 0
    retries: int = 0
    requests: int = 0
    #: Why steps failed (redacted, printable), for "the commonest reason".
    failure_reasons: Counter[str] = field(default_factory=Counter)
    #: The run stopped after BREAKER_STEPS failures with nothing succeeding.
    stopped_early: bool = False
    #: Failed steps whose attempts were given back because nothing in the run succeeded.
    refunded: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def requests_per_second(self) -> float:
        return self.requests / max(time.monotonic() - self.started, 1e-9)

    @property
    def steps(self) -> int:
        """Lookups and downloads that were tried to the end this run."""
        return self.lookups_done + self.images_done + self.images_failed

    @property
    def failures(self) -> int:
        """Steps that ended in a failure (no imagery is an answer, not a failure)."""
        return self.lookups_failed + self.images_failed - self.images_missing

    def commonest_failure(self) -> tuple[str, int] | None:
        common = self.failure_reasons.most_common(1)
        return common[0] if common else None


@dataclass(frozen=True)
class LoopSettings:
    concurrency: int
    rate: float
    max_attempts: int
    max_images: int | None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deadline_s: float = DEFAULT_DEADLINE_S


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
        self._succeeded = False
        #: Failures before the first success: (kind, key, charged tries), given back if
        #: nothing succeeds.
        self._unproven: list[tuple[str, tuple[Any, ...], int]] = []

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
            max_redirects=MAX_REDIRECTS,
        )
        self._http = Http(
            client,
            TokenBucket(self.settings.rate),
            self.secrets,
            self.provider.name,
            deadline_s=self.settings.deadline_s,
        )
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
            self._give_back_attempts()
        if self._fatal:
            raise self._fatal[0]
        return self.counts

    # -- a misconfigured run -----------------------------------------------------------------
    def _succeed(self) -> None:
        self._succeeded = True
        self._unproven.clear()

    def _fail(self, kind: str, key: tuple[Any, ...], failure: _Failed, reason: str) -> None:
        if failure.status != "no_imagery":
            self.counts.failure_reasons[reason] += 1
        if self._succeeded or failure.status != "failed":
            # Only failures that say nothing about the item (unreachable, not the API's
            # answer, 5xx, deadlines) can mean the run is misconfigured; a refusal of this
            # one image or point (400, too large, no imagery) is about the item.
            return
        self._unproven.append((kind, key, failure.tries))
        if len(self._unproven) >= BREAKER_STEPS:
            self.counts.stopped_early = True
            self._stop.set()

    def _give_back_attempts(self) -> None:
        """Nothing succeeded: the failures say nothing about the points, so charge none."""
        if self._succeeded or not self._unproven:
            return
        name = self.provider.name
        for kind, key, tries in self._unproven:
            if kind == "point":
                self.manifest.refund_point(name, key[0], tries)
            else:
                self.manifest.refund_image(name, key[0], key[1], tries)
        self.counts.refunded = len(self._unproven)
        self._unproven.clear()

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
        """Run ``operation`` with retries; returns (result, tries charged)."""
        tries = 0
        left = max(1, self.settings.max_attempts - done_before)

        async def attempt() -> Any:
            nonlocal tries
            tries += 1
            try:
                return await operation()
            except Retryable as failure:
                if not failure.charged:
                    tries -= 1
                raise

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
            reason = http.server_text(failure.reason)
            self.manifest.point_done(
                name, point.point_id, failure.status, None, failure.tries, reason
            )
            self.counts.lookups_failed += 1
            self._fail("point", (point.point_id,), failure, reason)
            return
        finally:
            self.counts.lookups_done += 1
        self._succeed()
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
            try:
                check_jpeg(body)
            except (Retryable, Rejected):
                pass  # not a whole JPEG: fetch it again
            else:
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
            reason = http.server_text(failure.reason)
            self.manifest.image_failed(
                name, job.found.pano_id, job.heading, failure.status, reason, failure.tries
            )
            self.counts.images_failed += 1
            self.counts.images_missing += failure.status == "no_imagery"
            self._fail("image", (job.found.pano_id, job.heading), failure, reason)
            return
        self._succeed()
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
