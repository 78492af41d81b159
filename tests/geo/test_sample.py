from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy import stats

from geotag.errors import InputError
from geotag.geo.grid import Grid, make_grid
from geotag.geo.regions import country_region
from geotag.geo.sample import MAX_POINTS, Quota, cell_pieces, sample_in_polygons, sample_points


def pieces_of(grid: Grid) -> np.ndarray:
    return cell_pieces(
        grid.cells_in_plane(), grid.cells["region_fraction"].to_numpy(), grid.region_projected
    )


@pytest.fixture(scope="module")
def coastal_grid() -> Grid:
    """Norway at 150 km: far north, ragged coast, cells with every region fraction."""
    return make_grid(country_region("Norway"), 150, min_region_fraction=0.0)


def test_points_lie_in_their_cell_and_in_the_region(coastal_grid: Grid) -> None:
    pieces = pieces_of(coastal_grid)
    points = sample_points(
        coastal_grid.cells["cell_id"].to_numpy(),
        pieces,
        coastal_grid.projection,
        Quota(per_cell=40),
        seed=3,
    )
    x, y = coastal_grid.projection.forward(points["lon"].to_numpy(), points["lat"].to_numpy())
    owner = pieces[points["cell_id"].to_numpy()]
    # Exact in the grid's plane, up to the round trip through degrees (well under 1 mm).
    assert shapely.dwithin(owner, shapely.points(x, y), 1e-3).all()
    # In EPSG:4326 the cell's straight-in-degrees edges differ from the true ones by metres.
    cells = coastal_grid.cells.geometry.to_numpy()[points["cell_id"].to_numpy()]
    in_cell = shapely.intersects_xy(cells, points["lon"].to_numpy(), points["lat"].to_numpy())
    assert in_cell.mean() > 0.999
    region = coastal_grid.region.geometry
    shapely.prepare(region)
    in_region = shapely.intersects_xy(region, points["lon"].to_numpy(), points["lat"].to_numpy())
    assert in_region.mean() > 0.999


def test_per_cell_gives_exactly_n_everywhere(coastal_grid: Grid) -> None:
    points = sample_points(
        coastal_grid.cells["cell_id"].to_numpy(),
        pieces_of(coastal_grid),
        coastal_grid.projection,
        Quota(per_cell=7),
    )
    counts = points["cell_id"].value_counts()
    assert len(counts) == len(coastal_grid.cells) and (counts == 7).all()
    assert points["point_id"].tolist() == list(range(len(points)))
    assert points["cell_id"].is_monotonic_increasing
    assert list(points.columns) == ["point_id", "cell_id", "lat", "lon"]


def test_total_is_spread_by_area_in_region(coastal_grid: Grid) -> None:
    total = 10_001
    pieces = pieces_of(coastal_grid)
    points = sample_points(
        coastal_grid.cells["cell_id"].to_numpy(),
        pieces,
        coastal_grid.projection,
        Quota(total=total),
    )
    assert len(points) == total
    counts = points["cell_id"].value_counts().reindex(coastal_grid.cells["cell_id"], fill_value=0)
    expected = shapely.area(pieces) / shapely.area(pieces).sum() * total
    assert np.all(np.abs(counts.to_numpy() - expected) < 1.0)


def test_points_are_uniform_per_unit_area_inside_cells() -> None:
    """Counts in (cell, quadrant) bins must follow area, not square degrees.

    Norway spans 58-71 degrees north: in a 300 km cell there the northern half holds ~5%
    more square degrees than the southern half, so sampling uniformly in longitude and
    latitude fails the pooled north/south check below (z around 10).
    """
    grid = make_grid(country_region("Norway"), 300, min_region_fraction=0.0)
    pieces = pieces_of(grid)
    big = shapely.area(pieces) > 0.2 * shapely.area(pieces).max()
    points = sample_points(
        grid.cells["cell_id"].to_numpy()[big],
        pieces[big],
        grid.projection,
        Quota(per_cell=8000),
        seed=11,
    )
    x, y = grid.projection.forward(points["lon"].to_numpy(), points["lat"].to_numpy())
    observed, expected, north = [], [], []
    for piece, cell_id in zip(pieces[big], grid.cells["cell_id"][big], strict=True):
        mine = points["cell_id"].to_numpy() == cell_id
        cx, cy = piece.centroid.x, piece.centroid.y
        x0, y0, x1, y1 = piece.bounds
        for qx0, qy0, qx1, qy1 in [
            (x0, y0, cx, cy),
            (cx, y0, x1, cy),
            (x0, cy, cx, y1),
            (cx, cy, x1, y1),
        ]:
            share = shapely.clip_by_rect(piece, qx0, qy0, qx1, qy1).area / piece.area
            inside = (x[mine] >= qx0) & (x[mine] < qx1) & (y[mine] >= qy0) & (y[mine] < qy1)
            observed.append(inside.sum())
            expected.append(share * mine.sum())
            north.append(qy0 == cy)
    obs, exp, is_north = np.array(observed), np.array(expected), np.array(north)
    keep = exp > 5
    chi2 = ((obs - exp) ** 2 / exp)[keep].sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3, f"chi-square {chi2:.0f}"
    # Pooled over cells, the share north of each centroid matches the area share.
    n = len(points)
    p_north = exp[is_north].sum() / n
    z = (obs[is_north].sum() - exp[is_north].sum()) / np.sqrt(n * p_north * (1 - p_north))
    assert abs(z) < 4, f"north/south imbalance z={z:.1f}"


def test_sampling_in_a_triangle_and_an_l_shape_is_uniform() -> None:
    """KS tests on coordinates whose exact distribution is known."""
    rng = np.random.default_rng(0)
    l_shape = shapely.Polygon([(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)])
    _, x, y = sample_in_polygons(np.array([l_shape]), np.array([30_000]), rng)
    # x in the L: density 2/3 on [0, 1] and 1/3 on [1, 2].
    cdf = lambda v: np.where(v < 1, 2 * v / 3, 2 / 3 + (v - 1) / 3)  # noqa: E731
    assert stats.kstest(x, cdf).pvalue > 1e-3
    assert stats.kstest(y, cdf).pvalue > 1e-3
    assert shapely.contains_xy(l_shape, x, y).all()


def test_same_seed_same_points(coastal_grid: Grid) -> None:
    args = (
        coastal_grid.cells["cell_id"].to_numpy(),
        pieces_of(coastal_grid),
        coastal_grid.projection,
        Quota(per_cell=3),
    )
    first, again = sample_points(*args, seed=5), sample_points(*args, seed=5)
    other = sample_points(*args, seed=6)
    assert first.equals(again)
    assert not np.allclose(first["lat"], other["lat"])


def test_bad_quotas() -> None:
    for kwargs, message in [
        ({"per_cell": 0}, "--per-cell must be a positive whole number; got 0"),
        ({"per_cell": -3}, "--per-cell must be a positive whole number; got -3"),
        ({"total": 0}, "--total must be a positive whole number"),
        ({"per_cell": 2, "total": 5}, "give --per-cell or --total, not both"),
    ]:
        with pytest.raises(InputError, match=message):
            Quota(**kwargs)
    with pytest.raises(InputError, match="over the limit"):
        Quota(total=MAX_POINTS + 1).counts(np.ones(3))
    with pytest.raises(InputError, match="over the limit"):
        Quota(per_cell=MAX_POINTS).counts(np.ones(3))
