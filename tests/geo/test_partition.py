from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h3
import numpy as np
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from geotag.errors import DataError, InputError
from geotag.geo import partition as partition_module
from geotag.geo.grid import Grid, cells_in_plane, make_grid
from geotag.geo.locate import CellLocator
from geotag.geo.partition import (
    ADMIN1_FILE,
    KINDS,
    Partition,
    adaptive_partition,
    admin1,
    admin_partition,
    grid_partition,
    make_partition,
)
from geotag.geo.regions import Region, country_region, region_from_bbox

CITIES = {  # (lat, lon)
    "mumbai": (19.07, 72.88),
    "delhi": (28.61, 77.21),
    "bangalore": (12.97, 77.59),
    "kolkata": (22.57, 88.36),
}


def clustered(
    seed: int,
    centres: list[tuple[float, float]],
    per_centre: int,
    spread_deg: float,
    box: tuple[float, float, float, float],
    background: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Images crowded around ``centres`` plus a thin uniform scatter over ``box`` (W,S,E,N)."""
    rng = np.random.default_rng(seed)
    lat = [rng.normal(c[0], spread_deg, per_centre) for c in centres]
    lon = [rng.normal(c[1], spread_deg, per_centre) for c in centres]
    west, south, east, north = box
    lat.append(rng.uniform(south, north, background))
    lon.append(rng.uniform(west, east, background))
    return np.concatenate(lat), np.concatenate(lon)


def in_region(grid: Grid, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the images inside the grid's region, as the scrape stage keeps them."""
    inside = CellLocator(grid).cells(lat, lon) >= 0
    return lat[inside], lon[inside]


def plane(partition: Partition) -> np.ndarray:
    return cells_in_plane(np.asarray(partition.cells.geometry.values), partition.projection)


def assert_tiles_the_grid(partition: Partition, grid: Grid) -> None:
    """The cells cover what the grid's cells cover, with no gap and no overlap."""
    cells = partition.cells
    assert cells.crs.equals("EPSG:4326")
    assert cells["cell_id"].tolist() == list(range(len(cells)))
    assert cells["cell_id"].dtype == np.int64 and cells["images"].dtype == np.int64
    assert list(cells.columns) == [
        "cell_id", "center_lat", "center_lon", "area_km2", "images", "source", "geometry",
    ]  # fmt: skip
    geometry = np.asarray(cells.geometry.values)
    assert shapely.is_valid(geometry).all() and not shapely.is_empty(geometry).any()
    assert cells["source"].is_unique

    mine, theirs = plane(partition), grid.cells_in_plane()
    total = shapely.area(theirs).sum()
    union, cover = shapely.union_all(mine), shapely.union_all(theirs)
    # Cells are cut on a 1 mm grid: the outline may move by that much, nothing more.
    gap_or_extra = shapely.area(shapely.symmetric_difference(union, cover))
    assert gap_or_extra < cover.length * partition_module.SNAP_M
    left, right = shapely.STRtree(mine).query(mine, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(mine[left[pairs]], mine[right[pairs]]))
    assert overlap.max(initial=0.0) < 1e-9 * total
    assert shapely.area(mine).sum() == pytest.approx(union.area, rel=1e-9)
    assert cells["area_km2"].sum() == pytest.approx(total / 1e6, rel=1e-6)
    # Centres lie inside their own cells, even for C-shaped merged cells.
    assert (partition.locate(cells["center_lat"], cells["center_lon"]) == cells["cell_id"]).all()


def assert_limits(partition: Partition, max_images: int, min_images: int) -> None:
    images = partition.cells["images"]
    assert images.max() <= max_images, partition.notes
    assert images.min() >= min_images, partition.notes
    assert not [n for n in partition.notes if "max_images" in n or "min_images" in n]


@pytest.fixture(scope="module")
def deccan() -> Grid:
    """A 6 x 6 degree box over southern India in 100 km hexagons (~45 cells)."""
    return make_grid(region_from_bbox((74, 10, 80, 16)), 100)


@pytest.fixture(scope="module")
def deccan_images(deccan: Grid) -> tuple[np.ndarray, np.ndarray]:
    centres = [CITIES["bangalore"], (15.35, 75.14), (11.0, 76.96)]
    return in_region(deccan, *clustered(1, centres, 700, 0.15, (74, 10, 80, 16), 800))


@pytest.fixture(scope="module")
def india() -> Grid:
    return make_grid(country_region("India"), 200)


@pytest.fixture(scope="module")
def india_images(india: Grid) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = clustered(2, list(CITIES.values()), 900, 0.3, (68, 8, 97, 36), 3000)
    return in_region(india, lat, lon)


# -- grid --------------------------------------------------------------------------------


def test_grid_partition_is_the_grid(deccan: Grid, deccan_images: tuple[np.ndarray, ...]) -> None:
    lat, lon = deccan_images
    partition = grid_partition(deccan, lat, lon)
    cells, grid_cells = partition.cells, deccan.cells
    assert partition.kind == "grid" and partition.max_images is None
    assert_geodataframe_equal(
        cells.drop(columns=["images", "source"]),
        grid_cells[["cell_id", "center_lat", "center_lon", "area_km2", "geometry"]],
        check_dtype=False,
    )
    assert cells["source"].tolist() == [f"grid:{i}" for i in range(len(cells))]
    # Images are counted where the grid's own locator puts them.
    expected = np.bincount(CellLocator(deccan).cells(lat, lon), minlength=len(cells))
    assert cells["images"].tolist() == expected.tolist()
    assert partition.notes == ()
    assert_tiles_the_grid(partition, deccan)


# -- adaptive ----------------------------------------------------------------------------


def test_adaptive_cells_keep_the_limits_and_tile_the_grid(
    deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    lat, lon = deccan_images
    partition = adaptive_partition(deccan, lat, lon, max_images=120, min_images=15)
    assert partition.kind == "adaptive"
    assert (partition.max_images, partition.min_images) == (120, 15)
    assert_tiles_the_grid(partition, deccan)
    assert_limits(partition, 120, 15)
    assert partition.cells["images"].sum() == len(lat)
    sources = partition.cells["source"]
    assert sources.str.contains("/").any(), "crowded cells were split"
    assert sources.str.contains(r"\+").any(), "sparse cells were merged"
    # Crowds get small cells, the empty fringe large ones.
    bangalore = partition.locate(*map(np.array, zip(CITIES["bangalore"], strict=True)))[0]
    assert partition.cells["area_km2"][bangalore] < 0.5 * 100**2
    assert partition.cells["area_km2"].max() > 3 * 100**2


def test_square_cells_split_into_quarters() -> None:
    grid = make_grid(region_from_bbox((76, 11, 79, 14)), 100, shape="square")
    lat, lon = in_region(grid, *clustered(3, [CITIES["bangalore"]], 600, 0.3, (76, 11, 79, 14), 0))
    partition = adaptive_partition(grid, lat, lon, max_images=200, min_images=0)
    assert_tiles_the_grid(partition, grid)
    assert_limits(partition, 200, 0)
    cells = partition.cells
    quarters = cells[cells["source"].str.fullmatch(r"grid:\d+/\d")]
    assert len(quarters) >= 4
    for source, area in zip(quarters["source"], quarters["area_km2"], strict=True):
        parent = int(source.split(":")[1].split("/")[0])
        if grid.cells["region_fraction"][parent] == 1.0:  # a whole square: exact quarters
            assert area == pytest.approx(100**2 / 4, rel=1e-6)


def test_h3_grids_split_into_h3_children() -> None:
    grid = make_grid(region_from_bbox((76.5, 12, 78.5, 14)), 40, shape="h3")
    resolution = grid.h3_resolution
    assert resolution is not None
    lat, lon = in_region(
        grid, *clustered(4, [CITIES["bangalore"]], 1500, 0.08, (76.5, 12, 78.5, 14), 200)
    )
    partition = adaptive_partition(grid, lat, lon, max_images=150, min_images=5)
    assert_tiles_the_grid(partition, grid)
    assert_limits(partition, 150, 5)
    parents = {
        h3.latlng_to_cell(a, o, resolution)
        for a, o in zip(grid.cells["center_lat"], grid.cells["center_lon"], strict=True)
    }
    likeness = []
    for source, cell in zip(partition.cells["source"], plane(partition), strict=True):
        for index in source.removeprefix("h3:").split("+"):
            assert h3.is_valid_cell(index)
            assert h3.cell_to_parent(index, resolution) in parents
        index = source.removeprefix("h3:")
        if "+" not in source and h3.get_resolution(index) > resolution:
            # H3 children overhang their parent: clipped and given the parent's notches,
            # a child is its hexagon give or take a few twelfths of it.
            hexagon = partition_module._h3_polygon(index, partition.projection)
            shared = shapely.intersection(cell, hexagon).area
            assert shared >= 0.45 * hexagon.area, f"{index} is not where its H3 cell is"
            likeness.append(shared / shapely.union(cell, hexagon).area)
    assert len(likeness) >= 7 and np.median(likeness) > 0.8


# -- admin -------------------------------------------------------------------------------


def test_admin_cells_follow_states(india: Grid, india_images: tuple[np.ndarray, ...]) -> None:
    lat, lon = india_images
    partition = admin_partition(india, lat, lon, max_images=500, min_images=40)
    assert partition.kind == "admin"
    assert_tiles_the_grid(partition, india)
    assert_limits(partition, 500, 40)
    keys = set(admin1()["key"])
    for source in partition.cells["source"]:
        assert source.startswith("admin:")
        assert {k.split("/")[0] for k in source.removeprefix("admin:").split("+")} <= keys
    cell_of = dict(zip(CITIES, partition.locate(*np.array(list(CITIES.values())).T), strict=True))
    source_of = partition.cells["source"]
    # Crowded states are split (quadtree children), quiet ones merged.
    assert source_of[cell_of["mumbai"]].startswith("admin:IN-MH/")
    assert source_of[cell_of["bangalore"]].startswith("admin:IN-KA/")
    assert source_of.str.contains(r"\+").any()
    # Delhi's territory holds its crowd on its own.
    assert source_of[cell_of["delhi"]].startswith("admin:IN-DL")


def test_the_bundled_admin1_layer() -> None:
    table = admin1()
    assert table.crs.equals("EPSG:4326")
    assert {"key", "iso_3166_2", "name", "admin", "adm0_a3", "geometry"} <= set(table.columns)
    assert table["key"].is_unique and table["iso_3166_2"].dropna().is_unique
    geometry = np.asarray(table.geometry.values)
    assert shapely.is_valid(geometry).all() and not shapely.is_empty(geometry).any()
    india = table[table["adm0_a3"] == "IND"]
    assert {"IN-MH", "IN-GA", "IN-DL", "IN-KA"} <= set(india["iso_3166_2"])
    assert india.set_index("iso_3166_2")["name"]["IN-MH"] == "Maharashtra"
    assert ADMIN1_FILE.stat().st_size < 5_000_000


def test_a_missing_admin_file_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, deccan: Grid, tmp_path: Path
) -> None:
    monkeypatch.setattr(partition_module, "ADMIN1_FILE", tmp_path / "admin1.parquet")
    admin1.cache_clear()
    try:
        with pytest.raises(InputError, match=r"admin1\.parquet is missing.*build_admin1\.py"):
            admin_partition(deccan, np.array([12.0]), np.array([77.0]), max_images=5, min_images=1)
    finally:
        admin1.cache_clear()


# -- the antimeridian --------------------------------------------------------------------


@pytest.mark.parametrize("build", [adaptive_partition, admin_partition])
def test_cells_across_the_antimeridian_are_valid(build: Callable[..., Partition]) -> None:
    grid = make_grid(country_region("Fiji"), 50, min_region_fraction=0.0)
    centres = [(-18.14, 178.44), (-16.8, 179.35), (-17.0, -179.95), (-18.2, -178.8)]
    lat, lon = clustered(5, centres, 200, 0.05, (177, -19.5, 180, -16), 0)
    lat, lon = in_region(grid, lat, (lon + 180) % 360 - 180)
    partition = build(grid, lat, lon, max_images=60, min_images=5)
    assert_tiles_the_grid(partition, grid)
    assert_limits(partition, 60, 5)
    parts = shapely.get_parts(partition.cells.geometry.values)
    widths = shapely.bounds(parts)[:, 2] - shapely.bounds(parts)[:, 0]
    assert widths.max() < 25, "no part may wrap around the globe"
    assert partition.cells["center_lon"].between(-180, 180).all()
    assert (partition.cells.geometry.geom_type == "MultiPolygon").any()


# -- locate, files, determinism ----------------------------------------------------------


def test_locate_agrees_with_point_in_polygon(
    deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    partition = adaptive_partition(deccan, *deccan_images, max_images=120, min_images=15)
    rng = np.random.default_rng(6)
    lat, lon = rng.uniform(9, 17, 3000), rng.uniform(73, 81, 3000)
    located = partition.locate(lat, lon)
    points = shapely.points(lon, lat)
    geometry = np.asarray(partition.cells.geometry.values)
    edges = shapely.union_all(shapely.boundary(geometry))
    clear = shapely.distance(points, edges) > 0.01  # degrees; edges differ by metres
    containing = shapely.STRtree(geometry).query(points[clear], predicate="within")
    expected = np.full(clear.sum(), -1)
    expected[containing[0]] = containing[1]
    assert np.array_equal(located[clear], expected)
    assert (located == -1).any() and (located >= 0).any()
    assert partition.locate(np.array([]), np.array([])).shape == (0,)


def test_write_and_read_round_trip(
    tmp_path: Path, deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    partition = adaptive_partition(deccan, *deccan_images, max_images=120, min_images=15)
    path = tmp_path / "cells.parquet"
    partition.write(path)
    back = Partition.read(path)
    assert_geodataframe_equal(back.cells, partition.cells)
    assert (back.kind, back.max_images, back.min_images) == ("adaptive", 120, 15)
    assert back.projection == partition.projection and back.notes == partition.notes
    lat, lon = deccan_images
    assert np.array_equal(back.locate(lat, lon), partition.locate(lat, lon))
    assert [p.name for p in tmp_path.iterdir()] == ["cells.parquet"]  # no temporary left


def test_damaged_partition_files_are_one_line_errors(
    tmp_path: Path, deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    plain = tmp_path / "plain.parquet"
    deccan.cells.to_parquet(plain)
    for path, message in [
        (garbage, "cannot read partition"),
        (plain, "is not a geotag partition"),
        (tmp_path / "absent.parquet", "does not exist"),
    ]:
        with pytest.raises(DataError, match=message) as caught:
            Partition.read(path)
        assert "\n" not in str(caught.value)
    # Cells that lost a column: never written, and refused when a file lacks it.
    partition = grid_partition(deccan, *deccan_images)
    broken = Partition(
        partition.cells.drop(columns="source"), "grid", None, None, partition.projection
    )
    with pytest.raises(DataError, match="lacks column"):
        broken.write(tmp_path / "broken.parquet")
    assert not (tmp_path / "broken.parquet").exists()
    partition.write(tmp_path / "broken.parquet")
    _rewrite(tmp_path / "broken.parquet", lambda cells: cells.drop(columns="source"))
    with pytest.raises(DataError, match="lacks column"):
        Partition.read(tmp_path / "broken.parquet")
    # An empty cell is refused on both sides too.
    empty = partition.cells.copy()
    empty.loc[0, "geometry"] = shapely.Polygon()
    with pytest.raises(DataError, match="empty or invalid cell"):
        Partition(empty, "grid", None, None, partition.projection).write(tmp_path / "e.parquet")


def _rewrite(path: Path, change: Callable[[Any], Any]) -> None:
    """Change a written partition's cells behind its back, keeping geotag's settings."""
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq

    ours = pq.read_schema(path).metadata[partition_module.METADATA_KEY]
    buffer = pa.BufferOutputStream()
    change(gpd.read_parquet(path)).to_parquet(buffer, index=False)
    table = pq.read_table(pa.BufferReader(buffer.getvalue()))
    metadata = {**(table.schema.metadata or {}), partition_module.METADATA_KEY: ours}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def test_a_cell_crossing_itself_in_lonlat_is_repaired_when_made_and_when_read(
    tmp_path: Path, deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    """A cell valid in the plane can cross itself by a rounding error once unprojected
    (admin cells of the demo did: eval then refused the run). to_lonlat repairs it, and a
    run written before the repair reads repaired, its area unchanged."""
    from geotag.geo.grid import to_lonlat

    side = 50_000.0
    bow_tie = shapely.Polygon([(0, 0), (side, side), (side, 0), (0, side)])  # crosses itself
    square = shapely.box(side, 0, 2 * side, side)
    fixed = to_lonlat(np.array([bow_tie, square], dtype=object), deccan.projection)
    assert shapely.is_valid(fixed).all()
    assert fixed[1].equals(deccan.projection.unproject(np.array([square]))[0])  # untouched
    # Both triangles of the bow tie are kept.
    assert shapely.area(deccan.projection.project(np.array([fixed[0]])))[0] == pytest.approx(
        side * side / 2, rel=1e-3
    )
    partition = grid_partition(deccan, *deccan_images)
    path = tmp_path / "old.parquet"
    partition.write(path)
    crossed = shapely.Polygon([(74, 17), (75, 18), (75, 17), (74, 18)])

    def cross_cell_0(cells: Any) -> Any:
        cells.loc[0, "geometry"] = crossed
        return cells

    _rewrite(path, cross_cell_0)
    back = Partition.read(path)
    assert shapely.is_valid(np.asarray(back.cells.geometry.values)).all()
    assert back.cells.geometry.iloc[0].area == pytest.approx(0.5)  # both triangles, deg²


def test_partitions_depend_on_their_inputs_only(
    deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    lat, lon = deccan_images
    first = admin_partition(deccan, lat, lon, max_images=120, min_images=15)
    # Other work in between, other global random state, the same images in another order.
    adaptive_partition(deccan, lat[::3], lon[::3], max_images=40, min_images=2)
    np.random.seed(99)
    random.seed(99)
    order = np.random.permutation(len(lat))
    second = admin_partition(deccan, lat[order], lon[order], max_images=120, min_images=15)
    assert_geodataframe_equal(first.cells, second.cells)
    assert first.notes == second.notes


def test_images_not_passed_in_do_not_move_cells(
    deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    """The caller passes training folds only: whatever the test fold holds cannot matter."""
    lat, lon = deccan_images
    train = np.arange(len(lat)) % 10 != 0
    moved_lat = np.where(train, lat, 15.9)  # the test images, somewhere else entirely
    first = adaptive_partition(deccan, lat[train], lon[train], max_images=100, min_images=10)
    second = adaptive_partition(deccan, moved_lat[train], lon[train], max_images=100, min_images=10)
    assert_geodataframe_equal(first.cells, second.cells)
    assert first.cells["images"].sum() == train.sum()


# -- corner cases ------------------------------------------------------------------------


def test_images_at_one_spot_stop_the_splitting(deccan: Grid) -> None:
    lat = np.concatenate([np.full(500, 12.97), [11.0, 15.0, 13.5]])
    lon = np.concatenate([np.full(500, 77.59), [76.0, 78.0, 79.0]])
    partition = adaptive_partition(deccan, lat, lon, max_images=100, min_images=0)
    assert_tiles_the_grid(partition, deccan)
    full = partition.cells[partition.cells["images"] > 100]
    assert full["images"].tolist() == [500]
    # It stops as soon as the crowd is alone, long before the size limit.
    assert full["area_km2"].iloc[0] > 1.0
    assert any("500 images" in n and "cannot be split apart" in n for n in partition.notes)


def test_a_merge_may_overflow_max_images(deccan: Grid) -> None:
    """Every cell holds max_images except one nearly empty cell: it must still merge."""
    centres = deccan.cells[["center_lat", "center_lon"]].to_numpy()
    per_cell = np.full(len(centres), 50)
    small = len(centres) // 2
    per_cell[small] = 3
    lat = np.repeat(centres[:, 0], per_cell)
    lon = np.repeat(centres[:, 1], per_cell)
    partition = adaptive_partition(deccan, lat, lon, max_images=50, min_images=10)
    assert_tiles_the_grid(partition, deccan)
    assert len(partition.cells) == len(deccan.cells) - 1
    assert sorted(partition.cells["images"])[-1] == 53
    assert any("min wins" in n for n in partition.notes)


def test_an_island_cell_merges_into_the_nearest_cell() -> None:
    island = Region(
        "two islands",
        shapely.MultiPolygon([shapely.box(70, 10, 72, 12), shapely.box(74, 10.5, 74.5, 11)]),
        "test",
    )
    grid = make_grid(island, 50, shape="square")
    rng = np.random.default_rng(7)
    lat, lon = rng.uniform(10, 12, 400), rng.uniform(70, 72, 400)  # the big island only
    partition = adaptive_partition(grid, lat, lon, max_images=400, min_images=20)
    assert_tiles_the_grid(partition, grid)
    assert_limits(partition, 400, 20)
    small = partition.locate(np.array([10.75]), np.array([74.25]))[0]
    geometry = partition.cells.geometry[small]
    assert geometry.geom_type == "MultiPolygon" and geometry.intersects(shapely.Point(71.9, 11))


def test_too_few_images_make_one_cell(deccan: Grid) -> None:
    partition = adaptive_partition(
        deccan, np.array([12.9, 13.1]), np.array([77.5, 77.7]), max_images=10, min_images=5
    )
    assert len(partition.cells) == 1
    assert partition.cells["images"].tolist() == [2]
    assert_tiles_the_grid(partition, deccan)
    assert any("one cell" in n for n in partition.notes)


def test_images_outside_the_grid_are_counted_in_the_notes(deccan: Grid) -> None:
    partition = grid_partition(deccan, np.array([12.9, 45.0]), np.array([77.5, 10.0]))
    assert partition.cells["images"].sum() == 1
    assert partition.notes == ("1 of 2 images lie outside every cell",)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ((10, 20), r"--min-images \(20\) must not exceed --max-images \(10\)"),
        ((0, 0), "--max-images must be a whole number >= 1; got 0"),
        ((10, -1), "--min-images must be a whole number >= 0; got -1"),
        ((True, 0), "--max-images must be a whole number >= 1; got True"),
        ((2.5, 0), "--max-images must be a whole number >= 1; got 2.5"),
    ],
)
def test_bad_limits_are_refused(deccan: Grid, limits: tuple[Any, Any], message: str) -> None:
    for build in (adaptive_partition, admin_partition):
        with pytest.raises(InputError, match=message):
            build(
                deccan,
                np.array([12.9]),
                np.array([77.5]),
                max_images=limits[0],
                min_images=limits[1],
            )


def test_make_partition_builds_each_kind(
    deccan: Grid, deccan_images: tuple[np.ndarray, ...]
) -> None:
    for kind in KINDS:
        partition = make_partition(kind, deccan, *deccan_images, max_images=150, min_images=10)
        assert partition.kind == kind
    with pytest.raises(
        InputError, match="unknown --cells 'h3'; choose one of grid, adaptive, admin"
    ):
        make_partition("h3", deccan, *deccan_images, max_images=150, min_images=10)


def test_bad_image_locations_are_refused(deccan: Grid) -> None:
    with pytest.raises(InputError, match="equal length"):
        grid_partition(deccan, np.array([12.9, 13.0]), np.array([77.5]))
    with pytest.raises(InputError, match="finite"):
        grid_partition(deccan, np.array([np.nan]), np.array([77.5]))
    with pytest.raises(InputError, match=r"latitudes must lie in \[-90, 90\]"):
        grid_partition(deccan, np.array([91.0]), np.array([77.5]))
