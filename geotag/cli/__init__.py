"""The ``geotag`` command: a thin Typer layer over :mod:`geotag.stages`.

Each command parses its options, calls one library function and renders the result with
rich. Errors the library raises on purpose (:class:`~geotag.errors.GeotagError`) become
one line and exit code 1; anything else does too, unless ``GEOTAG_DEBUG=1`` asks for the
traceback. The commands live one concern per module; this one only assembles them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from geotag import __version__
from geotag.cli import collect, demo, evaluate, explain, grid, sim, train
from geotag.cli.common import console

app = typer.Typer(
    name="geotag",
    help="Predict where an outdoor photo was taken: grid a region, sample points, collect "
    "street-level images, train, evaluate and audit a classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


app.command("grid")(grid.grid)
app.command("sample")(grid.sample)
app.command("scrape")(collect.scrape)
app.command("import")(collect.import_)
app.command("train")(train.train)
app.command("eval")(evaluate.eval_)
app.command("predict")(evaluate.predict)
app.command("explain")(explain.explain)
app.command("demo")(demo.demo)
app.add_typer(sim.sim_app, name="sim")


def main() -> None:
    app()
