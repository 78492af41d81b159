from __future__ import annotations

import json

import numpy as np
import pytest

from geotag.errors import InputError
from geotag.geo.distance import haversine_km
from geotag.retrieval.index import LocationIndex
from geotag.retrieval.refine import (
    KS,
    MS,
    TEMPERATURES,
    RefineSettings,
    choose_settings,
    locate,
    softmax_weights,
    weighted_medoid,
)
from geotag.retrieval.search import ExactSearch


def _search(
    embeddings: np.ndarray, lat: np.ndarray, lon: np.ndarray, cell: np.ndarray
) -> ExactSearch:
    n = len(embeddings)
    index = LocationIndex.build(
        embeddings.astype(np.float32), lat, lon, np.asarray(cell, np.int64),
        [f"g{i}" for i in range(n)], [f"p{i}.jpg" for i in range(n)], fuse=False,
    )  # fmt: skip
    return ExactSearch(index)


# -- weighted_medoid ----------------------------------------------------------------------


def _medoid_by_loop(lat: np.ndarray, lon: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    best, answer = np.inf, (np.nan, np.nan)
    for a in range(len(w)):
        if w[a] <= 0:
            continue
        cost = sum(
            w[b] * haversine_km(lat[a], lon[a], lat[b], lon[b]) for b in range(len(w)) if w[b] > 0
        )
        if cost < best:
            best, answer = cost, (lat[a], lon[a])
    return answer


def test_weighted_medoid_is_one_of_the_inputs_and_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-70, 70, (50, 12)), rng.uniform(-180, 180, (50, 12))
    w = rng.dirichlet(np.ones(12), 50)
    w[:, 9:] = 0  # padding
    lat[:, 10:] = np.nan
    w /= w.sum(axis=1, keepdims=True)
    got_lat, got_lon = weighted_medoid(lat, lon, w)
    for row in range(50):
        assert (got_lat[row], got_lon[row]) == _medoid_by_loop(lat[row], lon[row], w[row])
        member = (lat[row] == got_lat[row]) & (lon[row] == got_lon[row]) & (w[row] > 0)
        assert member.any()


def test_weighted_medoid_picks_the_heavier_cluster_never_a_midpoint() -> None:
    # Lisbon and Tokyo: the mean of the two would lie in Siberia; the medoid is a member of
    # the heavier cluster, whichever that is.
    lisbon = np.array([[38.72, -9.14], [38.70, -9.10], [38.75, -9.20]])
    tokyo = np.array([[35.68, 139.69], [35.70, 139.70], [35.66, 139.75], [35.69, 139.60]])
    points = np.vstack([lisbon, tokyo])
    for lisbon_share in (0.3, 0.45, 0.55, 0.8):
        w = np.r_[np.full(3, lisbon_share / 3), np.full(4, (1 - lisbon_share) / 4)]
        lat, lon = weighted_medoid(points[None, :, 0], points[None, :, 1], w[None])
        heavier = lisbon if lisbon_share > 0.5 else tokyo
        assert [lat[0], lon[0]] in heavier.tolist()


def test_weighted_medoid_of_two_equal_points_is_the_first() -> None:
    lat, lon = weighted_medoid(
        np.array([[0.0, 0.0]]), np.array([[-10.0, 10.0]]), np.array([[0.5, 0.5]])
    )
    assert (lat[0], lon[0]) == (0.0, -10.0)


def test_weighted_medoid_answers_nan_for_a_row_without_weight() -> None:
    lat = np.array([[1.0, np.nan], [np.nan, np.nan]])
    lon = np.array([[2.0, np.nan], [np.nan, np.nan]])
    w = np.array([[1.0, 0.0], [0.0, 0.0]])
    got_lat, got_lon = weighted_medoid(lat, lon, w)
    assert (got_lat[0], got_lon[0]) == (1.0, 2.0)
    assert np.isnan(got_lat[1]) and np.isnan(got_lon[1])


@pytest.mark.parametrize(
    ("lat", "weights", "says"),
    [
        (np.zeros((2, 3)), np.ones((2, 2)), "one shape"),
        (np.zeros((2, 3)), -np.ones((2, 3)), "finite, non-negative weights"),
        (np.full((2, 3), np.nan), np.ones((2, 3)), "a weighted neighbour without a location"),
    ],
)
def test_weighted_medoid_refuses_bad_input(lat: np.ndarray, weights: np.ndarray, says: str) -> None:
    with pytest.raises(InputError, match=says):
        weighted_medoid(lat, np.zeros((2, 3)), weights)


# -- locate -------------------------------------------------------------------------------


def _random_world(seed: int, n: int = 400, d: int = 16, cells: int = 15):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, cells, n)
    lat = rng.uniform(-60, 60, n)
    lon = rng.uniform(-180, 180, n)
    return rng, _search(rng.standard_normal((n, d)), lat, lon, cell)


@pytest.mark.parametrize("seed", range(20))
def test_refined_answers_a_training_location_within_the_top_k_cells(seed: int) -> None:
    rng, search = _random_world(seed)
    index = search.index
    queries = rng.standard_normal((30, 16))
    top_cells = rng.integers(0, 18, (30, 5))  # 15-17: cells without entries
    settings = RefineSettings(
        k=int(rng.integers(1, 6)),
        m=int(rng.integers(1, 25)),
        temperature=float(rng.choice([0.01, 0.1, 1.0])),
    )
    lat, lon, found = locate(search, queries, settings, top_cells)
    for row in range(30):
        allowed = np.isin(index.cell, top_cells[row, : settings.k])
        assert found[row] == allowed.any()
        if found[row]:
            same = (index.lat == lat[row]) & (index.lon == lon[row])
            assert (same & allowed).any()
        else:
            assert np.isnan(lat[row]) and np.isnan(lon[row])


def test_knn_searches_the_whole_index() -> None:
    _, search = _random_world(1)
    index = search.index
    pick = [3, 77, 250]
    queries = index.embeddings[pick].astype(np.float32)
    lat, lon, found = locate(search, queries, RefineSettings(1, 1, 0.1), None)
    assert found.all()
    assert lat.tolist() == index.lat[pick].tolist() and lon.tolist() == index.lon[pick].tolist()
    # A top cell is ignored by knn, and refined with a cell of no entries finds nothing.
    _, _, found = locate(search, queries, RefineSettings(1, 5, 0.1), np.full((3, 1), 99))
    assert not found.any()


def test_locate_refuses_a_top_cells_array_of_the_wrong_shape() -> None:
    _, search = _random_world(2)
    with pytest.raises(InputError, match=r"top_cells must be a \(4, K\) array"):
        locate(search, np.ones((4, 16)), RefineSettings(1, 3, 0.1), np.ones((3, 2), np.int64))


def test_softmax_weights_sharpen_as_the_temperature_drops() -> None:
    idx = np.array([[4, 9, -1]])
    sims = np.array([[0.9, 0.8, -np.inf]], dtype=np.float32)
    cold, warm = softmax_weights(idx, sims, 0.01), softmax_weights(idx, sims, 1.0)
    assert cold.sum() == pytest.approx(1) and warm.sum() == pytest.approx(1)
    assert cold[0, 2] == 0 and warm[0, 2] == 0
    assert cold[0, 0] == pytest.approx(1 / (1 + np.exp(-10)))
    assert 0.5 < warm[0, 0] < 0.53
    none = softmax_weights(np.array([[-1, -1]]), np.full((1, 2), -np.inf, np.float32), 0.1)
    assert (none == 0).all()


@pytest.mark.parametrize(
    ("k", "m", "t"),
    [(0, 3, 0.1), (1, 0, 0.1), (1, 3, 0.0), (1, 3, float("nan")), (True, 3, 0.1), (1.5, 3, 0.1)],
)
def test_refine_settings_refuse_bad_values(k: object, m: object, t: object) -> None:
    with pytest.raises(InputError, match="retrieval"):
        RefineSettings(k, m, t)  # type: ignore[arg-type]


# -- choose_settings ----------------------------------------------------------------------


def _world(informative: bool, seed: int = 0, n: int = 1200, queries: int = 200):  # type: ignore[no-untyped-def]
    """Entries over a 20 x 20 degree square in 16 cells (5-degree boxes).

    Informative: a query is a training entry's embedding plus a little noise, lies ~1 km
    from it and shares its cell, so its nearest neighbour carries its location. Noise:
    embeddings are unrelated to places, so neighbours are random entries of the searched
    cells.
    """
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(0, 20, n), rng.uniform(0, 20, n)
    cell = (lat // 5).astype(int) * 4 + (lon // 5).astype(int)
    emb = rng.standard_normal((n, 32))
    search = _search(emb, lat, lon, cell)
    if informative:
        source = rng.choice(n, queries, replace=False)
        q = emb[source] + 0.05 * rng.standard_normal((queries, 32))
        true_lat, true_lon = lat[source] + 0.01, lon[source]
        true_cell = cell[source]
    else:
        q = rng.standard_normal((queries, 32))
        true_lat, true_lon = rng.uniform(0, 20, queries), rng.uniform(0, 20, queries)
        true_cell = (true_lat // 5).astype(int) * 4 + (true_lon // 5).astype(int)
    # A classifier's guesses: the true cell first, then others.
    others = np.argsort(rng.random((queries, 16)), axis=1)[:, :5]
    top_cells = np.concatenate([true_cell[:, None], others], axis=1)[:, :5]
    return search, q, top_cells, true_lat, true_lon


def test_with_informative_neighbours_it_takes_the_nearest_one() -> None:
    search, q, top_cells, true_lat, true_lon = _world(informative=True)
    refined, knn, table = choose_settings(search, q, top_cells, true_lat, true_lon)
    assert (refined.k, refined.m, refined.temperature) == (1, 1, 0.01)
    assert (knn.m, knn.temperature) == (1, 0.01)
    best = next(r for r in table["rows"] if (r["k"], r["m"], r["temperature"]) == (1, 1, 0.01))
    assert best["median_km"] < 2 and best["found"] == 1.0


def test_with_noise_neighbours_it_weighs_many() -> None:
    search, q, top_cells, true_lat, true_lon = _world(informative=False)
    refined, knn, table = choose_settings(search, q, top_cells, true_lat, true_lon)
    assert refined.m >= 10 and knn.m >= 10  # 20 with this seed; 10 with some others
    assert refined.k == 1  # the true cell, first: more cells only add far-away noise
    by_m = {
        r["m"]: r["median_km"] for r in table["rows"] if r["k"] == 0 and r["temperature"] == 0.1
    }
    assert by_m[max(MS)] < by_m[1]


def test_choose_settings_is_deterministic_and_json_ready() -> None:
    world = _world(informative=False, seed=3, queries=60)
    first = choose_settings(*world)
    second = choose_settings(*world)
    assert first[:2] == second[:2]
    assert json.dumps(first[2]) == json.dumps(second[2])
    table = first[2]
    assert table["queries"] == 60
    assert len(table["rows"]) == (len(KS) + 1) * len(MS) * len(TEMPERATURES)
    assert {r["k"] for r in table["rows"]} == {0, *KS}
    assert table["refined"] == {
        "k": first[0].k,
        "m": first[0].m,
        "temperature": first[0].temperature,
    }
    for row in table["rows"]:
        assert set(row) == {"k", "m", "temperature", "median_km", "geoscore", "found"}
        assert all(isinstance(v, int | float) for v in row.values())


def test_choose_settings_searches_each_k_once() -> None:
    search, q, top_cells, true_lat, true_lon = _world(informative=True, queries=40)
    calls = []
    nearest = search.nearest

    def counting(queries, m, cells=None):  # type: ignore[no-untyped-def]
        calls.append((m, None if cells is None else cells.shape[1]))
        return nearest(queries, m, cells)

    search.nearest = counting  # type: ignore[method-assign]
    choose_settings(search, q, top_cells, true_lat, true_lon)
    assert calls == [(max(MS), k) for k in KS] + [(max(MS), None)]


def test_a_k_beyond_the_top_cells_given_is_skipped() -> None:
    search, q, top_cells, true_lat, true_lon = _world(informative=True, queries=30)
    _, _, table = choose_settings(search, q, top_cells[:, :2], true_lat, true_lon)
    assert {r["k"] for r in table["rows"]} == {0, 1, 2}
    with pytest.raises(InputError, match="exceeds the 2 top cells"):
        choose_settings(search, q, top_cells[:, :2], true_lat, true_lon, ks=(3, 5))


def test_a_query_without_candidates_scores_as_its_fallback() -> None:
    search, q, top_cells, true_lat, true_lon = _world(informative=True, queries=30)
    top_cells[:, 0] = 99  # no entries: nothing found with k = 1
    kw = {"ks": (1,), "ms": (1,), "temperatures": (0.1,)}
    _, _, far = choose_settings(search, q, top_cells, true_lat, true_lon, **kw)
    row = far["rows"][0]
    assert row["found"] == 0.0 and row["median_km"] == pytest.approx(20_015.1, abs=0.1)
    fallback = {"fallback_lat": true_lat, "fallback_lon": true_lon + 1}
    _, _, near = choose_settings(search, q, top_cells, true_lat, true_lon, **fallback, **kw)
    assert near["rows"][0]["median_km"] == pytest.approx(haversine_km(10, 0, 10, 1), rel=0.2)
