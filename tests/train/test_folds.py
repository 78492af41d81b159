"""Group folds, spatial blocks and folds.csv."""

from __future__ import annotations

from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest

from geotag.errors import DataError, InputError
from geotag.train import folds as folds_module
from geotag.train.folds import (
    assign_folds,
    read_folds,
    spatial_groups,
    spatial_resolution,
    write_folds,
)


def _groups(n_groups: int = 40, seed: int = 0) -> np.ndarray:
    """Panoramas with 1 to 6 headings each, rows shuffled."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_groups)
    labels = np.repeat([f"pano{i:03d}" for i in range(n_groups)], sizes)
    return rng.permutation(labels)


def _check_partition(groups: np.ndarray, folds: np.ndarray, n_folds: int) -> None:
    assert folds.shape == groups.shape and folds.dtype == np.int64
    assert set(folds.tolist()) == set(range(n_folds))  # every fold non-empty
    per_group = pd.Series(folds).groupby(groups).nunique()
    assert (per_group == 1).all()  # no group split


@pytest.mark.parametrize("n_folds", [2, 5, 10])
def test_folds_never_split_a_group(n_folds: int) -> None:
    groups = _groups()
    _check_partition(groups, assign_folds(groups, n_folds, seed=3), n_folds)


def test_folds_are_deterministic_per_seed() -> None:
    groups = _groups()
    first = assign_folds(groups, 5, seed=7)
    np.testing.assert_array_equal(first, assign_folds(list(groups), 5, seed=7))
    if folds_module._group_kfold_shuffles():
        assert not np.array_equal(first, assign_folds(groups, 5, seed=8))


def test_folds_without_shuffle_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folds_module, "_group_kfold_shuffles", lambda: False)
    groups = _groups()
    folds = assign_folds(groups, 4, seed=1)
    _check_partition(groups, folds, 4)
    np.testing.assert_array_equal(folds, assign_folds(groups, 4, seed=2))


def test_as_many_groups_as_folds_is_enough() -> None:
    groups = np.array(["a", "b", "b", "c", "c", "c"])
    _check_partition(groups, assign_folds(groups, 3), 3)


def test_too_few_groups() -> None:
    with pytest.raises(
        InputError,
        match=r"^only 3 distinct groups \(locations\) for 5 folds; lower --folds or add images",
    ):
        assign_folds(["a", "b", "c", "a"], 5)


@pytest.mark.parametrize("n_folds", [1, 0, -2])
def test_fewer_than_two_folds(n_folds: int) -> None:
    with pytest.raises(InputError, match=f"^--folds must be at least 2, got {n_folds}$"):
        assign_folds(_groups(), n_folds)


# -- spatial blocks ----------------------------------------------------------------------
@pytest.mark.parametrize(("cell_km", "resolution"), [(50, 4), (100, 3), (20, 5), (5, 6)])
def test_spatial_resolution_edge_is_nearest_half_a_cell(cell_km: float, resolution: int) -> None:
    # H3 average edges (km): res 3 69.0, res 4 26.1, res 5 9.85, res 6 3.72
    assert spatial_resolution(cell_km) == resolution


@pytest.mark.parametrize("cell_km", [0.0, -1.0, float("nan")])
def test_spatial_resolution_needs_a_positive_size(cell_km: float) -> None:
    with pytest.raises(InputError, match="cell size must be a positive number of km"):
        spatial_resolution(cell_km)


@pytest.mark.parametrize("cell_km", [10.0, 50.0, 100.0])
def test_neighbours_share_a_block_and_distant_points_do_not(cell_km: float) -> None:
    resolution = spatial_resolution(cell_km)
    lat, lon = h3.cell_to_latlng(h3.latlng_to_cell(12.97, 77.59, resolution))
    km_per_deg_lat = 111.195
    km_per_deg_lon = km_per_deg_lat * np.cos(np.radians(lat))
    lats = [lat, lat + 1 / km_per_deg_lat, lat]  # 1 km north
    lons = [lon, lon, lon + 5 * cell_km / km_per_deg_lon]  # 5 cells east
    blocks = spatial_groups(np.array(lats), np.array(lons), cell_km)
    assert blocks.dtype.kind == "U" and all(h3.is_valid_cell(b) for b in blocks)
    assert h3.get_resolution(blocks[0]) == resolution
    assert blocks[0] == blocks[1]
    assert blocks[0] != blocks[2]


def test_spatial_groups_refuse_impossible_locations() -> None:
    with pytest.raises(DataError, match=r"^1 locations have a missing or impossible lat/lon$"):
        spatial_groups([12.0, 95.0], [77.0, 77.0], 50)


def test_spatial_groups_feed_assign_folds() -> None:
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(8, 30, 300), rng.uniform(70, 90, 300)
    blocks = spatial_groups(lat, lon, 100)
    _check_partition(blocks, assign_folds(blocks, 10), 10)


# -- folds.csv -----------------------------------------------------------------------------
def test_folds_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "folds.csv"
    paths = ["images/1/a_0.jpg", "images/1/a_90.jpg", "images/2/b,c_0.jpg", "images/3/NA.jpg"]
    groups = ["007", "007", "NA", "8a2a1072b59ffff"]
    folds = np.array([1, 1, 0, 2])
    write_folds(path, paths, groups, folds)
    assert path.read_text().splitlines()[0] == "path,group,fold"
    assert sorted(p.name for p in path.parent.iterdir()) == ["folds.csv"]  # no temp left

    frame = read_folds(path)
    assert list(frame.columns) == ["path", "group", "fold"]
    assert frame["path"].tolist() == paths
    assert frame["group"].tolist() == groups  # "007" and "NA" stay strings
    assert frame["fold"].dtype == np.int64 and frame["fold"].tolist() == [1, 1, 0, 2]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("path,group\na.jpg,g\n", "columns are path, group, expected path, group, fold"),
        ("path,group,fold\na.jpg,g,one\n", "a fold is not a whole number"),
        ("path,group,fold\na.jpg,g,-1\n", "a fold is not a whole number"),
        ("path,group,fold\na.jpg,g,0\nb.jpg,g,1\n", "a group is split across folds"),
        ("path,group,fold\na.jpg,g,0\na.jpg,h,1\n", "an image is in two folds"),
        ("path,group,fold\n,g,0\n", "a path is empty"),
        ('path,group,fold\n"a.jpg,g,0\n', "is damaged: "),
        ("", "is damaged: "),
    ],
)
def test_damaged_folds_csv(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "folds.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern) as info:
        read_folds(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_binary_garbage_and_missing_folds_csv(tmp_path: Path) -> None:
    garbage = tmp_path / "folds.csv"
    garbage.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(DataError, match="is damaged"):
        read_folds(garbage)
    with pytest.raises(DataError, match="is missing"):
        read_folds(tmp_path / "nope.csv")


def test_inner_split_keeps_groups_whole_and_balances_cells() -> None:
    from geotag.train.folds import inner_split

    rng = np.random.default_rng(0)
    groups = np.repeat([f"g{i}" for i in range(200)], 2)  # two headings per place
    labels = np.repeat(rng.integers(0, 5, size=200), 2)
    inner = inner_split(groups, labels, 0.1, seed=3)
    assert 0.07 < inner.mean() < 0.13
    held = set(groups[inner])
    assert not held & set(groups[~inner])  # no place on both sides
    for label in range(5):  # every cell is in the inner split, near its share
        share = inner[labels == label].mean()
        assert 0.03 < share < 0.2
    assert (inner_split(groups, labels, 0.1, seed=3) == inner).all()
    assert not (inner_split(groups, labels, 0.1, seed=4) == inner).all()


def test_inner_split_refuses_too_few_places_or_a_bad_fraction() -> None:
    from geotag.train.folds import inner_split

    with pytest.raises(InputError, match="only 5 places to train on"):
        inner_split(["a", "b", "c", "d", "e"], [0, 1, 0, 1, 0], 0.1)
    with pytest.raises(InputError, match="--val-fraction must lie in"):
        inner_split(["a"] * 4, [0] * 4, 0.0)


def test_folds_balance_cells_when_labels_are_given() -> None:
    rng = np.random.default_rng(0)
    places = np.array([f"p{i}" for i in range(600)])
    cells = rng.choice(6, size=600, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    groups, labels = np.repeat(places, 2), np.repeat(cells, 2)
    folds = assign_folds(groups, 5, seed=0, labels=labels)
    frame = pd.DataFrame({"group": groups, "fold": folds, "cell": labels})
    assert (frame.groupby("group")["fold"].nunique() == 1).all()
    share = frame.groupby("fold")["cell"].value_counts(normalize=True).unstack(fill_value=0)
    overall = frame["cell"].value_counts(normalize=True)
    assert (share.sub(overall, axis=1).abs() <= 0.3 * overall).all().all()
    plain = assign_folds(groups, 5, seed=0)
    assert len(np.unique(plain)) == 5  # without labels: GroupKFold, as before


def test_within_buffer_finds_points_near_any_held_out_point() -> None:
    from geotag.train.folds import within_buffer

    held = np.array([[0.0, 0.0], [10.0, 10.0]])
    points = np.array([[0.0, 0.5], [0.0, 1.5], [10.0, 10.4], [5.0, 5.0]])  # 56, 167, 44 km
    assert within_buffer(points, held, 100.0).tolist() == [True, False, True, False]
    assert not within_buffer(points, held, 0.0).any()
    assert within_buffer(points[:0], held, 100.0).shape == (0,)
