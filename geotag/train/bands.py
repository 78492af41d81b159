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
    """``fraction`` of the image across, along ``side``, starting ``inset`` from that edge
    (0: at the edge). An inset band is what an audit tests when a run's own mask already
    blanks the edge: the part of the band the mask leaves visible."""

    side: str
    fraction: float
    inset: float = 0.0

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise InputError(f"band side must be one of {', '.join(SIDES)}; got {self.side!r}")
        if not 0.0 <= self.fraction <= MAX_FRACTION:
            raise InputError(
                f"band fraction must lie in [0, {MAX_FRACTION}]; got {self.fraction:g}"
            )
        if not 0.0 <= self.inset <= MAX_FRACTION - self.fraction + 1e-9:
            raise InputError(
                f"a band must end within {MAX_FRACTION} of its edge; got {self.inset:g} to "
                f"{self.inset + self.fraction:g}"
            )

    def __str__(self) -> str:
        if self.inset:
            return f"{self.side}:{self.inset:g}-{self.inset + self.fraction:g}"
        return f"{self.side}:{self.fraction:g}"

    def opposite(self) -> Band:
        """The band of the same size on the other side: the audit's control."""
        return Band(OPPOSITE[self.side], self.fraction, self.inset)

    def uncovered_by(self, mask: Band | None) -> Band | None:
        """The part of this band that ``mask`` (a run's own mask) leaves visible: the band
        itself when the mask lies on another side, None when the mask covers all of it."""
        if mask is None or mask.side != self.side or mask.inset > self.inset:
            return self
        end = self.inset + self.fraction
        covered_to = mask.inset + mask.fraction
        if covered_to >= end - 1e-9:
            return None
        start = max(self.inset, covered_to)
        return Band(self.side, round(end - start, 6), round(start, 6))

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The band as a PIL box (left, upper, right, lower) in pixels."""
        extent = height if self.side in ("top", "bottom") else width
        near = round(extent * self.inset)
        far = round(extent * (self.inset + self.fraction))
        return {
            "bottom": (0, height - far, width, height - near),
            "top": (0, near, width, far),
            "left": (near, 0, far, height),
            "right": (width - far, 0, width - near, height),
        }[self.side]


def parse_band(text: str) -> Band:
    """``"bottom:0.1"`` -> Band("bottom", 0.1); ``"bottom:0.1-0.15"`` -> the band from 0.1
    to 0.15 of the height above the bottom edge, Band("bottom", 0.05, inset=0.1)."""
    side, _, span = text.partition(":")
    start, dash, end = span.partition("-")
    try:
        numbers = (float(start), float(end)) if dash else (0.0, float(start))
    except ValueError:
        raise InputError(
            f"a band looks like bottom:0.1 (side:fraction) or bottom:0.1-0.15 (side:from-to); "
            f"got {text!r}"
        ) from None
    if numbers[1] < numbers[0]:
        raise InputError(f"a band's end lies beyond its start; got {text!r}")
    return Band(side.strip().lower(), round(numbers[1] - numbers[0], 6), numbers[0])


def blank_band(
    image: Image.Image, band: Band, fill: tuple[int, int, int], *, keep_only: bool = False
) -> Image.Image:
    """A copy of ``image`` with ``band`` painted ``fill`` (or, with ``keep_only``, everything
    but the band). ``fill`` is the model's mean colour, so a blanked pixel normalises to 0."""
    image = image.convert("RGB")
    box = band.box(*image.size)
    if keep_only:
        blanked = Image.new("RGB", image.size, fill)
        if box[2] > box[0] and box[3] > box[1]:
            blanked.paste(image.crop(box), box[:2])
        return blanked
    blanked = image.copy()
    if box[2] > box[0] and box[3] > box[1]:
        blanked.paste(fill, box)
    return blanked
