"""``geotag sim``: the offline street-view world, served, rendered or previewed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geotag.cli.collect import PhotospheresOption
from geotag.cli.common import WorkspaceOption, console, progress_bar, reporting_errors
from geotag.sim.defaults import DEFAULT_USER_FRACTION
from geotag.workspace import Workspace

sim_app = typer.Typer(
    help="The offline street-view world: serve it over the Street View Static API, render "
    "a view, or preview it over a grid.\n\nExample:\n\n    geotag sim serve --port 8080",
    no_args_is_help=True,
)

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
        # Ctrl-C may come at any moment once the port is bound, even before the banner is
        # out: whatever it interrupts, the server stops and the command ends quietly.
        try:
            server.start()
            console.print(server.base_url, highlight=False)
            console.print("[dim]Serving the simulated Street View API; Ctrl-C stops.[/dim]")
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
    from geotag.gridfile import load_grid
    from geotag.sim import World
    from geotag.sim.views import contact_sheet

    ws = Workspace(workspace)
    with reporting_errors(), progress_bar():
        path, photospheres = contact_sheet(
            World(seed), load_grid(ws), output or ws.root / "sim.png", cells=cells, size=size
        )
    console.print(f"{path}: {photospheres} user-contributed photospheres among the views")
