"""``geotag scrape`` and ``geotag import``: images for the dataset, collected or brought."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotag.cli.common import (
    WorkspaceOption,
    bar_columns,
    console,
    err_console,
    locked,
    progress_bar,
    reporting_errors,
)
from geotag.safetext import markup_safe
from geotag.scrape.registry import PROVIDERS
from geotag.sim.defaults import DEFAULT_SEED, DEFAULT_USER_FRACTION
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgressBar

    from geotag.scrape.scraper import ScrapeCounts
    from geotag.stages.scrape import ScrapeResult

PhotospheresOption = Annotated[
    float,
    typer.Option(
        "--photospheres",
        help="Simulator only: the share of panoramas that are user-contributed photospheres, "
        "with a photographer strip.",
    ),
]

ProviderChoice = enum.Enum(  # type: ignore[misc]
    "ProviderChoice", {name: name for name in PROVIDERS}, type=str
)


class ScrapeDisplay:
    """Rich progress for a scrape: lookups and images, requests/s, retries, failures."""

    def __init__(self, progress: RichProgressBar) -> None:
        self.progress = progress
        self.lookups = progress.add_task("points", total=None)
        self.images = progress.add_task("images", total=None)

    def __call__(self, counts: ScrapeCounts) -> None:
        c = counts
        self.progress.update(
            self.lookups,
            total=c.points,
            completed=c.lookups_done,
            description=f"points  [dim]{c.found} found, {c.no_imagery} none, "
            f"{c.outside_region} outside, {c.lookups_failed} failed[/dim]",
        )
        self.progress.update(
            self.images,
            total=c.images_queued,
            completed=c.images_done + c.images_existing + c.images_failed,
            description=f"images  [dim]{c.requests_per_second:.0f} req/s, "
            f"{c.retries} retries, {c.images_failed} failed[/dim]",
        )


def scrape(
    workspace: WorkspaceOption = Path("."),
    provider: Annotated[
        ProviderChoice,  # type: ignore[valid-type]
        typer.Option("--provider", help="Imagery source; sim is the offline simulator."),
    ] = ProviderChoice.google,  # type: ignore[attr-defined]
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="API key or token (default: GOOGLE_MAPS_API_KEY or MAPILLARY_ACCESS_TOKEN).",
            show_default=False,
        ),
    ] = None,
    signing_secret: Annotated[
        str | None,
        typer.Option(
            "--signing-secret",
            envvar="GOOGLE_MAPS_URL_SIGNING_SECRET",
            help="Sign Google URLs with this secret (url-safe base64).",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="Replace the API's scheme and host (proxy, simulator)."),
    ] = None,
    radius: Annotated[
        float, typer.Option("--radius", help="Search radius around each point, metres.")
    ] = 50.0,
    source: Annotated[
        str, typer.Option("--source", help="outdoor (official imagery) or default (all).")
    ] = "outdoor",
    headings: Annotated[
        str, typer.Option("--headings", help="Headings to download per panorama.")
    ] = "0,90,180,270",
    size: Annotated[int, typer.Option("--size", help="Image side in pixels, up to 640.")] = 256,
    fov: Annotated[float, typer.Option("--fov", help="Field of view, up to 120.")] = 90.0,
    pitch: Annotated[float, typer.Option("--pitch", help="Camera pitch, -90..90.")] = 0.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Requests in flight at once.")
    ] = 8,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="Requests per second, retries included.",
            show_default="the provider's polite default",
        ),
    ] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            help="Tries per request, across reruns (a server that cannot be reached, or a "
            "run in which nothing succeeded, uses none).",
        ),
    ] = 5,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed", help="Try failed and refused points and images again, from zero."
        ),
    ] = False,
    max_failure_rate: Annotated[
        float,
        typer.Option(
            "--max-failure-rate",
            help="Exit 1 when more than this share of lookups and downloads failed.",
        ),
    ] = 0.5,
    deadline: Annotated[
        float,
        typer.Option(
            "--deadline", help="Seconds a request may take in all, body included, per try."
        ),
    ] = 60.0,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Download at most this many this run.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Send nothing; print the most it could cost.")
    ] = False,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Only points I of N machines, as I/N.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Simulator seed (provider sim).")
    ] = DEFAULT_SEED,
    photospheres: PhotospheresOption = DEFAULT_USER_FRACTION,
) -> None:
    """Collect street-level images for the workspace's points.

    Asynchronous, rate-limited and resumable: rerun the same command to continue; done
    images are never fetched twice. Labels come from where each panorama really is.
    Every image is decoded and its size checked before it counts. Exits 1 when nothing
    succeeded or more than --max-failure-rate failed, naming the commonest reason.
    Writes images/, manifest.sqlite and images.parquet.

    Example:

        geotag scrape -w india --provider sim --radius 5000

        GOOGLE_MAPS_API_KEY=... geotag scrape -w india --radius 1000 --max-images 2000
    """
    from rich.progress import Progress as RichProgressBar

    from geotag.scrape.providers.base import ImageOptions
    from geotag.scrape.shard import parse_shard
    from geotag.stages.scrape import ScrapeOptions, run_scrape

    with reporting_errors(), locked(workspace, "scrape"):
        name = provider.value
        spec = PROVIDERS[name]
        key = api_key or (os.environ.get(spec.key_env) if spec.key_env else None)
        # A provider gets only the options it declares: for the others --seed and
        # --photospheres are ignored, as they always were (a default looks like a given value).
        offered = {"seed": seed, "photospheres": photospheres}
        taken = {option.name for option in spec.options}
        options = ScrapeOptions(
            provider=name,
            image=ImageOptions(
                headings=ImageOptions.parse_headings(headings),
                size=size,
                fov=fov,
                pitch=pitch,
                radius_m=radius,
                source=source,
            ),
            concurrency=concurrency,
            rate=rate,
            max_attempts=max_attempts,
            max_images=max_images,
            retry_failed=retry_failed,
            max_failure_rate=max_failure_rate,
            deadline_s=deadline,
            shard=parse_shard(shard) if shard else None,
            dry_run=dry_run,
            base_url=base_url,
            api_key=key,
            signing_secret=signing_secret,
            provider_options={k: v for k, v in offered.items() if k in taken},
        )
        columns = bar_columns()
        with RichProgressBar(*columns, console=console, disable=dry_run) as bar:
            result = run_scrape(
                Workspace(workspace),
                options,
                on_update=ScrapeDisplay(bar),
                on_notice=lambda text: console.print(f"[yellow]Note:[/yellow] {text}"),
            )
    if result.dry_run is not None:
        plan = result.dry_run
        console.print(
            f"Dry run: {plan.lookups:,} points to look up, {plan.pending_images:,} images "
            f"pending; at most {plan.max_requests:,} requests and {plan.max_images:,} images."
        )
        if plan.price_usd is not None:
            console.print(
                f"At most ${plan.price_usd:,.2f} at ${plan.price_per_1000_usd:.2f} per 1,000 "
                f"images ({plan.price_source}); metadata requests are free."
            )
        return
    table = Table(title="scrape", show_header=False, title_justify="left")
    for label, value in _summary_rows(result):
        table.add_row(label, markup_safe(value))
    table.add_row("time", f"{result.seconds:.1f} s")
    console.print(table)
    if result.interrupted:
        err_console.print("[yellow]Interrupted.[/yellow] Rerun the same command to resume.")
        raise typer.Exit(code=130)
    if result.problem is not None:
        err_console.print(
            f"[red]Error:[/red] {markup_safe(result.problem)}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=1)


def import_(
    source: Annotated[
        Path,
        typer.Argument(
            help="CSV/Parquet with path,lat,lon (optional group, heading, captured, "
            "copyright, license), or a folder of JPEGs with EXIF GPS tags.",
            show_default=False,
        ),
    ],
    workspace: WorkspaceOption = Path("."),
    link: Annotated[
        bool,
        typer.Option("--link", help="Hard-link JPEGs instead of copying them (same disk)."),
    ] = False,
    provider: Annotated[
        str, typer.Option("--provider", help="Where the photos come from, for images.parquet.")
    ] = "import",
    license: Annotated[
        str | None, typer.Option("--license", help="Licence of the photos, e.g. CC-BY-SA-4.0.")
    ] = None,
    show_skipped: Annotated[
        int, typer.Option("--show-skipped", help="List at most this many skipped files.")
    ] = 20,
) -> None:
    """Add photos you already have to the dataset, labelled by grid cell.

    Images outside the region, without GPS, unreadable or duplicated are listed and
    skipped; nothing is half-imported. Rerunning the same import rewrites the same rows.
    Writes images/ and images.parquet.

    Example:

        geotag import my-photos/ -w india

        geotag import photos.csv -w india --license CC-BY-4.0
    """
    from geotag.stages.import_images import run_import

    with reporting_errors(), locked(workspace, "import"), progress_bar() as progress:
        result = run_import(
            Workspace(workspace),
            source,
            link=link,
            provider=provider,
            license=license,
            progress=progress,
        )
    how = f" ({result.linked:,} hard-linked)" if result.linked else ""
    converted = f", {result.converted:,} converted to JPEG" if result.converted else ""
    console.print(f"Imported {result.imported:,} images{how}{converted} in {result.seconds:.1f} s.")
    for note in result.notes:
        console.print(f"  Note: {note}", highlight=False, soft_wrap=True)
    reasons = {r: s for r, s in result.by_reason().items() if s}
    if reasons:
        table = Table(title="skipped", show_header=False, title_justify="left")
        for reason, items in reasons.items():
            table.add_row(reason, f"{len(items):,}")
        console.print(table)
        for item in result.skipped[: max(show_skipped, 0)]:
            console.print(
                f"  {item.source}: {item.reason} ({item.detail})", highlight=False, soft_wrap=True
            )
        if len(result.skipped) > show_skipped:
            console.print(f"  … and {len(result.skipped) - show_skipped:,} more")


def _summary_rows(result: ScrapeResult) -> list[tuple[str, str]]:
    """Plain (label, value) rows for the CLI's closing table."""
    counts, totals = result.counts, result.totals
    common = counts.commonest_failure()
    extra = []
    if result.reset != (0, 0):
        extra.append(("retried afresh", f"{result.reset[0]:,} points, {result.reset[1]:,} images"))
    if common is not None:
        extra.append(("commonest failure", f"{common[0]} ({common[1]:,})"))
    if counts.refunded:
        extra.append(("attempts given back", f"{counts.refunded:,} (nothing succeeded)"))
    points_failed = totals.get("points_failed", 0) + totals.get("points_rejected", 0)
    images_failed = totals.get("images_failed", 0) + totals.get("images_rejected", 0)
    if points_failed or images_failed:
        extra.append(
            (
                "failed in the workspace",
                f"{points_failed:,} points, {images_failed:,} images (rerun to retry those "
                "with attempts left; --retry-failed retries all)",
            )
        )
    return [
        *extra,
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
