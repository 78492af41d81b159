"""Bands of an image to blank: ``bottom:0.1`` is the bottom tenth, where the original
study's photographer names were printed. Training masks them to remove a shortcut; eval
and the audit blank a band (or all but a band) to measure how much a model relies on it."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from geotag.errors import InputError

SIDES = ("bottom", "top", "left", "right")
OPPOSITE = {"bottom": "top", "top": "bottom", "left": "right", "right": "left"}
MAX_FRACTION = 0.9


@dataclass(frozen=True)
class Band:
    side: str
    fraction: float

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise InputError(f"band side must be one of {', '.join(SIDES)}; got {self.side!r}")
        if not 0.0 <= self.fraction <= MAX_FRACTION:
            raise InputError(
                f"band fraction must lie in [0, {MAX_FRACTION}]; got {self.fraction:g}"
            )

    def __str__(self) -> str:
        return f"{self.side}:{self.fraction:g}"

    def opposite(self) -> Band:
        """The band of the same size on the other side: the audit's control."""
        return Band(OPPOSITE[self.side], self.fraction)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The band as a PIL box (left, upper, right, lower) in pixels."""
        across = round((height if self.side in ("top", "bottom") else width) * self.fraction)
        return {
            "bottom": (0, height - across, width, height),
            "top": (0, 0, width, across),
            "left": (0, 0, across, height),
            "right": (width - across, 0, width, height),
        }[self.side]


def parse_band(text: str) -> Band:
    """``"bottom:0.1"`` -> Band("bottom", 0.1)."""
    side, _, number = text.partition(":")
    try:
        fraction = float(number)
    except ValueError:
        raise InputError(f"a band looks like bottom:0.1 (side:fraction); got {text!r}") from None
    return Band(side.strip().lower(), fraction)


def blank_band(
    image: Image.Image, band: Band, fill: tuple[int, int, int], *, keep_only: bool = False
) -> Image.Image:
    """A copy of ``image`` with ``band`` painted ``fill`` (or, with ``keep_only``, everything
    but the band). ``fill`` is the model's mean colour, so a blanked pixel normalises to 0."""
    image = image.convert("RGB")
    box = band.box(*image.size)
    if keep_only:
        blanked = Image.new("RGB", image.size, fill)
        blanked.paste(image.crop(box), box[:2])
        return blanked
    blanked = image.copy()
    if band.fraction > 0:
        blanked.paste(fill, box)
    return blanked
