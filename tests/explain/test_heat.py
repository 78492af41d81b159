"""Band mass, pointing game, thirds and the dataset summary, on hand-made maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geotag.errors import InputError
from geotag.explain.heat import (
    band_area_share,
    band_mass,
    heat_summary,
    pointing_game,
    thirds,
)
from geotag.train.bands import Band

BOTTOM = Band("bottom", 0.1)  # 6 of 64 rows: rows 58-63


def maps_with_rows(rows: slice, count: int = 1, size: int = 64) -> np.ndarray:
    maps = np.zeros((count, size, size), dtype=np.float32)
    maps[:, rows, :] = 1.0
    return maps


def test_area_share_follows_the_band_box() -> None:
    assert band_area_share(BOTTOM, 64, 64) == 6 / 64
    assert band_area_share(Band("left", 0.25), 10, 40) == 0.25
    assert band_area_share(Band("bottom", 0.0), 64, 64) == 0.0


def test_band_mass_of_hand_made_maps() -> None:
    inside = maps_with_rows(slice(58, 64))
    uniform = np.ones((1, 64, 64))
    half = maps_with_rows(slice(52, 64))  # 12 rows, 6 of them in the band
    weighted = uniform.copy()
    weighted[0, 58:, :] = 3.0  # band pixels three times as hot
    masses = band_mass(np.concatenate([inside, uniform, half, weighted]), BOTTOM)
    share = 6 / 64
    expected = [1.0, share, 0.5, 3 * share / (3 * share + (1 - share))]
    assert np.allclose(masses, expected)


def test_band_mass_of_an_empty_map_is_nan_and_leading_axes_are_kept() -> None:
    maps = np.zeros((2, 3, 64, 64))
    maps[0, 1, 60, 5] = 0.5
    masses = band_mass(maps, BOTTOM)
    assert masses.shape == (2, 3)
    assert masses[0, 1] == 1.0 and np.isnan(masses[0, 0]) and np.isnan(masses[1]).all()


def test_bad_maps_are_refused() -> None:
    with pytest.raises(InputError, match="non-negative"):
        band_mass(-np.ones((1, 8, 8)), BOTTOM)
    with pytest.raises(InputError, match=r"\(\.\.\., height, width\)"):
        thirds(np.ones(8))


def test_pointing_game() -> None:
    peak_in = np.full((64, 64), 0.1)
    peak_in[61, 10] = 1.0
    peak_out = np.full((64, 64), 0.1)
    peak_out[10, 10] = 1.0
    # plateaus, as a coarse map upsampled has: 8 rows, 6 (or 2) of them in the band
    mostly_in = maps_with_rows(slice(56, 64))[0]
    mostly_out = maps_with_rows(slice(52, 60))[0]
    empty = np.zeros((64, 64))
    hits = pointing_game(np.stack([peak_in, peak_out, mostly_in, mostly_out, empty]), BOTTOM)
    assert hits.dtype == bool
    assert hits.tolist() == [True, False, True, False, False]


def test_thirds() -> None:
    uniform = np.ones((1, 63, 10))
    bottom = maps_with_rows(slice(58, 64))
    middle = maps_with_rows(slice(30, 31))
    assert np.allclose(thirds(uniform), [[1 / 3, 1 / 3, 1 / 3]])
    assert np.allclose(thirds(bottom), [[0, 0, 1]])
    assert np.allclose(thirds(middle), [[0, 1, 0]])
    assert np.allclose(thirds(np.ones((1, 64, 64))), [[22 / 64, 21 / 64, 21 / 64]])
    assert np.isnan(thirds(np.zeros((1, 9, 9)))).all()


def test_summary_finds_a_class_that_hides_in_the_mean() -> None:
    # 100 images, 5 classes; class 2's 20 images read the band, the rest barely look.
    classes = np.repeat([0, 1, 2, 3, 4], 20)
    masses = np.where(classes == 2, 0.6, 0.05)
    hits = classes == 2
    area = 0.1
    summary = heat_summary(masses, area, classes, hits=hits)

    assert summary["band_mass"]["mean"] == pytest.approx(0.16)  # below 2 x 0.1: looks fine
    assert summary["band_mass"]["median"] == pytest.approx(0.05)
    assert summary["band_mass"]["p90"] == pytest.approx(0.6)
    assert summary["threshold"] == pytest.approx(0.2)
    assert summary["share_above"] == pytest.approx(0.2) and summary["images_above"] == 20
    assert summary["pointing_game"] == {"hit_rate": 0.2, "chance": 0.1, "lift": 2.0}
    assert summary["classes"]["above"] == ["2"]
    assert summary["classes"]["share_above"] == pytest.approx(0.2)
    assert summary["classes"]["share_images_in_above"] == pytest.approx(0.2)
    assert summary["classes"]["max_share_above"] == 1.0
    worst = summary["per_class"]["2"]
    assert worst["band_mass"]["mean"] == pytest.approx(0.6) and worst["share_above"] == 1.0
    assert worst["pointing_game"]["hit_rate"] == 1.0
    assert summary["per_class"]["0"]["share_above"] == 0.0
    json.dumps(summary, allow_nan=False)  # plain, JSON-ready values


def test_summary_counts_empty_maps_apart() -> None:
    masses = np.array([0.5, np.nan, 0.01, np.nan])
    summary = heat_summary(masses, 0.1, np.array([7, 7, 8, 8]))
    assert summary["images"] == 4 and summary["measured"] == 2 and summary["empty_maps"] == 2
    assert summary["share_above"] == 0.5
    assert summary["per_class"]["7"]["empty_maps"] == 1
    assert "pointing_game" not in summary
    everything_empty = heat_summary(np.array([np.nan]), 0.1)
    assert everything_empty["band_mass"]["mean"] is None
    assert everything_empty["share_above"] is None
    json.dumps(everything_empty, allow_nan=False)


def test_summary_refuses_mismatched_inputs() -> None:
    with pytest.raises(InputError, match="classes has 2 entries for 3 band masses"):
        heat_summary(np.zeros(3), 0.1, np.zeros(2))
    with pytest.raises(InputError, match=r"area share must lie in \(0, 1\)"):
        heat_summary(np.zeros(3), 0.0)
