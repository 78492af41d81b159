"""Overlays: hot is red in RGB, and the PNG files open and show something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geotag.errors import InputError
from geotag.explain.overlay import overlay, save_contact_sheet, save_mean_cam, save_overlay
from geotag.train.bands import Band

GREY = np.full((64, 96, 3), 128, dtype=np.uint8)


def hot_corner(size: int = 16) -> np.ndarray:
    cam = np.zeros((size, size), dtype=np.float32)
    cam[: size // 4, : size // 4] = 1.0  # top-left hot, the rest cold
    return cam


def opened(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def red_pixels(pixels: np.ndarray) -> int:
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > g + 50) & (r > b + 50)).sum())


def test_hot_is_red_and_cold_is_blue_in_rgb() -> None:
    out = overlay(GREY, hot_corner())
    assert out.shape == GREY.shape and out.dtype == np.uint8
    # jet runs from dark blue (0, 0, 0.5) to dark red (0.5, 0, 0); half over grey 128
    assert out[2, 2].tolist() == [128, 64, 64]  # hot: red (BGR would make it blue)
    assert out[-3, -3].tolist() == [64, 64, 128]  # cold: blue


def test_photo_weight_and_bad_inputs() -> None:
    assert np.array_equal(overlay(GREY, hot_corner(), image_weight=1.0), GREY)
    with pytest.raises(InputError, match="uint8 RGB"):
        overlay(GREY.astype(np.float32), hot_corner())
    with pytest.raises(InputError, match=r"a map must be \(height, width\)"):
        overlay(GREY, np.zeros((1, 4, 4)))
    with pytest.raises(InputError, match=r"image_weight must lie in \[0, 1\]"):
        overlay(GREY, hot_corner(), image_weight=2.0)


def test_saved_overlay_opens_and_shows_the_heat(tmp_path: Path) -> None:
    path = save_overlay(tmp_path / "out" / "one.png", GREY, hot_corner(), "cell 3 0.61 | 7 0.2")
    assert path == tmp_path / "out" / "one.png"
    pixels = opened(path)
    assert pixels.std() > 20  # not blank
    assert red_pixels(pixels) > 50
    assert sorted(p.name for p in path.parent.iterdir()) == ["one.png"]  # no temporary left


def test_an_all_zero_map_is_not_drawn_as_a_cold_picture(tmp_path: Path) -> None:
    pixels = opened(save_overlay(tmp_path / "zero.png", GREY, np.zeros((8, 8)), "nothing"))
    assert red_pixels(pixels) == 0
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((b > r + 50) & (b > g + 50)).sum() == 0  # not jet's blue for "no heat" either


def test_contact_sheet(tmp_path: Path) -> None:
    tiles = [(GREY, hot_corner(), f"image {i}: 0.{i}") for i in range(7)]
    path = save_contact_sheet(tmp_path / "sheet.png", tiles, columns=3)
    pixels = opened(path)
    assert red_pixels(pixels) > 7 * 20
    assert pixels.shape[0] > 2 * 64 and pixels.shape[1] > 3 * 96  # 3 rows, 3 columns
    with pytest.raises(InputError, match="at least one image"):
        save_contact_sheet(tmp_path / "empty.png", [])


def test_mean_cam_draws_the_band(tmp_path: Path) -> None:
    mean = np.zeros((64, 64))
    mean[58:, :] = 1.0
    plain = opened(save_mean_cam(tmp_path / "plain.png", mean, "mean map"))
    banded = opened(save_mean_cam(tmp_path / "band.png", mean, "mean map", Band("bottom", 0.1)))
    assert red_pixels(plain) > 100 and plain.std() > 20
    assert plain.shape == banded.shape and not np.array_equal(plain, banded)
    with pytest.raises(InputError, match="finite"):
        save_mean_cam(tmp_path / "nan.png", np.full((4, 4), np.nan), "mean")
