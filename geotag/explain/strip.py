"""Whether an image carries a photographer strip in a band, judged from its pixels alone.

The shortcut audit needs to know which images carry a strip when their copyright string
is missing. User-contributed photospheres (and the simulator's) print the photographer's
name on a solid tint along one edge; official imagery shows ordinary scene there.

The rule, for the band's pixels and the equally tall rows just inside its inner edge
(above a bottom band, below a top band, right of a left band, left of a right band); the
band's "rows" are its lines parallel to the edge, its "columns" the lines across it:

- the background colour is the per-channel median of the band, and a pixel "matches" it
  when no channel differs by more than ``COLOUR_TOLERANCE``;
- dark: no channel of the background above ``MAX_BRIGHTNESS`` (white lettering needs a
  dark ground; this keeps bright sky and cloud along a top edge out);
- near-uniform: at least ``MIN_COVER`` of the band's pixels match;
- along the whole band: at least ``MIN_SPAN`` of its columns are at least
  ``MIN_COLUMN_COVER`` background (text and avatar leave background above and below);
- rows agree: at least ``MIN_ROWS_AGREEING`` of its rows are at least ``MIN_ROW_COVER``
  background (one edge row may be a blend with the scene after resizing or JPEG);
- a clear contrast: at most ``MAX_NEIGHBOUR_MATCH`` of the neighbouring pixels match.

What it does not detect: a semi-transparent overlay (the scene shows through, so the band
is not uniform), a logo or watermark in a corner (it does not span the band), a light
strip with dark lettering (it fails the darkness test), a strip much thinner than the
band (the band then holds scene rows) or much thicker (the strip goes on past the band's
edge, so there is no contrast), and a band with no rows inside it to compare against. A
uniform stretch of scene that goes on past the band (asphalt, sky, a wall) is not a strip
either: it fails the contrast test.

Thresholds were set on simulator views at 64 to 640 px, where the rule agrees with the
truth on about 99.5% of bottom bands (tests/explain/test_strip.py measures it). The
misses seen: an olive or green tint under grass of nearly its colour (no contrast), and
on top bands, now and then, a dim overcast sky with a row of cloud along the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from geotag.train.bands import Band

# JPEG ringing at a saturated edge shifts the tint's channels by up to ~20 at 64 px.
COLOUR_TOLERANCE = 24
# A strip is dark so that white lettering stays legible; sky and cloud are brighter.
MAX_BRIGHTNESS = 140
# Name and avatar cover at most ~35% of a 64 px strip; scattered scene rarely reaches 60%.
MIN_COVER = 0.6
# A strip's background runs its whole length; a road seen at an angle fills only part.
MIN_SPAN = 0.85
# A column through a letter or the avatar still shows background above and below it.
MIN_COLUMN_COVER = 0.25
# A row through the lettering is about half background; a row of other scene is not.
MIN_ROW_COVER = 0.3
# One row in five may be an edge blended with the scene by resizing or JPEG blocks.
MIN_ROWS_AGREEING = 0.8
# Scene next to a strip rarely shares its tint; a band of scene that goes on shares it.
MAX_NEIGHBOUR_MATCH = 0.25
# Decoding to this width keeps a 640 px strip ~25 rows tall, ample for the rule, and fast.
MAX_WIDTH = 256


def looks_like_strip(pixels: np.ndarray, band: Band) -> bool:
    """Whether ``band`` of ``pixels`` ((H, W, 3) uint8 RGB) holds a photographer strip.

    See the module docstring for the rule; a band under 2 pixels across, or one with no
    rows inside it to compare against, is never a strip.
    """
    array = np.asarray(pixels)
    if array.ndim == 2:  # grey: the same rule on its one channel
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        return False
    height, width = array.shape[:2]
    left, upper, right, lower = band.box(width, height)
    if band.side in ("left", "right"):
        # Work on the transpose so the band's rows (lines along its edge) are array rows.
        array = array.transpose(1, 0, 2)
        left, upper, right, lower = upper, left, lower, right
    across = lower - upper
    if across < 2 or right - left < 2:
        return False
    inside_is_before = band.side in ("bottom", "right")
    if inside_is_before:
        neighbour = array[max(0, upper - across) : upper, left:right]
    else:
        neighbour = array[lower : lower + across, left:right]
    if neighbour.size == 0:
        return False
    strip = array[upper:lower, left:right, :3].astype(np.int16)
    background = np.median(strip.reshape(-1, 3), axis=0)
    if background.max() > MAX_BRIGHTNESS:
        return False
    matches = np.abs(strip - background).max(axis=-1) <= COLOUR_TOLERANCE
    if matches.mean() < MIN_COVER:
        return False
    if (matches.mean(axis=0) >= MIN_COLUMN_COVER).mean() < MIN_SPAN:
        return False
    if (matches.mean(axis=1) >= MIN_ROW_COVER).mean() < MIN_ROWS_AGREEING:
        return False
    beside = np.abs(neighbour[..., :3].astype(np.int16) - background).max(axis=-1)
    return bool((beside <= COLOUR_TOLERANCE).mean() <= MAX_NEIGHBOUR_MATCH)


def strips_by_look(paths: Sequence[Path], band: Band) -> np.ndarray:
    """One bool per image file: :func:`looks_like_strip` on it, decoded at most
    ``MAX_WIDTH`` wide for speed. An unreadable file counts as no strip, so one broken
    file does not stop an audit of thousands."""
    return np.array([_file_looks_like_strip(Path(path), band) for path in paths], dtype=bool)


def _file_looks_like_strip(path: Path, band: Band) -> bool:
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width > MAX_WIDTH:
                # JPEG decodes straight at a reduced scale: much faster than full size.
                image.draft("RGB", (MAX_WIDTH, max(1, height * MAX_WIDTH // width)))
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    if rgb.width > MAX_WIDTH:
        size = (MAX_WIDTH, max(1, round(rgb.height * MAX_WIDTH / rgb.width)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return looks_like_strip(np.asarray(rgb), band)
