"""The ``geotag`` command: a thin Typer layer over :mod:`geotag.stages`.

Each command parses its options, calls one library function and renders the result with
rich. Errors the library raises on purpose (:class:`GeotagError`) become one line and exit
code 1; anything else does too, unless ``GEOTAG_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from geotag import __version__
from geotag.errors import GeotagError
from geotag.explain.cam import METHOD_NAMES
from geotag.geo.grid import DEFAULT_MIN_REGION_FRACTION, SHAPES
from geotag.geo.sample import DEFAULT_SEED
from geotag.sim.world import DEFAULT_USER_FRACTION
from geotag.stages.train import TrainOptions
from geotag.workspace import Workspace

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgressBar

    from geotag.scrape.scraper import ScrapeCounts
    from geotag.train.loop import EpochResult

app = typer.Typer(
    name="geotag",
    help="Predict where an outdoor photo was taken: grid a region, sample points, collect "
    "street-level images, train, evaluate and audit a classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

ShapeChoice = enum.Enum("ShapeChoice", {name: name for name in SHAPES}, type=str)  # type: ignore[misc]

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar="GEOTAG_WORKSPACE",
        help="Workspace folder holding every stage's files.",
        show_default="current folder",
        file_okay=True,
        dir_okay=True,
    ),
]

#: ``geotag train``'s defaults are the library's, not a copy of them.
TRAIN_DEFAULTS = TrainOptions()

RunOption = Annotated[
    str | None, typer.Option("--run", help="Run name.", show_default="the latest run")
]
PhotospheresOption = Annotated[
    float,
    typer.Option(
        "--photospheres",
        help="Simulator only: the share of panoramas that are user-contributed photospheres, "
        "with a photographer strip.",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]


class RichProgress:
    """The library's Progress, shown as a rich spinner with the current task's name."""

    def __init__(self, status: object) -> None:
        self._status = status

    def start(self, task: str, total: int | None) -> None:
        self._status.update(f"{task}…")  # type: ignore[attr-defined]

    def advance(self, steps: int = 1) -> None:
        pass


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn library errors into ``Error: <one line>`` and exit 1 (traceback only on debug)."""
    debug = os.environ.get("GEOTAG_DEBUG", "") not in ("", "0")
    try:
        yield
    except GeotagError as exc:
        if debug:
            raise
        err_console.print(f"[red]Error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/yellow] Files already written are kept.")
        raise typer.Exit(code=130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err_console.print(
            f"[red]Error:[/red] unexpected {type(exc).__name__}: {message} "
            "(set GEOTAG_DEBUG=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None


def _version(value: bool) -> None:
    if value:
        console.print(f"geotag {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Photo geolocation toolkit."""


def _warn(messages: tuple[str, ...]) -> None:
    for message in messages:
        err_console.print(f"[yellow]Warning:[/yellow] {message}", highlight=False)


def _files_table(files: tuple[Path, ...]) -> str:
    return ", ".join(str(f) for f in files)


@app.command()
def grid(
    workspace: WorkspaceOption = Path("."),
    cell_km: Annotated[
        float,
        typer.Option(
            "--cell-km",
            help="Cell size: every cell has the area of a K x K km square.",
        ),
    ] = 100.0,
    country: Annotated[
        str | None,
        typer.Option(
            "--country",
            "-c",
            help="Country name or ISO 3166 code (IN, IND, India). Default: India.",
        ),
    ] = None,
    region: Annotated[
        Path | None,
        typer.Option(
            "--region",
            help="Boundary file (GeoJSON, GeoPackage, Shapefile, GeoParquet); features are "
            "unioned.",
        ),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option("--bbox", help="Bounding box W,S,E,N in degrees, e.g. 68,6,98,36."),
    ] = None,
    shape: Annotated[
        ShapeChoice,  # type: ignore[valid-type]
        typer.Option("--shape", help="Cell shape; hex is the isometric grid, h3 uses Uber's H3."),
    ] = ShapeChoice.hex,  # type: ignore[attr-defined]
    min_region_fraction: Annotated[
        float,
        typer.Option(
            "--min-region-fraction",
            help="Drop cells with less than this share of their area inside the region.",
        ),
    ] = DEFAULT_MIN_REGION_FRACTION,
) -> None:
    """Overlay a grid of equal-area cells onto a country or region.

    Writes grid.parquet (GeoParquet), grid.geojson, grid.png and region.parquet.

    Example:

        geotag grid --country India --cell-km 100 -w india
    """
    from geotag.stages.grid import run_grid

    with reporting_errors(), console.status("gridding…") as status:
        result = run_grid(
            Workspace(workspace),
            country=country,
            region_file=region,
            bbox=bbox,
            cell_km=cell_km,
            shape=shape.value,
            min_region_fraction=min_region_fraction,
            progress=RichProgress(status),
        )
    _warn(result.warnings)
    made = result.grid
    table = Table(title=f"grid of {made.region.name}", show_header=False, title_justify="left")
    table.add_row("cells", f"{len(made.cells):,} {made.shape}")
    if made.h3_resolution is not None:
        table.add_row(
            "H3 resolution",
            f"{made.h3_resolution} (asked for {made.cell_km:g} km = {made.cell_km**2:,.0f} km²)",
        )
    table.add_row(
        "cell area",
        f"{made.cell_area_km2:,.1f} km² (= {made.cell_area_km2**0.5:,.2f} km square)",
    )
    table.add_row("region area", f"{made.region_area_km2:,.0f} km²")
    table.add_row(
        "dropped",
        f"{made.dropped_cells:,} cells under {made.min_region_fraction:g} of area in region",
    )
    table.add_row("written", _files_table(result.files))
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)


@app.command()
def sample(
    workspace: WorkspaceOption = Path("."),
    per_cell: Annotated[
        int | None,
        typer.Option("--per-cell", help="Points in every cell (default 10)."),
    ] = None,
    total: Annotated[
        int | None,
        typer.Option("--total", help="Points in all, spread over cells by area in the region."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (recorded).")] = DEFAULT_SEED,
) -> None:
    """Draw points uniformly per unit area inside each cell of the workspace's grid.

    Writes points.parquet (point_id, cell_id, lat, lon) and points.png.

    Example:

        geotag sample --per-cell 20 -w india
    """
    from geotag.stages.sample import run_sample

    with reporting_errors(), console.status("sampling…") as status:
        result = run_sample(
            Workspace(workspace),
            per_cell=per_cell,
            total=total,
            seed=seed,
            progress=RichProgress(status),
        )
    table = Table(title="sample", show_header=False, title_justify="left")
    table.add_row("points", f"{len(result.points):,} in {result.cells:,} cells (seed {seed})")
    table.add_row("written", _files_table(result.files))
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)


# -- geotag scrape ----------------------------------------------------------------------

ProviderChoice = enum.Enum(  # type: ignore[misc]
    "ProviderChoice",
    {name: name for name in ("google", "mapillary", "panoramax", "sim")},
    type=str,
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


@app.command()
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
        int, typer.Option("--max-attempts", help="Tries per request, across reruns.")
    ] = 5,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Download at most this many this run.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Send nothing; print the most it could cost.")
    ] = False,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Only points I of N machines, as I/N.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (provider sim).")] = 0,
    photospheres: PhotospheresOption = DEFAULT_USER_FRACTION,
) -> None:
    """Collect street-level images for the workspace's points.

    Asynchronous, rate-limited and resumable: rerun the same command to continue; done
    images are never fetched twice. Labels come from where each panorama really is.
    Writes images/, manifest.sqlite and images.parquet.

    Example:

        geotag scrape -w india --provider sim --radius 5000

        GOOGLE_MAPS_API_KEY=... geotag scrape -w india --radius 1000 --max-images 2000
    """
    from rich.progress import MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgressBar

    from geotag.scrape.providers.base import ImageOptions
    from geotag.scrape.registry import PROVIDERS
    from geotag.stages.scrape import ScrapeOptions, parse_shard, run_scrape, summary_rows

    with reporting_errors():
        name = provider.value
        key_env = PROVIDERS[name].key_env
        key = api_key or (os.environ.get(key_env) if key_env else None)
        options = ScrapeOptions(
            provider=name,
            image=ImageOptions(
                headings=_parse_headings(headings),
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
            shard=parse_shard(shard) if shard else None,
            dry_run=dry_run,
            base_url=base_url,
            api_key=key,
            signing_secret=signing_secret,
            sim_seed=seed,
            sim_photospheres=photospheres,
        )
        columns = (
            *RichProgressBar.get_default_columns()[:2],
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
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
    for label, value in summary_rows(result):
        table.add_row(label, value)
    table.add_row("time", f"{result.seconds:.1f} s")
    console.print(table)
    if result.interrupted:
        err_console.print("[yellow]Interrupted.[/yellow] Rerun the same command to resume.")
        raise typer.Exit(code=130)


# -- geotag import -----------------------------------------------------------------------


@app.command("import")
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

    with reporting_errors(), console.status("importing…") as status:
        result = run_import(
            Workspace(workspace),
            source,
            link=link,
            provider=provider,
            license=license,
            progress=RichProgress(status),
        )
    how = f" ({result.linked:,} hard-linked)" if result.linked else ""
    converted = f", {result.converted:,} converted to JPEG" if result.converted else ""
    console.print(f"Imported {result.imported:,} images{how}{converted} in {result.seconds:.1f} s.")
    reasons = {r: s for r, s in result.by_reason().items() if s}
    if reasons:
        table = Table(title="skipped", show_header=False, title_justify="left")
        for reason, items in reasons.items():
            table.add_row(reason, f"{len(items):,}")
        console.print(table)
        for item in result.skipped[: max(show_skipped, 0)]:
            console.print(f"  {item.source}: {item.reason} ({item.detail})", highlight=False)
        if len(result.skipped) > show_skipped:
            console.print(f"  … and {len(result.skipped) - show_skipped:,} more")


def _parse_headings(text: str) -> tuple[float, ...]:
    from geotag.errors import InputError

    try:
        values = tuple(float(part) % 360.0 for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--headings must be degrees separated by commas; got {text!r}") from None
    if not values:
        raise InputError("--headings needs at least one heading")
    return tuple(dict.fromkeys(values))


# -- geotag train ------------------------------------------------------------------------


class BarProgress:
    """The library's Progress on a rich progress bar: one task, renamed as work moves on."""

    def __init__(self, bar: RichProgressBar) -> None:
        self.bar = bar
        self.task = bar.add_task("starting", total=None)

    def start(self, task: str, total: int | None) -> None:
        self.bar.update(self.task, description=task, total=total, completed=0)

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task, steps)


@app.command()
def train(
    workspace: WorkspaceOption = Path("."),
    model: Annotated[
        str, typer.Option("--model", help="Any timm architecture name.")
    ] = TRAIN_DEFAULTS.model,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="Start from the model's pretrained weights (downloaded once; needs internet).",
        ),
    ] = True,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Local .safetensors/.pth weights for offline machines."),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Input side in pixels.", show_default="the model's"),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", help="Passes over the training folds.")
    ] = TRAIN_DEFAULTS.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Images per step.")
    ] = TRAIN_DEFAULTS.batch_size,
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (AdamW).")
    ] = TRAIN_DEFAULTS.lr,
    patience: Annotated[
        int | None,
        typer.Option("--patience", help="Stop after this many epochs without a better val top-1."),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", help="Cross-validation folds.")
    ] = TRAIN_DEFAULTS.folds,
    fold: Annotated[
        str, typer.Option("--fold", help="Fold to validate on, or 'all' for every fold in turn.")
    ] = "0",
    split: Annotated[
        str,
        typer.Option(
            "--split", help="group: by panorama/place; spatial: by coarse H3 block (stricter)."
        ),
    ] = "group",
    min_images_per_cell: Annotated[
        int, typer.Option("--min-images-per-cell", help="Cells with fewer images are no class.")
    ] = 1,
    mask_bottom: Annotated[
        float,
        typer.Option(
            "--mask-bottom", help="Blank this bottom fraction of every image (0-0.9), everywhere."
        ),
    ] = 0.0,
    hflip: Annotated[
        bool, typer.Option("--hflip", help="Random horizontal flips (swaps the driving side).")
    ] = False,
    label_smoothing: Annotated[
        str, typer.Option("--label-smoothing", help="none, or haversine (PIGEON).")
    ] = "none",
    tau_km: Annotated[
        float, typer.Option("--tau-km", help="Haversine smoothing temperature, km.")
    ] = TRAIN_DEFAULTS.tau_km,
    views: Annotated[
        int, typer.Option("--views", help="Headings per sample (multi-view training).")
    ] = 1,
    fusion: Annotated[
        str, typer.Option("--fusion", help="mean (PIGEON) or concat (DeepGeo) of view features.")
    ] = "mean",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="DataLoader workers.", show_default="0 on a CPU, cores - 1 on a GPU"
        ),
    ] = None,
    device: DeviceOption = "auto",
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (GPU; slow start).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for folds, init and order.")] = 0,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Run name under runs/.", show_default="a timestamp"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run --name.")
    ] = False,
) -> None:
    """Train a timm classifier over the grid cells, cross-validated by location.

    Writes runs/NAME/: config.json, folds.csv and per fold model.safetensors (best by
    validation), last.ckpt and history.csv. Runs data-parallel under torchrun.

    Example:

        geotag train -w india --model resnet18 --image-size 128 --epochs 5

        torchrun --nproc_per_node 4 -m geotag train -w india --fold all
    """
    from rich.progress import MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgressBar

    from geotag.stages.train import TrainOptions, run_train

    options = TrainOptions(
        model=model,
        pretrained=pretrained,
        weights=weights,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        folds=folds,
        fold=fold,
        split=split,
        min_images_per_cell=min_images_per_cell,
        mask_bottom=mask_bottom,
        hflip=hflip,
        label_smoothing=label_smoothing,
        tau_km=tau_km,
        views=views,
        fusion=fusion,
        workers=workers,
        device=device,
        compile=compile_model,
        seed=seed,
        name=name,
        resume=resume,
    )
    main = int(os.environ.get("RANK", "0")) == 0
    columns = (
        *RichProgressBar.get_default_columns()[:2],
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )

    def show_epoch(r: EpochResult) -> None:
        console.print(
            f"fold {r.fold} epoch {r.epoch}/{r.epochs}: train loss {r.train_loss:.3f}, "
            f"val loss {r.val_loss:.3f}, top-1 {r.val_top1:.1%}, top-5 {r.val_top5:.1%}, "
            f"median {r.val_median_km:,.0f} km, {r.images_per_s:.0f} img/s"
            + (" *" if r.best else ""),
            highlight=False,
        )

    with (
        reporting_errors(),
        RichProgressBar(*columns, console=console, disable=not main, transient=True) as bar,
    ):
        result = run_train(
            Workspace(workspace),
            options,
            progress=BarProgress(bar),
            on_epoch=show_epoch if main else None,
            on_notice=lambda text: _warn((text,)),
        )
    if not main:
        return
    table = Table(title=f"run {result.name}", title_justify="left")
    for column in ("fold", "best epoch", "val top-1", "val top-5", "median km", "stopped"):
        table.add_column(column, justify="right")
    for fold_id, outcome in result.outcomes.items():
        best = outcome.history[outcome.best_epoch - 1] if outcome.best_epoch else None
        table.add_row(
            str(fold_id),
            str(outcome.best_epoch),
            f"{best['val_top1']:.1%}" if best else "-",
            f"{best['val_top5']:.1%}" if best else "-",
            f"{best['val_median_km']:,.0f}" if best else "-",
            "early" if outcome.stopped_early else "",
        )
    console.print(table)
    chance = 1 / result.classes
    console.print(
        f"{result.classes} classes (chance {chance:.1%}), {result.samples:,} samples, "
        f"device {result.device}, {result.seconds:.0f} s. Files in {result.folder}."
    )


# -- geotag eval -------------------------------------------------------------------------


@app.command("eval")
def eval_(
    workspace: WorkspaceOption = Path("."),
    run: RunOption = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="A separate test set (an images.parquet table)."),
    ] = None,
    mask_bottom: Annotated[
        float | None,
        typer.Option("--mask-bottom", help="Also blank this bottom fraction (ablation)."),
    ] = None,
    mask: Annotated[
        str | None,
        typer.Option("--mask", help="Also blank a band: bottom|top|left|right:FRACTION."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 64,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="DataLoader workers.", show_default="0 on a CPU, cores - 1 on a GPU"
        ),
    ] = None,
    device: DeviceOption = "auto",
) -> None:
    """Score a trained run: accuracy, km errors, GeoScore, confusion matrix and maps.

    Each fold is scored on its own held-out images, per image and per location (the
    headings of one place fused). Writes runs/NAME/eval/ (eval-BAND/ with a mask).

    Example:

        geotag eval -w india

        geotag eval -w india --mask bottom:0.1
    """
    from geotag.stages.evaluate import EvalOptions, run_eval
    from geotag.train.bands import Band, parse_band

    with reporting_errors():
        if mask is not None and mask_bottom is not None:
            from geotag.errors import InputError

            raise InputError("give --mask or --mask-bottom, not both")
        band = parse_band(mask) if mask else (Band("bottom", mask_bottom) if mask_bottom else None)
        with console.status("evaluating…") as status:
            result = run_eval(
                Workspace(workspace),
                EvalOptions(run=run, images=images, mask=band, batch_size=batch_size,
                            workers=workers, device=device),
                progress=RichProgress(status),
            )  # fmt: skip
    _print_metrics(result.metrics)
    console.print(f"Files in {result.folder} ({result.seconds:.0f} s).")


def _print_metrics(metrics: dict[str, object]) -> None:
    """The headline metrics, per image and per location, mean +/- std over folds."""
    headline = str(metrics["headline"])
    chance = float(metrics["chance_top1"])  # type: ignore[arg-type]
    table = Table(title=f"run {metrics['run']}: {metrics['test_set']}, folds {metrics['folds']}")
    table.add_column("metric")
    table.add_column("per image", justify="right")
    table.add_column("per location", justify="right")
    table.add_column("chance", justify="right")

    def cell(view: str, *keys: str, percent: bool = False) -> str:
        part = metrics[view]
        mean, std = part["mean"], part["std"]  # type: ignore[index]
        for key in keys:
            mean, std = mean[key], std[key]
        # One fold has no spread to show.
        single = len(metrics["folds"]) < 2  # type: ignore[arg-type]
        if percent:
            return f"{mean:.1%}" if single else f"{mean:.1%} ± {std:.1%}"
        return f"{mean:,.0f}" if single else f"{mean:,.0f} ± {std:,.0f}"

    rows: list[tuple[str, tuple[str, ...], bool, str]] = [
        ("top-1", ("top1",), True, f"{chance:.1%}"),
        ("top-5", ("top5",), True, f"{min(1.0, 5 * chance):.1%}"),
        ("balanced accuracy", ("balanced_accuracy",), True, f"{chance:.1%}"),
        (f"median km ({headline})", ("predictors", headline, "median_km"), False, ""),
        (f"mean km ({headline})", ("predictors", headline, "mean_km"), False, ""),
        (f"GeoScore ({headline})", ("predictors", headline, "geoscore"), False, ""),
    ]
    rows += [
        (
            f"within {radius} km ({headline})",
            ("predictors", headline, f"within_{radius}km"),
            True,
            "",
        )
        for radius in (25, 200, 750)
    ]
    for label, keys, percent, baseline in rows:
        table.add_row(
            label,
            cell("per_image", *keys, percent=percent),
            cell("per_location", *keys, percent=percent),
            baseline,
        )
    console.print(table)
    note = (
        "weighted mean of the top-5 cell centres" if headline == "weighted" else "top cell's centre"
    )
    console.print(f"Predicted point: {note} (the better of the two; both in metrics.json).")


# -- geotag predict ----------------------------------------------------------------------


@app.command()
def predict(
    images: Annotated[
        list[Path], typer.Argument(help="Photos, or folders of photos.", show_default=False)
    ],
    workspace: WorkspaceOption = Path("."),
    run: RunOption = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Cells to list per photo.")] = 5,
    fuse: Annotated[
        bool, typer.Option("--fuse", help="Treat all photos as views of one place.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table.")
    ] = False,
    map_path: Annotated[
        Path | None,
        typer.Option("--map", help="Draw the first photo's (or the fused) top cells and point."),
    ] = None,
    device: DeviceOption = "auto",
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Decoding processes.", show_default="0-1 on a CPU"),
    ] = None,
) -> None:
    """Where was this photo taken? Top cells, a point and the nearest place.

    When a photo has EXIF GPS tags the true location and the error are shown too.

    Example:

        geotag predict -w india photo.jpg

        geotag predict -w india street/ --fuse --json
    """
    import json as json_lib

    from geotag.stages.predict import PredictOptions, run_predict

    with reporting_errors():
        result = run_predict(
            Workspace(workspace),
            images,
            PredictOptions(run=run, top_k=top_k, fuse=fuse, device=device, workers=workers),
        )
        if map_path is not None:
            from geotag.report.prediction import plot_prediction

            plot_prediction(Workspace(workspace), result.predictions[0], map_path)
    for path, why in result.bad:
        err_console.print(
            f"[yellow]Skipped[/yellow] {path}: {why}", highlight=False, soft_wrap=True
        )
    if as_json:
        for prediction in result.predictions:
            print(json_lib.dumps(prediction.to_json(), ensure_ascii=False))
        return
    for prediction in result.predictions:
        name = (
            prediction.paths[0] if len(prediction.paths) == 1 else f"{len(prediction.paths)} views"
        )
        table = Table(title=name, title_justify="left")
        for column in ("rank", "cell", "probability", "centre"):
            table.add_column(column, justify="right")
        for rank, guess in enumerate(prediction.top_k, 1):
            table.add_row(str(rank), str(guess.cell_id), f"{guess.probability:.1%}",
                          f"{guess.lat:.3f}, {guess.lon:.3f}")  # fmt: skip
        console.print(table)
        place = ", ".join(p for p in (prediction.place, prediction.country) if p)
        console.print(
            f"  predicted {prediction.lat:.4f}, {prediction.lon:.4f}"
            + (f" (near {place})" if place else ""),
            highlight=False,
        )
        if prediction.error_km is not None:
            console.print(
                f"  EXIF GPS {prediction.true_lat:.4f}, {prediction.true_lon:.4f}: "
                f"error {prediction.error_km:,.1f} km",
                highlight=False,
            )
    if map_path is not None:
        console.print(f"Map: {map_path}")


# -- geotag explain ----------------------------------------------------------------------

MethodChoice = enum.Enum(  # type: ignore[misc]
    "MethodChoice", {name: name for name in METHOD_NAMES}, type=str
)


class FailOn(str, enum.Enum):
    never = "never"
    suspect = "suspect"
    shortcut = "shortcut"


@app.command()
def explain(
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Photos or folders to explain (not needed with --audit).", show_default=False
        ),
    ] = None,
    workspace: WorkspaceOption = Path("."),
    run: RunOption = None,
    method: Annotated[
        MethodChoice,  # type: ignore[valid-type]
        typer.Option("--method", help="pytorch-grad-cam method."),
    ] = MethodChoice.gradcam,  # type: ignore[attr-defined]
    target: Annotated[
        str, typer.Option("--target", help="'predicted', or a cell id to explain.")
    ] = "predicted",
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            help="Target layer name.",
            show_default="the last stage with a map of 4 x 4 or more",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for overlays.", show_default="runs/NAME/explain"),
    ] = None,
    audit: Annotated[
        bool, typer.Option("--audit", help="Audit the run's held-out images for a shortcut.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="Audit at most this many images.")] = 500,
    band: Annotated[
        str, typer.Option("--band", help="Band the audit tests, side:fraction.")
    ] = "bottom:0.1",
    test_images: Annotated[
        Path | None,
        typer.Option("--images", help="Audit a separate test set (images.parquet)."),
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 3 when the verdict is at least this.")
    ] = FailOn.never,
    device: DeviceOption = "auto",
) -> None:
    """Grad-CAM heatmaps for photos, or --audit: does the model cheat?

    The audit measures the heat in a band (default: the bottom tenth, where user
    photospheres print the photographer's name), what blanking the band costs against an
    equal-area control band, what the band alone scores, and whether the copyright
    strings predict the cell; its verdict is PASS, SUSPECT or SHORTCUT.
    Writes runs/NAME/explain/ (overlays; audit.json, audit.md and pictures).

    Example:

        geotag explain -w india photo.jpg --method gradcam++

        geotag explain -w india --audit --fail-on shortcut
    """
    from geotag.stages.explain import AuditOptions, ExplainOptions, run_audit, run_explain
    from geotag.train.bands import parse_band

    with reporting_errors():
        if not audit:
            if not images:
                from geotag.errors import InputError

                raise InputError("name photos to explain, or pass --audit")
            with console.status("explaining…") as status:
                result = run_explain(
                    Workspace(workspace), images,
                    ExplainOptions(run=run, method=method.value, target=target, layer=layer,
                                   out=out, device=device),
                    progress=RichProgress(status),
                )  # fmt: skip
        else:
            options = AuditOptions(run=run, images=test_images, limit=limit,
                                   band=parse_band(band), method=method.value, layer=layer,
                                   device=device)  # fmt: skip
            with console.status("auditing…") as status:
                report = run_audit(Workspace(workspace), options, progress=RichProgress(status))
    if not audit:
        for path, why in result.bad:
            err_console.print(f"[yellow]Skipped[/yellow] {path}: {why}", highlight=False,
                              soft_wrap=True)  # fmt: skip
        table = Table(title=f"{result.method}, run {result.run}", title_justify="left")
        for column in ("image", "top-3 cells", "heat top/mid/bottom", "overlay"):
            table.add_column(column)
        for item in result.images:
            table.add_row(
                Path(item.path).name,
                ", ".join(f"{c} {p:.0%}" for c, p in item.top3),
                " / ".join(f"{v:.0%}" for v in item.thirds),
                str(item.overlay) if item.overlay else "[red]all-zero map: nothing saved[/red]",
            )
        console.print(table)
        return
    colour = {"PASS": "green", "SUSPECT": "yellow", "SHORTCUT": "red"}[report.verdict]
    console.print(f"[bold {colour}]{report.verdict}[/bold {colour}] (run {report.run})")
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False)
    if report.data_warning:
        console.print(f"[yellow]Data:[/yellow] {report.data_warning}.", highlight=False)
    conditions = report.figures["ablation"]["conditions"]
    table = Table(title="masking ablation", title_justify="left")
    for column in ("condition", "top-1", "95% interval", "median km"):
        table.add_column(column, justify="right")
    for name, values in conditions.items():
        low, high = values["accuracy_ci"]
        table.add_row(name.replace("_", " "), f"{values['accuracy']:.1%}",
                      f"{low:.1%} to {high:.1%}", f"{values['median_km']:,.0f}")  # fmt: skip
    console.print(table)
    console.print(f"Next: {report.next_step}.", highlight=False)
    console.print(f"Report: {report.folder / 'audit.md'} ({report.seconds:.0f} s).")
    order = ["PASS", "SUSPECT", "SHORTCUT"]
    threshold = {"never": 99, "suspect": 1, "shortcut": 2}[fail_on.value]
    if order.index(report.verdict) >= threshold:
        raise typer.Exit(code=3)


@app.command()
def demo(
    folder: Annotated[
        Path, typer.Argument(help="Workspace for the demo.", show_default=True)
    ] = Path("demo-workspace"),
    fast: Annotated[
        bool, typer.Option("--fast", help="A smaller demo: about a third of the time.")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start again: remove an earlier demo in FOLDER first."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every step.")] = 0,
) -> None:
    """The whole story offline, in minutes: catch a model that cheats, fix it.

    Grids a country, scrapes the built-in simulator over real HTTP with user photospheres
    kept, trains a small CNN, evaluates it, audits it (SHORTCUT: it reads the
    photographer strip), retrains with the strip masked (PASS), and predicts and explains
    held-out photos. Runs the same commands a user would type and prints each one first.

    Rerunning in the same folder keeps what is done and goes on; --fresh starts again. A
    folder that holds anything but a demo is never touched.

    Example:

        geotag demo --fast
    """
    import shlex
    import time

    from geotag import demo as plan

    def run_steps(steps: list[plan.DemoStep], resumed: bool) -> None:
        for step in steps:
            command = shlex.join(["geotag", *step.args])
            console.rule(f"[bold]{step.title}[/bold]", align="left")
            if resumed and not step.always and plan.is_done(folder, step):
                console.print(
                    f"[dim]$ {command}  (done already: skipped)[/dim]",
                    highlight=False,
                    soft_wrap=True,
                )
                continue
            args = plan.command_for(folder, step)
            command = shlex.join(["geotag", *args])
            console.print(f"[bold cyan]$[/bold cyan] {command}", highlight=False, soft_wrap=True)
            code = app(list(args), prog_name="geotag", standalone_mode=False)
            if code:
                raise typer.Exit(code=int(code))

    started = time.perf_counter()
    with reporting_errors():
        resumed = plan.prepare(folder, fresh=fresh, seed=seed, fast=fast)
        if resumed:
            console.print(f"Going on with the demo in {folder} (--fresh starts it again).")
    run_steps(plan.pipeline_steps(folder, fast=fast, seed=seed), resumed)
    with reporting_errors():
        photos = plan.held_out_photos(folder)
    run_steps(plan.photo_steps(folder, photos), resumed)
    with reporting_errors():
        story = plan.read_story(folder)
    console.rule("[bold]what the demo showed[/bold]", align="left")
    table = Table(title_justify="left")
    for column in ("run", "top-1 (chance)", "median km", "audit", "band's excess cost"):
        table.add_column(column)
    for run, verdict, top1, km, excess in (
        (plan.CARELESS_RUN, story.careless_verdict, story.careless_top1,
         story.careless_median_km, story.careless_excess_drop),
        (plan.MASKED_RUN, story.masked_verdict, story.masked_top1, story.masked_median_km,
         story.masked_excess_drop),
    ):  # fmt: skip
        table.add_row(run, f"{top1:.1%} ({story.chance:.1%})", f"{km:,.0f}", verdict,
                      f"{excess:+.1%}")  # fmt: skip
    console.print(table)
    if story.holds:
        console.print(
            "The careless model read the photographer strip; masked, it passes: its "
            f"{story.masked_top1:.1%} is the accuracy to report.",
            highlight=False,
        )
    else:
        err_console.print(
            "[yellow]Warning:[/yellow] this machine did not reproduce SHORTCUT then PASS; "
            "see the two audit.md reports.",
            highlight=False,
        )
    files = Table(title=f"what each step wrote, under {folder}", title_justify="left")
    files.add_column("command")
    files.add_column("files")
    for command, written in plan.WRITTEN:
        files.add_row(f"geotag {command}", written)
    console.print(files)
    console.print(
        f"Pictures: {folder / 'grid.png'}, {folder / 'runs' / plan.CARELESS_RUN / 'explain'}"
        f", {folder / 'runs' / plan.MASKED_RUN / 'eval'}. "
        f"Done in {time.perf_counter() - started:.0f} s.",
        highlight=False,
    )


# -- geotag sim -------------------------------------------------------------------------

sim_app = typer.Typer(
    help="The offline street-view world: serve it over the Street View Static API, render "
    "a view, or preview it over a grid.\n\nExample:\n\n    geotag sim serve --port 8080",
    no_args_is_help=True,
)
app.add_typer(sim_app, name="sim")

SeedOption = Annotated[int, typer.Option("--seed", help="World seed: same seed, same world.")]


@sim_app.command("serve")
def sim_serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.")] = 0,
    seed: SeedOption = 0,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="GEOTAG_SIM_KEY", help="Require this API key."),
    ] = None,
    signing_secret: Annotated[
        str | None,
        typer.Option(
            "--signing-secret",
            envvar="GEOTAG_SIM_SIGNING_SECRET",
            help="Require URLs signed with this secret (url-safe base64).",
        ),
    ] = None,
    qps: Annotated[
        float | None,
        typer.Option("--qps", help="Quota: above this many requests/s answer 429."),
    ] = None,
    fail_rate: Annotated[
        float,
        typer.Option(
            "--fail-rate",
            help="Share of requests that fail: 500/503, dropped connections, truncated bodies.",
        ),
    ] = 0.0,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", help="Delay before every answer.")
    ] = 0.0,
    photospheres: PhotospheresOption = DEFAULT_USER_FRACTION,
) -> None:
    """Serve the simulated world over the Google Street View Static API.

    Implements /maps/api/streetview and /maps/api/streetview/metadata as Google documents
    them, with optional key and URL-signature checks, a quota and injected faults. Prints
    its base URL and serves until interrupted.

    Example:

        geotag sim serve --port 8080 --key test-key --qps 50
    """
    from geotag.sim.server import SimServer
    from geotag.sim.world import World

    with reporting_errors():
        server = SimServer(
            World(seed, user_fraction=photospheres),
            host=host,
            port=port,
            key=key,
            signing_secret=signing_secret,
            qps=qps,
            fail_rate=fail_rate,
            latency_ms=latency_ms,
        )
        server.start()
        console.print(server.base_url, highlight=False)
        console.print("[dim]Serving the simulated Street View API; Ctrl-C stops.[/dim]")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@sim_app.command("render")
def sim_render(
    lat: Annotated[float, typer.Option("--lat", help="Latitude in degrees.")],
    lon: Annotated[float, typer.Option("--lon", help="Longitude in degrees.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JPEG to write.")] = Path(
        "view.jpg"
    ),
    heading: Annotated[float, typer.Option("--heading", help="Compass heading.")] = 0.0,
    pitch: Annotated[float, typer.Option("--pitch", help="Up/down angle, -90..90.")] = 0.0,
    fov: Annotated[float, typer.Option("--fov", help="Field of view, up to 120.")] = 90.0,
    size: Annotated[int, typer.Option("--size", help="Square image side, up to 640.")] = 256,
    radius: Annotated[
        float, typer.Option("--radius", help="Search radius for a panorama, metres.")
    ] = 5000.0,
    source: Annotated[
        str, typer.Option("--source", help="default, or outdoor to skip photospheres.")
    ] = "default",
    seed: SeedOption = 0,
) -> None:
    """Render the view from the simulated panorama nearest to a point.

    Example:

        geotag sim render --lat 12.97 --lon 77.59 --heading 90 -o view.jpg
    """
    from geotag.sim import World
    from geotag.sim.views import save_view, view_near

    with reporting_errors():
        view = view_near(
            World(seed),
            lat,
            lon,
            heading=heading,
            pitch=pitch,
            fov=fov,
            size=size,
            radius_m=radius,
            source=source,
        )
        path = save_view(view, output)
    pano = view.panorama
    console.print(
        f"{path}: panorama {pano.pano_id} at {pano.lat:.5f},{pano.lon:.5f} "
        f"({view.distance_m:,.0f} m away), {pano.date}, {pano.copyright}",
        highlight=False,
    )


@sim_app.command("preview")
def sim_preview(
    workspace: WorkspaceOption = Path("."),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="PNG to write.", show_default="WORKSPACE/sim.png"),
    ] = None,
    cells: Annotated[int, typer.Option("--cells", help="How many cells to show.")] = 24,
    size: Annotated[int, typer.Option("--size", help="Side of each view in pixels.")] = 160,
    seed: SeedOption = 0,
) -> None:
    """A contact sheet of simulated views across the workspace's grid, north to south.

    Example:

        geotag grid -w india && geotag sim preview -w india -o sheet.png
    """
    from geotag.sim import World
    from geotag.sim.views import contact_sheet
    from geotag.stages.grid import load_grid

    ws = Workspace(workspace)
    with reporting_errors(), console.status("rendering…"):
        path, photospheres = contact_sheet(
            World(seed), load_grid(ws), output or ws.root / "sim.png", cells=cells, size=size
        )
    console.print(f"{path}: {photospheres} user-contributed photospheres among the views")


def main() -> None:
    app()
