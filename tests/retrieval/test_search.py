from __future__ import annotations

import numpy as np
import pytest

from geotag.errors import InputError
from geotag.retrieval.index import LocationIndex
from geotag.retrieval.search import ExactSearch, make_search


def _index(embeddings: np.ndarray, cell: np.ndarray, seed: int = 0) -> LocationIndex:
    n = len(embeddings)
    rng = np.random.default_rng(seed)
    return LocationIndex.build(
        embeddings.astype(np.float32), rng.uniform(-50, 50, n), rng.uniform(-150, 150, n),
        np.asarray(cell, dtype=np.int64), [f"g{i}" for i in range(n)],
        [f"p{i}.jpg" for i in range(n)], fuse=False,
    )  # fmt: skip


def _random_index(n: int = 300, d: int = 24, cells: int = 12, seed: int = 0) -> LocationIndex:
    rng = np.random.default_rng(seed)
    return _index(rng.standard_normal((n, d)), rng.integers(0, cells, n), seed)


def brute_force(
    index: LocationIndex, queries: np.ndarray, m: int, cells: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every similarity (float64, no BLAS), then a full sort per query: the reference."""
    q = queries.astype(np.float32)
    q = (q / np.linalg.norm(q.astype(np.float64), axis=1)[:, None]).astype(np.float32)
    sims = (q.astype(np.float64)[:, None, :] * index.embeddings.astype(np.float64)).sum(-1)
    idx_out = np.full((len(q), m), -1, np.int64)
    sim_out = np.full((len(q), m), -np.inf, np.float32)
    for row in range(len(q)):
        allowed = np.arange(len(index))
        if cells is not None:
            wanted = [c for c in cells[row] if c != -1]
            allowed = allowed[np.isin(index.cell, wanted)]
        order = allowed[np.lexsort((allowed, -sims[row, allowed]))][:m]
        idx_out[row, : len(order)] = order
        sim_out[row, : len(order)] = sims[row, order].astype(np.float32)
    return idx_out, sim_out


def _assert_same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    assert got[0].dtype == np.int64 and got[1].dtype == np.float32
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_whole_index_search_equals_brute_force(seed: int) -> None:
    index = _random_index(seed=seed)
    queries = np.random.default_rng(100 + seed).standard_normal((17, 24)) * 3
    for m in (1, 5, 40):
        _assert_same(ExactSearch(index).nearest(queries, m), brute_force(index, queries, m))


@pytest.mark.parametrize("seed", range(5))
def test_restricted_search_equals_brute_force(seed: int) -> None:
    index = _random_index(seed=seed)
    rng = np.random.default_rng(200 + seed)
    queries = rng.standard_normal((23, 24))
    # Cells 12-14 have no entries; -1 slots are unused; a cell may repeat in a row.
    cells = rng.integers(-1, 15, (23, 4))
    cells[0] = -1  # a query with no cell at all
    cells[1] = [3, 3, 3, -1]
    for m in (1, 7, 60):
        got = ExactSearch(index).nearest(queries, m, cells)
        _assert_same(got, brute_force(index, queries, m, cells))
    assert (got[0][0] == -1).all() and np.isneginf(got[1][0]).all()


def test_m_larger_than_the_candidates_pads_with_minus_one_and_minus_inf() -> None:
    index = _random_index(n=30)
    queries = np.random.default_rng(1).standard_normal((3, 24))
    idx, sims = ExactSearch(index).nearest(queries, 50)
    assert (idx[:, :30] >= 0).all() and (idx[:, 30:] == -1).all()
    assert np.isfinite(sims[:, :30]).all() and np.isneginf(sims[:, 30:]).all()
    assert sorted(idx[0, :30]) == list(range(30))
    cells = np.array([[0, 1], [2, -1], [99, -1]])
    idx, _ = ExactSearch(index).nearest(queries, 50, cells)
    for row in range(3):
        found = idx[row][idx[row] >= 0]
        assert sorted(found) == list(np.flatnonzero(np.isin(index.cell, cells[row])))


def test_ties_go_to_the_lower_index() -> None:
    # One-hot embeddings: every similarity is one query component exactly, whatever the
    # order of the sums, so duplicates tie exactly.
    rng = np.random.default_rng(3)
    axis = rng.integers(0, 4, 200)
    index = _index(np.eye(4)[axis], rng.integers(0, 5, 200))
    queries = rng.uniform(0.1, 1, (9, 4))
    cells = rng.integers(0, 5, (9, 2))
    for block_bytes in (1, 200, 10_000_000):
        search = ExactSearch(index, block_bytes=block_bytes)
        for m in (1, 3, 30, 120):
            _assert_same(search.nearest(queries, m), brute_force(index, queries, m))
            _assert_same(search.nearest(queries, m, cells), brute_force(index, queries, m, cells))
    idx, sims = ExactSearch(index).nearest(queries[:1], 5)
    assert len(set(sims[0].tolist())) == 1  # all tied: the five lowest indices of that axis
    best = int(np.argmax(queries[0]))
    assert idx[0].tolist() == np.flatnonzero(axis == best)[:5].tolist()


@pytest.mark.parametrize("cells", [False, True])
def test_the_result_does_not_depend_on_the_block_size(cells: bool) -> None:
    index = _random_index(n=500, cells=6)
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((11, 24))
    restrict = rng.integers(-1, 7, (11, 3)) if cells else None
    results = [
        ExactSearch(index, block_bytes=b).nearest(queries, 9, restrict)
        for b in (1, 4 * 35 * 7, 4 * 35 * 64, 2**30)  # 1 row, 7 rows, 64 rows, all at once
    ]
    for idx, sims in results[1:]:
        np.testing.assert_array_equal(idx, results[0][0])
        np.testing.assert_array_equal(sims, results[0][1])


def test_a_query_gets_the_same_answer_alone_and_in_a_batch() -> None:
    # Alone, BLAS multiplies a vector; in a batch, a matrix: the last bits differ, the
    # answer must not.
    index = _random_index(n=400, cells=5)
    rng = np.random.default_rng(8)
    queries = rng.standard_normal((32, 24))
    cells = rng.integers(0, 5, (32, 2))
    for restrict in (None, cells):
        batch = ExactSearch(index).nearest(queries, 6, restrict)
        for row in range(32):
            one = restrict[row : row + 1] if restrict is not None else None
            alone = ExactSearch(index).nearest(queries[row : row + 1], 6, one)
            np.testing.assert_array_equal(alone[0][0], batch[0][row])
            np.testing.assert_array_equal(alone[1][0], batch[1][row])


@pytest.mark.parametrize("batch", [1, 5])
def test_many_equal_neighbours_beyond_the_shortlist_are_all_weighed(batch: int) -> None:
    # 60 copies of the best entry: more near-equals than the float32 shortlist holds, so
    # a batch rescans (one query alone keeps everything above its threshold); the copies
    # come back in index order.
    rng = np.random.default_rng(4)
    embeddings = rng.standard_normal((300, 24))
    copies = rng.choice(300, 60, replace=False)
    embeddings[copies] = embeddings[copies[0]]
    index = _index(embeddings, np.zeros(300, np.int64))
    query = embeddings[copies[0]][None] + 1e-3 * rng.standard_normal((1, 24))
    queries = np.vstack([query, rng.standard_normal((batch - 1, 24))])
    for m in (3, 20, 61):
        idx, sims = ExactSearch(index).nearest(queries, m)
        want = np.sort(copies)[: min(m, 60)]
        assert idx[0, : len(want)].tolist() == want.tolist()
        assert len(set(sims[0, : len(want)].tolist())) == 1
        _assert_same((idx, sims), brute_force(index, queries, m))


def test_one_query_alone_matches_a_batch_of_64_with_ties_and_shared_cells() -> None:
    # Alone, a query's cells are read as row ranges (adjacent cells as one) with a float32
    # threshold; in a batch, by cell with a shortlist. Duplicated embeddings make exact
    # ties, some within a cell and some across cells; rows repeat a cell and name cells
    # without entries. Every answer must be the same, bit for bit, and the brute force's.
    rng = np.random.default_rng(11)
    embeddings = rng.standard_normal((700, 32))
    embeddings[rng.choice(700, 200)] = embeddings[rng.choice(700, 200)]
    embeddings[rng.choice(700, 40)] = embeddings[3]
    index = _index(embeddings, rng.integers(0, 20, 700))
    queries = np.vstack([embeddings[3] + 1e-3, rng.standard_normal((63, 32))])
    cells = rng.integers(-1, 23, (64, 5))
    cells[1] = [4, 5, 6, 7, 4]  # adjacent cells, one named twice
    cells[2] = [-1, 21, 22, -1, 21]  # none with entries
    for block_bytes in (1, 4 * 33 * 50, 2**30):  # 1 row, 50 rows, all at once per block
        search = ExactSearch(index, block_bytes=block_bytes)
        for m in (1, 10, 45):
            batch = search.nearest(queries, m, cells)
            _assert_same(batch, brute_force(index, queries, m, cells))
            for row in range(64):
                alone = search.nearest(queries[row : row + 1], m, cells[row : row + 1])
                np.testing.assert_array_equal(alone[0][0], batch[0][row])
                np.testing.assert_array_equal(alone[1][0], batch[1][row])
    assert (batch[0][2] == -1).all()


@pytest.mark.parametrize("batch", [0, 1, 5])
def test_queries_without_cells_or_none_at_all_give_empty_answers(batch: int) -> None:
    index = _random_index()
    queries = np.random.default_rng(9).standard_normal((batch, 24))
    for cells in (None, np.full((batch, 2), -1), np.full((batch, 1), 99)):
        idx, sims = ExactSearch(index).nearest(queries, 4, cells)
        assert idx.shape == sims.shape == (batch, 4)
        assert idx.dtype == np.int64 and sims.dtype == np.float32
        if cells is not None:
            assert (idx == -1).all() and np.isneginf(sims).all()


def test_queries_are_normalised_here() -> None:
    index = _random_index()
    q = np.random.default_rng(7).standard_normal((4, 24))
    a = ExactSearch(index).nearest(q, 5)
    b = ExactSearch(index).nearest(q * 1000, 5)
    np.testing.assert_array_equal(a[0], b[0])
    assert np.all(a[1] <= 1.0001)


def test_an_entry_finds_itself_first() -> None:
    index = _random_index()
    idx, sims = ExactSearch(index).nearest(index.embeddings[[4, 150]].astype(np.float32), 1)
    assert idx[:, 0].tolist() == [4, 150]
    assert sims[:, 0] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("queries", "m", "cells", "says"),
    [
        (np.ones((2, 5)), 3, None, "queries must be a (q, 24) array; got shape (2, 5)"),
        (np.zeros((2, 24)), 3, None, "query 0 is not finite or is all zeros"),
        (np.full((2, 24), np.nan), 3, None, "query 0 is not finite"),
        (np.ones((2, 24)), 0, None, "m (neighbours) must be a whole number >= 1; got 0"),
        (np.ones((2, 24)), 3, np.ones((3, 2), np.int64), "cells must be a (2, k) array"),
        (np.ones((2, 24)), 3, np.ones((2, 2)), "cells must be a (2, k) array of cell ids"),
    ],
)
def test_bad_arguments_are_refused(queries, m, cells, says) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as caught:
        ExactSearch(_random_index()).nearest(queries, m, cells)
    assert says in str(caught.value)


def test_make_search_gives_the_exact_search_of_the_index() -> None:
    index = _random_index()
    search = make_search(index)
    assert isinstance(search, ExactSearch) and search.index is index


@pytest.mark.parametrize("batch", [1, 8])
def test_float32_rounding_never_decides_the_answer(batch: int) -> None:
    # 300 entries that differ only in two dimensions the query barely weighs, by a few
    # float16 steps: their similarities differ by ~1e-8, below float32's rounding of the
    # sums, which ranks some of them wrongly; the float64 recompute must rank them as the
    # brute force does.
    rng = np.random.default_rng(12)
    base = (rng.standard_normal(24) / np.sqrt(24)).astype(np.float16)
    embeddings = np.tile(base, (300, 1))
    embeddings[:, :2] = 0.25 + rng.integers(0, 64, (300, 2)) * np.float16(2**-12)
    cell = rng.integers(0, 3, 300).astype(np.int64)
    names = tuple(f"g{i}" for i in range(300))
    index = LocationIndex(embeddings, np.zeros(300), np.zeros(300), cell, names, names)
    query = base.astype(np.float32)
    query[:2] = [1e-4, 1.37e-4]
    queries = np.vstack([query, rng.standard_normal((batch - 1, 24))])
    cells = np.tile([0, 1, 2], (batch, 1))
    for m in range(1, 301):  # the m-th place falls between misranked pairs for some m
        for restrict in (None, cells):
            _assert_same(
                ExactSearch(index).nearest(queries, m, restrict),
                brute_force(index, queries, m, restrict),
            )
