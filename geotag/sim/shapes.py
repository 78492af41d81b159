"""The shapes a district draws: its tree crowns and its landmarks, one function per kind.

``TREES`` and ``LANDMARKS`` map each kind that ``geotag.sim.districts`` can give a district
to the function that draws it with Pillow. A landmark is told apart by its outline (a
shaft, a dome, a tank on legs, a mast, a stepped tower, a turbine), not by its colour:
per-shot exposure and colour cast vary far more than a district's hue could.

Every function draws one object standing on the row ``base`` at column ``x``; ``size`` is
a tree's crown radius or a landmark's width, in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import ImageDraw

Colour = tuple[int, int, int]
Shape = Callable[[ImageDraw.ImageDraw, float, float, float, Colour], None]

TRUNK = (85, 60, 40)


# -- tree crowns ---------------------------------------------------------------------------
def _round(draw: ImageDraw.ImageDraw, x: float, base: float, r: float, colour: Colour) -> None:
    draw.rectangle([x - r * 0.12, base - r * 1.4, x + r * 0.12, base], fill=TRUNK)
    draw.ellipse([x - r, base - r * 2.6, x + r, base - r * 0.9], fill=colour)


def _cone(draw: ImageDraw.ImageDraw, x: float, base: float, r: float, colour: Colour) -> None:
    draw.rectangle([x - r * 0.12, base - r * 0.8, x + r * 0.12, base], fill=TRUNK)
    draw.polygon(
        [(x, base - r * 3.2), (x + r, base - r * 0.6), (x - r, base - r * 0.6)], fill=colour
    )


def _palm(draw: ImageDraw.ImageDraw, x: float, base: float, r: float, colour: Colour) -> None:
    draw.rectangle([x - r * 0.08, base - r * 2.9, x + r * 0.08, base], fill=TRUNK)
    draw.ellipse([x - r * 1.2, base - r * 3.2, x + r * 1.2, base - r * 2.6], fill=colour)
    draw.polygon(
        [(x - r * 1.1, base - r * 2.2), (x, base - r * 3.0), (x + r * 1.1, base - r * 2.2)],
        fill=colour,
    )


def _umbrella(draw: ImageDraw.ImageDraw, x: float, base: float, r: float, colour: Colour) -> None:
    draw.rectangle([x - r * 0.1, base - r * 1.9, x + r * 0.1, base], fill=TRUNK)
    draw.ellipse([x - r * 1.5, base - r * 2.4, x + r * 1.5, base - r * 1.6], fill=colour)


def _column(draw: ImageDraw.ImageDraw, x: float, base: float, r: float, colour: Colour) -> None:
    draw.rectangle([x - r * 0.12, base - r * 0.8, x + r * 0.12, base], fill=TRUNK)
    draw.ellipse([x - r * 0.5, base - r * 3.4, x + r * 0.5, base - r * 0.6], fill=colour)


TREES: dict[str, Shape] = {
    "round": _round,
    "cone": _cone,
    "palm": _palm,
    "umbrella": _umbrella,
    "column": _column,
}
#: How far a crown reaches sideways, in crown radii (for the camera's visibility test).
TREE_REACH = 1.5


# -- landmarks -----------------------------------------------------------------------------
def _dark(colour: Colour) -> Colour:
    r, g, b = colour
    return (int(r * 0.6), int(g * 0.6), int(b * 0.6))


def _tower(draw: ImageDraw.ImageDraw, x: float, base: float, w: float, colour: Colour) -> None:
    """A clock tower: a broad shaft, a dark face, a pointed cap."""
    dark = _dark(colour)
    draw.rectangle([x - 0.3 * w, base - 2.7 * w, x + 0.3 * w, base], fill=colour)
    draw.rectangle([x - 0.18 * w, base - 2.45 * w, x + 0.18 * w, base - 2.1 * w], fill=dark)
    draw.polygon(
        [(x - 0.4 * w, base - 2.7 * w), (x + 0.4 * w, base - 2.7 * w), (x, base - 3.4 * w)],
        fill=dark,
    )


def _dome(draw: ImageDraw.ImageDraw, x: float, base: float, w: float, colour: Colour) -> None:
    """A domed hall on a drum, with a finial."""
    draw.rectangle([x - 0.5 * w, base - 0.7 * w, x + 0.5 * w, base], fill=colour)
    draw.pieslice(
        [x - 0.45 * w, base - 1.15 * w, x + 0.45 * w, base - 0.25 * w], 180, 360, fill=colour
    )
    draw.rectangle(
        [x - 0.04 * w, base - 1.45 * w, x + 0.04 * w, base - 1.1 * w], fill=_dark(colour)
    )


def _tank(draw: ImageDraw.ImageDraw, x: float, base: float, w: float, colour: Colour) -> None:
    """An elevated water tank on splayed legs."""
    for foot in (-0.45, 0.0, 0.45):
        draw.line(
            [(x + foot * w, base), (x + foot * 0.4 * w, base - 1.6 * w)],
            fill=_dark(colour),
            width=max(1, round(0.08 * w)),
        )
    draw.rectangle([x - 0.5 * w, base - 2.3 * w, x + 0.5 * w, base - 1.6 * w], fill=colour)


def _mast(draw: ImageDraw.ImageDraw, x: float, base: float, w: float, colour: Colour) -> None:
    """A lattice mast: a very tall, thin triangle with two cross-arms."""
    dark = _dark(colour)
    draw.polygon([(x - 0.25 * w, base), (x + 0.25 * w, base), (x, base - 4.2 * w)], fill=dark)
    for height, half in ((3.4, 0.5), (2.7, 0.35)):
        draw.rectangle(
            [x - half * w, base - height * w, x + half * w, base - (height - 0.12) * w], fill=dark
        )


def _gopuram(draw: ImageDraw.ImageDraw, x: float, base: float, w: float, colour: Colour) -> None:
    """A stepped temple tower: a broad base narrowing tier by tier to a point."""
    for tier, half in enumerate((0.75, 0.6, 0.45, 0.3, 0.15)):
        draw.rectangle(
            [x - half * w, base - (tier + 1) * 0.45 * w, x + half * w, base - tier * 0.45 * w],
            fill=colour if tier % 2 == 0 else _dark(colour),
        )
    draw.polygon(
        [(x - 0.1 * w, base - 2.25 * w), (x + 0.1 * w, base - 2.25 * w), (x, base - 2.6 * w)],
        fill=colour,
    )


def _turbine(draw: ImageDraw.ImageDraw, x: float, base: float, w: float, colour: Colour) -> None:
    """A wind turbine: a thin pole, a hub, three blades."""
    hub = base - 2.4 * w
    draw.rectangle([x - 0.05 * w, hub, x + 0.05 * w, base], fill=colour)
    for angle in (90.0, 210.0, 330.0):
        tip = (x + w * math.cos(math.radians(angle)), hub - w * math.sin(math.radians(angle)))
        draw.line([(x, hub), tip], fill=colour, width=max(1, round(0.1 * w)))
    draw.ellipse([x - 0.12 * w, hub - 0.12 * w, x + 0.12 * w, hub + 0.12 * w], fill=_dark(colour))


LANDMARKS: dict[str, Shape] = {
    "tower": _tower,
    "dome": _dome,
    "tank": _tank,
    "mast": _mast,
    "gopuram": _gopuram,
    "turbine": _turbine,
}
