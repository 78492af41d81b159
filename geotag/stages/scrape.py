"""The ``scrape`` stage: points.parquet -> images/ + manifest.sqlite + images.parquet."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geotag.errors import DataError, InputError
from geotag.geo.locate import CellLocator
from geotag.gridfile import load_grid
from geotag.scrape.manifest import Manifest, export_images
from geotag.scrape.providers.base import ImageOptions, Point
from geotag.scrape.registry import ProviderSpec, make_provider, provider_spec, resolve_options
from geotag.scrape.retry import RetryPolicy
from geotag.scrape.scraper import LoopSettings, ScrapeCounts, ScrapeLoop, remove_stale_parts
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import httpx

MAX_SIZE = 640
MAX_FOV = 120.0
#: Longest a request may take, body included, before it counts as failed (seconds).
DEFAULT_DEADLINE_S = 60.0


@dataclass(frozen=True)
class ScrapeOptions:
    """Everything ``geotag scrape`` takes; secrets are kept out of repr and settings.

    ``provider_options`` are the options only this provider takes (its registry entry
    lists them, e.g. the simulator's ``seed``); those not given take their defaults.
    """

    provider: str = "google"
    image: ImageOptions = field(default_factory=ImageOptions)
    concurrency: int = 8
    rate: float | None = None
    max_attempts: int = 5
    max_images: int | None = None
    shard: tuple[int, int] | None = None
    dry_run: bool = False
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    provider_options: Mapping[str, object] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Above this share of failed steps the run reports failure (exit 1 in the CLI).
    max_failure_rate: float = 0.5
    #: Make failed and rejected points and images pending again, attempts reset.
    retry_failed: bool = False
    deadline_s: float = DEFAULT_DEADLINE_S

    def settings(self) -> dict[str, object]:
        """What geotag.toml records: never the key or the secret.

        Provider options go in as ``<provider>_<option>`` (``sim_seed``), defaults included.
        """
        provider_options = resolve_options(self.provider, self.provider_options)
        return {
            "provider": self.provider,
            "headings": list(self.image.headings),
            "size": self.image.size,
            "fov": self.image.fov,
            "pitch": self.image.pitch,
            "radius": self.image.radius_m,
            "source": self.image.source,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "max_attempts": self.max_attempts,
            "max_images": self.max_images,
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "base_url": self.base_url,
            "signed": self.signing_secret is not None,
            "max_failure_rate": self.max_failure_rate,
            "deadline": self.deadline_s,
        } | {f"{self.provider}_{name}": value for name, value in provider_options.items()}


@dataclass(frozen=True)
class DryRun:
    lookups: int
    pending_images: int
    max_requests: int
    max_images: int
    price_usd: float | None
    price_source: str | None
    price_per_1000_usd: float | None = None


@dataclass(frozen=True)
class ScrapeResult:
    counts: ScrapeCounts
    totals: dict[str, int]
    images_exported: int
    seconds: float
    interrupted: bool = False
    dry_run: DryRun | None = None
    notices: tuple[str, ...] = ()
    stale_parts_removed: int = 0
    #: Why the run counts as failed (nothing succeeded, too many failures, stopped as
    #: misconfigured), in one line; None when it did its job.
    problem: str | None = None
    #: Points and images made pending again by ``retry_failed``.
    reset: tuple[int, int] = (0, 0)


def _check_options(options: ScrapeOptions) -> None:
    image = options.image
    resolve_options(options.provider, options.provider_options)  # provider and its options
    if not 1 <= image.size <= MAX_SIZE:
        raise InputError(f"--size must lie in [1, {MAX_SIZE}]; got {image.size}")
    if not (math.isfinite(image.fov) and 0 < image.fov <= MAX_FOV):
        raise InputError(f"--fov must lie in (0, {MAX_FOV:g}]; got {image.fov}")
    if not (math.isfinite(image.pitch) and -90 <= image.pitch <= 90):
        raise InputError(f"--pitch must lie in [-90, 90]; got {image.pitch}")
    if not (math.isfinite(image.radius_m) and image.radius_m > 0):
        raise InputError(f"--radius must be a positive number of metres; got {image.radius_m}")
    if image.source not in ("outdoor", "default"):
        raise InputError(f"--source must be outdoor or default; got {image.source!r}")
    if not image.headings or not all(math.isfinite(h) for h in image.headings):
        raise InputError("--headings must be a comma-separated list of degrees, e.g. 0,90,180")
    if options.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1; got {options.concurrency}")
    if options.rate is not None and not (math.isfinite(options.rate) and options.rate > 0):
        raise InputError(f"--rate must be a positive number of requests/s; got {options.rate}")
    if options.max_attempts < 1:
        raise InputError(f"--max-attempts must be at least 1; got {options.max_attempts}")
    if options.max_images is not None and options.max_images < 0:
        raise InputError(f"--max-images must be zero or more; got {options.max_images}")
    if not (math.isfinite(options.max_failure_rate) and 0 <= options.max_failure_rate <= 1):
        raise InputError(f"--max-failure-rate must lie in [0, 1]; got {options.max_failure_rate}")
    if not (math.isfinite(options.deadline_s) and options.deadline_s > 0):
        raise InputError(
            f"--deadline must be a positive number of seconds; got {options.deadline_s}"
        )
    if options.base_url is not None:
        _check_base_url(options.base_url)


def _check_base_url(url: str) -> None:
    """An http(s) URL with a host: anything else fails every request the same way."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        # The value is not echoed: a pasted URL may carry a key.
        raise InputError(
            "--base-url must be an http(s) URL with a host, like http://127.0.0.1:8000"
        )


def run_scrape(
    workspace: Workspace,
    options: ScrapeOptions,
    *,
    client: httpx.AsyncClient | None = None,
    on_update: Callable[[ScrapeCounts], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> ScrapeResult:
    """Collect images for the workspace's points; resumes whatever an earlier run left.

    Returns when every point and image has been tried, the image budget is spent, or the
    run is interrupted (Ctrl-C); images.parquet is written in every case. A refused key
    raises AuthError at once, after images.parquet is written.
    """
    started = time.perf_counter()
    _check_options(options)
    grid = load_grid(workspace)
    points = _load_points(workspace, options.shard)
    spec = provider_spec(options.provider)
    key = options.api_key
    notice_key = f"{options.provider}_terms"
    notices: tuple[str, ...] = ()
    if spec.terms_notice and not workspace.stage_settings("notices").get(notice_key):
        notices = (spec.terms_notice,)

    with contextlib.ExitStack() as stack:
        base_url = options.base_url
        if spec.local_server is not None and base_url is None and not options.dry_run:
            provider_options = resolve_options(options.provider, options.provider_options)
            base_url = stack.enter_context(spec.local_server(**provider_options))
        provider = make_provider(
            options.provider, options.image, key, options.signing_secret, base_url
        )
        workspace.prepare()
        manifest = stack.enter_context(Manifest(workspace.manifest))
        manifest.add_points(provider.name, points)
        point_ids = [p.point_id for p in points]
        reset = (0, 0)
        if options.retry_failed and not options.dry_run:
            reset = manifest.retry_failed(provider.name, point_ids)
        lookups = manifest.points_to_look_up(provider.name, point_ids, options.max_attempts)
        images = manifest.images_to_fetch(provider.name, options.max_attempts)
        if options.dry_run:
            result = ScrapeResult(
                ScrapeCounts(points=len(lookups)),
                manifest.counts(provider.name),
                0,
                time.perf_counter() - started,
                dry_run=_estimate(len(lookups), len(images), options, spec),
                notices=notices,
            )
        else:
            removed = remove_stale_parts(workspace.images_dir)
            workspace.record("scrape", options.settings())
            for notice in notices:
                if on_notice is not None:
                    on_notice(notice)
            if notices:
                workspace.record("notices", {notice_key: True})
            loop = ScrapeLoop(
                root=workspace.root,
                provider=provider,
                manifest=manifest,
                locator=CellLocator(grid),
                settings=LoopSettings(
                    concurrency=options.concurrency,
                    rate=options.rate or provider.default_rate,
                    max_attempts=options.max_attempts,
                    max_images=options.max_images,
                    retry=options.retry,
                    deadline_s=options.deadline_s,
                ),
                secrets=(key, options.signing_secret),
                client=client,
                on_update=on_update,
            )
            interrupted = False
            try:
                asyncio.run(loop.run(lookups, images))
            except KeyboardInterrupt:
                interrupted = True
            finally:
                exported = export_images(workspace, manifest)
            result = ScrapeResult(
                counts=loop.counts,
                totals=manifest.counts(provider.name),
                images_exported=exported,
                seconds=time.perf_counter() - started,
                interrupted=interrupted,
                notices=notices,
                stale_parts_removed=removed,
                problem=None if interrupted else _problem(loop.counts, options.max_failure_rate),
                reset=reset,
            )
    return result


def _problem(counts: ScrapeCounts, max_failure_rate: float) -> str | None:
    """Why the run failed at its job, in one line naming the commonest reason; or None."""
    failed, steps = counts.failures, counts.steps
    common = counts.commonest_failure()
    if not failed or common is None:
        return None
    reason, times = common
    commonest = f"commonest reason: {reason} ({times:,} time{'s' if times != 1 else ''})"
    given_back = (
        "; none of them used up --max-attempts, so rerunning once it is fixed retries them"
        if counts.refunded
        else ""
    )
    if counts.stopped_early:
        return (
            f"stopped after the first {failed:,} steps all failed ({commonest}): check "
            f"--base-url, the key and the network{given_back}"
        )
    # Lookups or downloads that all failed are a failed run whatever the threshold says.
    for what, tried, ok in (
        ("lookups", counts.lookups_done, counts.lookups_done - counts.lookups_failed),
        (
            "downloads",
            counts.images_done + counts.images_failed - counts.images_missing,
            counts.images_done,
        ),
    ):
        if tried and not ok:
            return f"every one of {tried:,} {what} failed ({commonest}){given_back}"
    if failed > max_failure_rate * steps:
        return (
            f"{failed:,} of {steps:,} steps failed ({failed / steps:.0%}, over "
            f"--max-failure-rate {max_failure_rate:g}; {commonest}); rerun to retry them"
        )
    return None


def _load_points(workspace: Workspace, shard: tuple[int, int] | None) -> list[Point]:
    import pandas as pd

    workspace.require(workspace.points_parquet, "run `geotag sample` first")
    try:
        frame = pd.read_parquet(workspace.points_parquet)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {workspace.points_parquet}: {exc}") from None
    missing = {"point_id", "cell_id", "lat", "lon"} - set(frame.columns)
    if missing:
        raise DataError(f"points.parquet lacks column(s) {', '.join(sorted(missing))}")
    if shard is not None:
        index, count = shard
        frame = frame[frame["point_id"] % count == index]
    return [
        Point(int(p), int(c), float(la), float(lo))
        for p, c, la, lo in frame[["point_id", "cell_id", "lat", "lon"]].itertuples(index=False)
    ]


def _estimate(lookups: int, pending: int, options: ScrapeOptions, spec: ProviderSpec) -> DryRun:
    """The most a run could do: every lookup finds a new panorama with every heading."""
    possible = pending + lookups * len(options.image.headings)
    images = possible if options.max_images is None else min(possible, options.max_images)
    per_1000 = spec.price_per_1000_usd
    if per_1000 is None:
        return DryRun(lookups, pending, lookups + images, images, None, None)
    price = images * per_1000 / 1000
    return DryRun(lookups, pending, lookups + images, images, price, spec.price_source, per_1000)
