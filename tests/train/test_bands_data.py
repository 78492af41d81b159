"""Bands, preprocessing, the per-epoch sampler and bad-image handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geotag.errors import DataError, InputError
from geotag.train.bands import Band, blank_band, parse_band
from geotag.train.data import (
    EpochSampler,
    ImageDataset,
    Preprocessing,
    build_transform,
    check_bad_share,
    collate,
    find_bad_images,
    load_image,
)

PRE = Preprocessing(32, (0.5, 0.25, 0.75), (0.2, 0.2, 0.2))


def gradient_image(width: int = 40, height: int = 20) -> Image.Image:
    rows = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    return Image.fromarray(np.stack([rows, rows, rows], axis=-1))


@pytest.mark.parametrize(
    ("side", "box"),
    [
        ("bottom", (0, 18, 40, 20)),
        ("top", (0, 0, 40, 2)),
        ("left", (0, 0, 4, 20)),
        ("right", (36, 0, 40, 20)),
    ],
)
def test_band_boxes(side: str, box: tuple[int, int, int, int]) -> None:
    assert Band(side, 0.1).box(40, 20) == box


def test_blank_band_paints_only_the_band_and_keep_only_the_rest() -> None:
    image = gradient_image()
    fill = (1, 2, 3)
    blanked = np.asarray(blank_band(image, Band("bottom", 0.25), fill))
    assert (blanked[15:] == fill).all()
    np.testing.assert_array_equal(blanked[:15], np.asarray(image)[:15])
    kept = np.asarray(blank_band(image, Band("bottom", 0.25), fill, keep_only=True))
    assert (kept[:15] == fill).all()
    np.testing.assert_array_equal(kept[15:], np.asarray(image)[15:])


def test_parse_band_and_bad_bands() -> None:
    assert parse_band("Bottom:0.1") == Band("bottom", 0.1)
    assert str(Band("top", 0.2)) == "top:0.2"
    for text in ("bottom", "middle:0.1", "bottom:1.5", "bottom:x", "bottom:0.2-0.1",
                 "bottom:0.5-0.95", "bottom:-0.1"):  # fmt: skip
        with pytest.raises(InputError):
            parse_band(text)


@pytest.mark.parametrize(
    ("side", "box"),
    [
        ("bottom", (0, 14, 40, 18)),
        ("top", (0, 2, 40, 6)),
        ("left", (4, 0, 12, 20)),
        ("right", (28, 0, 36, 20)),
    ],
)
def test_inset_bands_start_away_from_their_edge(side: str, box: tuple[int, int, int, int]) -> None:
    band = Band(side, 0.2, inset=0.1)
    assert band.box(40, 20) == box
    assert parse_band(str(band)) == band and str(band) == f"{side}:0.1-0.3"
    assert band.opposite().inset == 0.1


def test_the_part_of_a_band_a_mask_leaves_visible() -> None:
    band = Band("bottom", 0.1)
    assert band.uncovered_by(None) == band
    assert band.uncovered_by(Band("top", 0.5)) == band  # another side: all of it visible
    assert band.uncovered_by(Band("bottom", 0.12)) is None
    assert band.uncovered_by(Band("bottom", 0.1)) is None
    assert band.uncovered_by(Band("bottom", 0.04)) == Band("bottom", 0.06, inset=0.04)
    # A mask that starts above the band's edge leaves the edge visible: audit all of it.
    assert band.uncovered_by(Band("bottom", 0.05, inset=0.05)) == band


def test_keep_only_an_empty_band_is_a_blank_image() -> None:
    kept = np.asarray(blank_band(gradient_image(), Band("bottom", 0.0), (9, 9, 9), keep_only=True))
    assert (kept == 9).all()


def test_preprocessing_round_trips_through_json() -> None:
    pre = Preprocessing(64, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bilinear", 1.0, Band("bottom", 0.1))
    assert Preprocessing.from_json(pre.to_json()) == pre
    assert pre.fill == (26, 51, 76)


def test_mask_blanks_to_zero_after_normalisation(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(path, quality=95)
    pre = Preprocessing(32, (0.5, 0.25, 0.75), (0.2, 0.2, 0.2), mask=Band("bottom", 0.25))
    tensor = build_transform(pre, training=False)(load_image(path, pre))
    assert tensor.shape == (3, 32, 32)
    assert tensor[:, 26:, :].abs().max() < 0.03  # the mean colour normalises to ~0
    assert tensor[:, :20, :].abs().min() > 0.15  # (200/255 - mean) / std, blue: 0.17


def test_sampler_is_a_permutation_per_epoch_and_reproducible() -> None:
    sampler = EpochSampler(10, shuffle=True, seed=3)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10))
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != [i for i, _ in first]
    again = EpochSampler(10, shuffle=True, seed=3)
    again.set_epoch(1)
    assert list(again) == second  # the same (index, seed) pairs: a resumed epoch matches


def test_sampler_shards_across_ranks() -> None:
    parts = [list(EpochSampler(11, shuffle=True, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(p) == 4 for p in parts)  # padded so every rank steps alike
    assert {i for p in parts for i, _ in p} == set(range(11))
    unpadded = [
        [i for i, _ in EpochSampler(11, shuffle=False, seed=0, rank=r, world_size=3, pad=False)]
        for r in range(3)
    ]
    assert sorted(i for p in unpadded for i in p) == list(range(11))  # validation: each once


def test_bad_images_are_found_skipped_and_counted(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(good)
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    bad = find_bad_images(tmp_path, ["good.jpg", "junk.jpg", "gone.jpg"])
    assert {(b.path, b.reason.split()[0]) for b in bad} == {
        ("junk.jpg", "unreadable"),
        ("gone.jpg", "missing"),
    }
    dataset = ImageDataset(
        tmp_path, [("good.jpg",), ("cut.jpg",)], [0, 1], PRE, build_transform(PRE, False)
    )
    batch = collate([dataset[(0, 1)], dataset[(1, 2)]])
    assert batch.bad == 1 and batch.labels.tolist() == [0] and batch.indices.tolist() == [0]
    assert batch.images.shape == (1, 3, 32, 32) and torch.isfinite(batch.images).all()


def test_too_many_bad_images_stop_the_run() -> None:
    check_bad_share(5, 100)
    with pytest.raises(DataError, match="6 of 100"):
        check_bad_share(6, 100)


def test_multi_view_samples_stack_views(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (32, 32)).save(tmp_path / name)
    dataset = ImageDataset(tmp_path, [("a.jpg", "b.jpg")], [0], PRE, build_transform(PRE, False))
    image, label, index = dataset[(0, 0)]
    assert (label, index) == (0, 0)
    assert image is not None and image.shape == (2, 3, 32, 32)
