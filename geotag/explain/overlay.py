"""Heatmaps over photos, as arrays and PNG files: one photo, a contact sheet, the mean map.

Colours are RGB throughout, the jet colormap from matplotlib: hot is red, cold is blue.
(pytorch-grad-cam's ``show_cam_on_image`` returns BGR unless given ``use_rgb=True``, which
paints hot spots blue in any RGB viewer; it also rescales the blend to its maximum.)
Figures are drawn on matplotlib's ``Figure`` directly, never through pyplot's global
state, and written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from geotag.atomic import atomic_path
from geotag.errors import InputError
from geotag.train.bands import Band

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLORMAP = "jet"
IMAGE_WEIGHT = 0.5
"""The photo's weight in the blend; the heatmap gets the rest."""
EMPTY_NOTE = "all-zero map: no heat to show"
DPI = 100


def _image(image_rgb: np.ndarray) -> np.ndarray:
    array = np.asarray(image_rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise InputError(
            f"an image must be uint8 RGB (height, width, 3); got {array.dtype} {array.shape}"
        )
    return array


def _cam(cam: np.ndarray) -> np.ndarray:
    array = np.asarray(cam, dtype=np.float32)
    if array.ndim != 2 or 0 in array.shape:
        raise InputError(f"a map must be (height, width); got shape {array.shape}")
    return np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)


def heat_colours(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cam`` resized (bilinear) to height x width and coloured: float RGB in [0, 1]."""
    from matplotlib import colormaps
    from PIL import Image

    heat = _cam(cam)
    if heat.shape != (height, width):
        resized = Image.fromarray(heat).resize((width, height), Image.Resampling.BILINEAR)
        heat = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    colours: np.ndarray = colormaps[COLORMAP](heat)[..., :3]
    return colours


def overlay(
    image_rgb: np.ndarray, cam: np.ndarray, image_weight: float = IMAGE_WEIGHT
) -> np.ndarray:
    """The photo with the heatmap blended over it: uint8 RGB, the photo's size.

    ``cam`` (h, w) in [0, 1] may be of any size; it is resized to the photo.
    """
    photo = _image(image_rgb)
    if not 0.0 <= image_weight <= 1.0:
        raise InputError(f"image_weight must lie in [0, 1]; got {image_weight:g}")
    colours = heat_colours(cam, photo.shape[0], photo.shape[1])
    blend = (1.0 - image_weight) * colours * 255.0 + image_weight * photo.astype(np.float64)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def _is_empty(cam: np.ndarray) -> bool:
    return bool(_cam(cam).max() <= 0.0)


def _show(axes: Axes, image_rgb: np.ndarray, cam: np.ndarray | None, caption: str) -> None:
    """One panel: the photo, or (with ``cam``) its overlay; an empty map is said, not drawn."""
    axes.set_axis_off()
    if cam is not None and _is_empty(cam):
        axes.imshow(image_rgb, alpha=0.35)
        axes.text(
            0.5, 0.5, EMPTY_NOTE, transform=axes.transAxes, ha="center", va="center",
            fontsize=8, color="black", wrap=True,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )  # fmt: skip
    else:
        axes.imshow(image_rgb if cam is None else overlay(image_rgb, cam))
    if caption:
        axes.set_title(caption, fontsize=8)


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def save_overlay(path: Path, image_rgb: np.ndarray, cam: np.ndarray, title: str) -> Path:
    """A PNG with the photo and the heatmap over it side by side, under ``title`` (for
    example the top-3 predicted cells and their probabilities)."""
    from matplotlib.figure import Figure

    photo = _image(image_rgb)
    _cam(cam)
    height, width = photo.shape[:2]
    panel = 4.0
    figure = Figure(figsize=(2 * panel, panel * height / width + 0.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    _show(left, photo, None, "photo")
    _show(right, photo, cam, "heatmap")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def save_contact_sheet(
    path: Path,
    tiles: Sequence[tuple[np.ndarray, np.ndarray, str]],
    columns: int = 6,
) -> Path:
    """A PNG grid of overlays, ``columns`` wide, each under its caption.

    ``tiles``: (photo uint8 RGB, map, caption) triples, such as the images with the most
    heat in the band.
    """
    from matplotlib.figure import Figure

    if not tiles:
        raise InputError("a contact sheet needs at least one image")
    if columns < 1:
        raise InputError(f"columns must be at least 1; got {columns}")
    photos = [_image(photo) for photo, _, _ in tiles]
    for _, cam, _ in tiles:
        _cam(cam)
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    aspect = max(p.shape[0] / p.shape[1] for p in photos)
    tile = 2.0
    figure = Figure(figsize=(columns * tile, rows * (tile * aspect + 0.4)), layout="constrained")
    grid = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    for index, axes in enumerate(grid.flat):
        if index < len(tiles):
            _, cam, caption = tiles[index]
            _show(axes, photos[index], cam, caption)
        else:
            axes.set_axis_off()
    return _save(figure, path)


def save_mean_cam(path: Path, mean_map: np.ndarray, title: str, band: Band | None = None) -> Path:
    """A PNG of the mean map over many images, with a colour bar and ``band``'s outline."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    heat = np.asarray(mean_map, dtype=np.float64)
    if heat.ndim != 2 or 0 in heat.shape or not np.all(np.isfinite(heat)):
        raise InputError(f"a mean map must be a finite (height, width) array; got {heat.shape}")
    height, width = heat.shape
    figure = Figure(figsize=(5.0, 5.0 * height / width + 0.8), layout="constrained")
    axes = figure.subplots()
    top = float(heat.max())
    shown = axes.imshow(heat, cmap=COLORMAP, vmin=0.0, vmax=top if top > 0 else 1.0)
    figure.colorbar(shown, ax=axes, shrink=0.8, label="mean heat")
    if band is not None and band.fraction > 0:
        left, upper, right, lower = band.box(width, height)
        axes.add_patch(
            Rectangle(
                (left - 0.5, upper - 0.5), right - left, lower - upper,
                fill=False, edgecolor="white", linestyle="--", linewidth=2, label=str(band),
            )
        )  # fmt: skip
        axes.legend(loc="upper right", fontsize=8)
    if top <= 0:
        title = f"{title} ({EMPTY_NOTE})"
    axes.set_title(title, fontsize=10)
    axes.set_axis_off()
    return _save(figure, path)
