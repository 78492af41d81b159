"""The ``scrape`` stage: points.parquet -> images/ + manifest.sqlite + images.parquet."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geotag.dataset import IMAGE_COLUMNS, merge_images, read_images, write_images
from geotag.errors import DataError, InputError
from geotag.geo.locate import OUTSIDE, CellLocator
from geotag.gridfile import load_grid
from geotag.scrape.manifest import Manifest
from geotag.scrape.providers.base import ImageOptions, Point
from geotag.scrape.registry import PROVIDERS, make_provider
from geotag.scrape.retry import RetryPolicy
from geotag.scrape.scraper import LoopSettings, ScrapeCounts, ScrapeLoop, remove_stale_parts
from geotag.sim.defaults import DEFAULT_USER_FRACTION
from geotag.workspace import Workspace

if TYPE_CHECKING:
    import httpx

MAX_SIZE = 640
MAX_FOV = 120.0
GOOGLE_TERMS_NOTICE = (
    "Google's Maps Platform Terms of Service (https://cloud.google.com/maps-platform/terms) "
    "restrict storing and caching Street View images and using them outside Google's "
    "services; make sure your use is allowed before you collect a dataset."
)


@dataclass(frozen=True)
class ScrapeOptions:
    """Everything ``geotag scrape`` takes; secrets are kept out of repr and settings."""

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
    sim_seed: int = 0
    sim_photospheres: float = DEFAULT_USER_FRACTION
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def settings(self) -> dict[str, object]:
        """What geotag.toml records: never the key or the secret."""
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
        } | (
            {"sim_seed": self.sim_seed, "sim_photospheres": self.sim_photospheres}
            if self.provider == "sim"
            else {}
        )


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


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N, e.g. 0/4; got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise InputError(f"--shard I/N needs 0 <= I < N; got {text!r}")
    return index, count


def check_options(options: ScrapeOptions) -> None:
    image = options.image
    if options.provider not in PROVIDERS:
        raise InputError(
            f"unknown --provider {options.provider!r}; choose one of {', '.join(PROVIDERS)}"
        )
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
    check_options(options)
    grid = load_grid(workspace)
    points = _load_points(workspace, options.shard)
    provider_name = options.provider
    key = options.api_key
    spec = PROVIDERS[provider_name]
    notices: tuple[str, ...] = ()
    if spec.priced and not workspace.stage_settings("notices").get("google_terms"):
        notices = (GOOGLE_TERMS_NOTICE,)

    with contextlib.ExitStack() as stack:
        base_url = options.base_url
        if provider_name == "sim" and base_url is None and not options.dry_run:
            base_url = stack.enter_context(_simulator(options.sim_seed, options.sim_photospheres))
        provider = make_provider(
            provider_name, options.image, key, options.signing_secret, base_url
        )
        workspace.prepare()
        manifest = stack.enter_context(Manifest(workspace.manifest))
        manifest.add_points(provider.name, points)
        point_ids = [p.point_id for p in points]
        lookups = manifest.points_to_look_up(provider.name, point_ids, options.max_attempts)
        images = manifest.images_to_fetch(provider.name, options.max_attempts)
        if options.dry_run:
            estimate = _estimate(len(lookups), len(images), options, spec.priced)
            return ScrapeResult(
                ScrapeCounts(points=len(lookups)),
                manifest.counts(provider.name),
                0,
                time.perf_counter() - started,
                dry_run=estimate,
                notices=notices,
            )
        removed = remove_stale_parts(workspace.images_dir)
        workspace.record("scrape", options.settings())
        for notice in notices:
            if on_notice is not None:
                on_notice(notice)
        if notices:
            workspace.record("notices", {"google_terms": True})
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
        return ScrapeResult(
            counts=loop.counts,
            totals=manifest.counts(provider.name),
            images_exported=exported,
            seconds=time.perf_counter() - started,
            interrupted=interrupted,
            notices=notices,
            stale_parts_removed=removed,
        )
    raise AssertionError("unreachable")  # pragma: no cover


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


def _estimate(lookups: int, pending: int, options: ScrapeOptions, priced: bool) -> DryRun:
    """The most a run could do: every lookup finds a new panorama with every heading."""
    possible = pending + lookups * len(options.image.headings)
    images = possible if options.max_images is None else min(possible, options.max_images)
    if not priced:
        return DryRun(lookups, pending, lookups + images, images, None, None)
    from geotag.scrape.providers.google import PRICE_PER_1000_USD, PRICE_SOURCE

    price = images * PRICE_PER_1000_USD / 1000
    return DryRun(
        lookups, pending, lookups + images, images, price, PRICE_SOURCE, PRICE_PER_1000_USD
    )


@contextlib.contextmanager
def _simulator(seed: int, photospheres: float) -> Iterator[str]:
    from geotag.sim.server import SimServer
    from geotag.sim.world import World

    with SimServer(world=World(seed, user_fraction=photospheres)) as server:
        yield server.base_url


def export_images(workspace: Workspace, manifest: Manifest) -> int:
    """Write images.parquet from the manifest's done images, keeping imported rows."""
    import pandas as pd

    rows = [row for row in manifest.done_images() if row[5] != OUTSIDE]
    columns = [
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
    scraped = pd.DataFrame(rows, columns=columns)
    scraped["group"] = scraped["pano_id"]
    scraped = scraped[list(IMAGE_COLUMNS)]
    old = read_images(workspace)
    write_images(workspace, merge_images(old, scraped))
    return len(scraped)


def summary_rows(result: ScrapeResult) -> list[tuple[str, str]]:
    """Plain (label, value) rows for the CLI's closing table."""
    counts, totals = result.counts, result.totals
    return [
        ("points looked up", f"{counts.lookups_done:,} of {counts.points:,}"),
        ("panoramas found", f"{counts.found:,} new, {counts.duplicates:,} already known"),
        ("no imagery", f"{counts.no_imagery:,}"),
        ("outside region", f"{counts.outside_region:,} (dropped)"),
        ("failed lookups", f"{counts.lookups_failed:,}"),
        (
            "images",
            f"{counts.images_done:,} downloaded, {counts.images_existing:,} kept, "
            f"{counts.images_failed:,} failed",
        ),
        ("requests", f"{counts.requests:,} ({counts.retries:,} retries)"),
        (
            "workspace totals",
            f"{totals.get('images_done', 0):,} images done, "
            f"{totals.get('images_pending', 0):,} pending, "
            f"{totals.get('panoramas', 0):,} panoramas",
        ),
        ("images.parquet", f"{result.images_exported:,} scraped images"),
    ]
