"""The copyright leak check: regional photographers leak, "© Google" does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geotag.errors import DataError, InputError
from geotag.explain.metadata import copyright_leak, is_generic, normalise_copyright


def panoramas(cells: int = 6, per_cell: int = 30, views: int = 2) -> tuple[list[int], list[str]]:
    """``per_cell`` panoramas in each cell, ``views`` images each: cells and group ids."""
    cell_of_image, group_of_image = [], []
    for cell in range(cells):
        for pano in range(per_cell):
            cell_of_image += [cell * 10] * views
            group_of_image += [f"{cell}-{pano}"] * views
    return cell_of_image, group_of_image


def test_normalising_copyright_strings() -> None:
    assert normalise_copyright("© 2023 Ann Rao") == "ann rao"
    assert normalise_copyright("(c) ANN  RAO, 2019") == "ann rao"
    assert normalise_copyright(None) == "" and normalise_copyright(float("nan")) == ""
    assert is_generic(normalise_copyright("© 2024 Google"))
    assert is_generic(normalise_copyright("Google LLC"))
    assert not is_generic(normalise_copyright("© Googler Fan Club"))


def test_regional_photographers_leak() -> None:
    cells, groups = panoramas()
    copyrights: list[str | None] = []
    for cell, group in zip(cells, groups, strict=True):
        pano = int(group.split("-")[1])
        # 60% of panoramas are user-contributed, by one of the cell's three photographers
        user = pano % 5 < 3
        copyrights.append(f"© 2022 Photographer {cell}-{pano % 3}" if user else "© Google")
    report = copyright_leak(copyrights, cells, groups=groups)
    assert report["leaks"] is True
    assert report["baseline"] == pytest.approx(1 / 6)
    assert report["accuracy"] > report["baseline"] + 0.3
    assert report["null_accuracy"] < report["baseline"] + 0.02
    assert report["p_value"] < 0.01
    assert report["named_share"] == pytest.approx(0.6)
    assert report["distinct_names"] == 18 and report["names_in_one_cell"] == 18
    assert report["images_with_confined_names"] == pytest.approx(0.6)
    assert report["grouped"] is True and report["folds"] == 5 and report["groups"] == 180
    json.dumps(report, allow_nan=False)


def test_google_everywhere_does_not_leak() -> None:
    cells, groups = panoramas()
    report = copyright_leak(["© 2021 Google"] * len(cells), cells, groups=groups)
    assert report["leaks"] is False
    # every permutation is the data itself: the lookup is the fold majority, no better
    assert report["difference"] <= 0 and report["p_value"] == 1.0
    assert report["named_share"] == 0 and report["distinct_names"] == 0
    assert report["names_in_one_cell"] == 0


def test_photographers_working_everywhere_do_not_leak() -> None:
    cells, groups = panoramas()
    rng = np.random.default_rng(1)
    names = [f"© Walker {rng.integers(5)}" for _ in cells]  # nothing to do with the cell
    report = copyright_leak(names, cells, groups=groups, seed=3)
    assert report["leaks"] is False
    assert report["accuracy"] < report["baseline"] + 0.05
    assert report["distinct_names"] == 5 and report["names_in_one_cell"] == 0


def test_a_name_per_panorama_leaks_only_when_folds_split_panoramas() -> None:
    # Each panorama's two images carry its own photographer's name: with panoramas kept
    # whole, a name never helps; split across folds, a name "predicts" its twin's cell.
    cells, groups = panoramas()
    names = [f"© Person {g}" for g in groups]
    assert copyright_leak(names, cells, groups=groups)["leaks"] is False
    ungrouped = copyright_leak(names, cells)
    assert ungrouped["leaks"] is True and ungrouped["grouped"] is False


def test_missing_and_empty_copyrights_count_as_generic() -> None:
    cells, groups = panoramas(cells=2, per_cell=5)
    values: list[str | None] = [None, "", "  "] * (len(cells) // 3) + [None] * (len(cells) % 3)
    report = copyright_leak(values, cells, groups=groups, folds=3)
    assert report["named_share"] == 0 and report["leaks"] is False and report["folds"] == 3


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="got 2 copyright values for 3 cells"):
        copyright_leak(["a", "b"], [1, 2, 3])
    with pytest.raises(InputError, match="at least 2 folds"):
        copyright_leak(["a", "b"], [1, 2], folds=1)
    with pytest.raises(DataError, match="at least 2 panoramas; got 1"):
        copyright_leak(["a", "b"], [1, 2], groups=["p", "p"])
