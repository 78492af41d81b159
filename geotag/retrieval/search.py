"""Exact cosine search over a LocationIndex, whole or restricted to a few cells per query.

:func:`make_search` is the one place a search backend is chosen. Only the exact search
exists, and it is the default on purpose:

- it is exact and deterministic (ties go to the lower index), so the settings chosen on the
  inner split are the settings eval and predict reproduce;
- a refined search reads only the rows of a query's top cells: at 1,000,000 x 512 entries
  over uneven cells (k=5 reads ~47,000 rows, 96 MB of float32) on a 2-core CPU it costs
  ~3-3.6 ms per image one at a time, nearly all of it the matrix-vector products, which
  are memory-bound (~2.6-3.4 ms: the rows arrive at 28-37 GB/s; everything else in
  ``locate`` is ~0.25 ms), and ~1.8-2.1 ms per image in batches of 64, where queries
  share cells (``benchmarks/bench_refine_cost.py``). Only knn over the whole index grows
  with the index (~8-10 ms per image in batches of 64 at 1,000,000, ~55 ms one by one):
  fine up to a few hundred thousand entries;
- it needs no extra package.

A larger-scale backend would plug in here with the same ``nearest`` contract. faiss-cpu was
checked on this machine (Python 3.11, x86-64, glibc 2.36, no GPU): ``pip download faiss-cpu``
fetches faiss_cpu-1.15.1-cp310-abi3-manylinux_2_28_x86_64.whl (needs numpy>=1.25,
packaging), and it imports and searches (IndexFlatIP, AVX512 build) in a scratch venv. It
is not a dependency: IndexFlatIP is the same exact search (2x slower than numpy's
matrix-vector product on 47,000 rows there); its float16 scalar quantizer, which loses
nothing on embeddings stored as float16, took 1.6 ms against numpy's 2.1 ms (a quarter
off the one-at-a-time cost, at the price of one sub-index per cell); its approximate
indexes (IVF, HNSW) would trade exactness for knn speed over millions of entries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from geotag.errors import InputError
from geotag.retrieval.index import LocationIndex

#: Working memory of one block: its float32 embedding rows plus its similarities, in bytes.
BLOCK_BYTES = 64 * 2**20
#: A cell id slot that holds no cell.
UNUSED = -1
#: Queries whose final similarities are recomputed together (float64, ~50 MB at m = 20).
_EXACT_QUERIES = 256
_UNIT_ROUNDOFF = 2.0**-24  # float32
#: Below this many queries per block, matrix-vector products each beat one matrix product
#: (OpenBLAS packs the rows for a product: 2 queries took 1.5x the time of 2 separate ones).
#: So a search of fewer queries takes each query on its own (``_nearest_alone``).
_GEMM_MIN_QUERIES = 4
#: A query alone takes every this many similarities of a block for a first threshold.
_SAMPLE_EVERY = 16


class ExactSearch:
    """Exact cosine search by blocked float32 matrix products.

    At construction the entries are sorted by cell (stable, so by index within a cell) and
    copied to float32 once: numpy converts float16 at ~1-2 ns per value, so converting a
    query's candidate rows each time would cost more than the search itself (~40 ms for
    25,000 x 512 rows). The copy costs 4 bytes per value (2 GB at 1,000,000 x 512), beside
    the index's float16 embeddings. Each cell's rows are one contiguous range, so a search
    restricted to a few cells touches only their rows.

    Exact means exact, not "as BLAS rounded it": a float32 product's last bit depends on the
    block's shape (and on how many queries share it), so the blocked pass only shortlists
    every entry within a proven rounding margin of the m-th best, and the shortlist's
    similarities are recomputed in float64 in a fixed order. The answer is then the same
    for any block size and batch, and equal embeddings tie exactly (to the lower index).

    A batch shares each cell's rows between the queries that name it (one matrix product
    per cell); a query alone reads its cells' row ranges in place, one matrix-vector
    product each, the way a photo at a time is predicted.
    """

    def __init__(self, index: LocationIndex, *, block_bytes: int = BLOCK_BYTES) -> None:
        if block_bytes < 1:
            raise InputError(f"block_bytes must be at least 1; got {block_bytes}")
        self._index = index
        self._block_bytes = block_bytes
        self._order = np.argsort(index.cell, kind="stable")
        sorted_cells = index.cell[self._order]
        self._cells, starts = np.unique(sorted_cells, return_index=True)
        self._starts = starts.astype(np.int64)
        self._ends = np.r_[starts[1:], len(index)].astype(np.int64)
        # Each cell's row range as Python ints: a query alone looks up a few, cheaply.
        self._cell_ranges = list(zip(self._starts.tolist(), self._ends.tolist(), strict=True))
        self._rows, longest = _float32_rows(index.embeddings, self._order)
        # A float32 dot product of length d is off by at most gamma_d * |row| * |query|
        # (Higham's bound, any summation order); 1% more covers the float64 recompute.
        d = self._rows.shape[1]
        gamma = d * _UNIT_ROUNDOFF / (1 - d * _UNIT_ROUNDOFF)
        self._error = 1.01 * gamma * longest * (1 + 4 * _UNIT_ROUNDOFF)

    @property
    def index(self) -> LocationIndex:
        return self._index

    def nearest(
        self, queries: np.ndarray, m: int, cells: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``m`` entries most similar to each query, best first.

        ``queries`` (q, d) are normalised here. ``cells`` None searches the whole index;
        a (q, k) array of cell ids limits each query to the entries of its cells (-1: an
        unused slot; a cell without entries adds none). Returns ``idx`` (q, m) int64 into
        the index (-1 where there are fewer candidates) and ``sims`` (q, m) float32 cosine
        similarities (-inf there); ties go to the lower index.
        """
        if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
            raise InputError(f"m (neighbours) must be a whole number >= 1; got {m!r}")
        m = int(m)
        q = self._normalised(queries)
        slots = None if cells is None else self._slots(len(q), cells)
        best_idx = np.full((len(q), m), -1, dtype=np.int64)
        best_sim = np.full((len(q), m), -np.inf, dtype=np.float32)
        if len(q) < _GEMM_MIN_QUERIES:
            for i in range(len(q)):
                mine = None if slots is None else slots[i]
                best_idx[i], best_sim[i] = self._nearest_alone(q[i], mine, m)
            return best_idx, best_sim
        tasks = self._tasks(len(q), slots)
        short_sim, short_idx = self._shortlist(q, tasks, 2 * m + 8)
        # Every entry that can be among the best m has a float32 similarity >= floor.
        floor = short_sim[:, m - 1] - 2 * self._error
        complete = (short_idx[:, -1] < 0) | (short_sim[:, -1] < floor)
        done = np.flatnonzero(complete)
        for s in range(0, len(done), _EXACT_QUERIES):
            rows = done[s : s + _EXACT_QUERIES]
            best_idx[rows], best_sim[rows] = self._exact_top(q[rows], short_idx[rows], m)
        for row in np.flatnonzero(~complete):  # rare: more near-equals than the shortlist held
            own = self._tasks(1, None if slots is None else slots[row : row + 1])
            found = self._above(q[row], own, float(floor[row]))
            row_idx, row_sim = self._exact_top(q[row : row + 1], found[None], m)
            best_idx[row], best_sim[row] = row_idx[0], row_sim[0]
        return best_idx, best_sim

    def _nearest_alone(
        self, query: np.ndarray, slots: np.ndarray | None, m: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``nearest`` for one unit query (d,) over the cells of ``slots`` (k,) (-1: none) or
        the whole index (None); (m,) idx and sims.

        One matrix-vector product per run of adjacent cells into one buffer of similarities
        (the rows are read in place, never copied), then a threshold instead of a shortlist:
        every entry within ``2 * error`` of the m-th best float32 similarity is recomputed in
        float64, as a batch's shortlist (or rescan) does.
        """
        step = max(1, self._block_bytes // (4 * (len(query) + 1)))
        best = np.full(m, -np.inf, dtype=np.float32)  # the m best float32 similarities yet
        kept_sim: list[np.ndarray] = []
        kept_row: list[np.ndarray] = []
        for pieces in _blocks(self._query_ranges(slots), step):
            width = sum(end - start for start, end in pieces)
            sims = np.empty(width, dtype=np.float32)
            firsts = np.empty(len(pieces), dtype=np.int64)  # each piece's first row ...
            offsets = np.empty(len(pieces), dtype=np.int64)  # ... and where it sits in sims
            at = 0
            for i, (start, end) in enumerate(pieces):
                np.matmul(self._rows[start:end], query, out=sims[at : at + end - start])
                firsts[i], offsets[i] = start, at
                at += end - start
            # The m-th best of the best so far and a sample is at most the final m-th best:
            # all that can still count lies above it less the margin, the new best among
            # it (no partition of the whole block).
            low = _largest(np.concatenate([best, sims[::_SAMPLE_EVERY]]), m).min()
            hits = np.flatnonzero(sims >= low - 2 * self._error)
            best = _largest(np.concatenate([best, sims[hits]]), m)
            piece = np.searchsorted(offsets, hits, side="right") - 1
            kept_sim.append(sims[hits])
            kept_row.append(firsts[piece] + hits - offsets[piece])
        floor = best.min() - 2 * self._error  # from the final m-th best: keeps fewer
        rows = np.concatenate([np.empty(0, dtype=np.int64), *kept_row])
        rows = rows[np.concatenate([np.empty(0, dtype=np.float32), *kept_sim]) >= floor]
        idx, sims = self._exact_top(query[None], self._order[rows][None], m)
        return idx[0], sims[0]

    def _query_ranges(self, slots: np.ndarray | None) -> list[tuple[int, int]]:
        """The row ranges of one query's cells (None: all rows), in order, each cell once,
        adjacent cells as one range."""
        if slots is None:
            return [(0, len(self._rows))]
        ranges: list[tuple[int, int]] = []
        for slot in sorted(set(slots[slots >= 0].tolist())):
            start, end = self._cell_ranges[slot]
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
        return ranges

    def _shortlist(
        self, q: np.ndarray, tasks: list[tuple[int, int, np.ndarray]], size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(q, size) entries with the best float32 similarities, best first, -1/-inf padded."""
        best_sim = np.full((len(q), size), -np.inf, dtype=np.float32)
        best_idx = np.full((len(q), size), -1, dtype=np.int64)
        for start, end, who in tasks:
            mine = q[who]
            step = max(1, self._block_bytes // (4 * (q.shape[1] + len(who))))
            for s in range(start, end, step):
                e = min(s + step, end)
                block = self._rows[s:e]
                if len(who) < _GEMM_MIN_QUERIES:
                    sims = np.stack([block @ v for v in mine])  # one matrix-vector product each
                else:
                    sims = mine @ block.T  # (queries, rows): one matrix product per block
                found_sim, found_idx = _top(sims, self._order[s:e], size)
                best_sim[who], best_idx[who] = _merge(
                    best_sim[who], best_idx[who], found_sim, found_idx, size
                )
        return best_sim, best_idx

    def _above(
        self, query: np.ndarray, tasks: list[tuple[int, int, np.ndarray]], floor: float
    ) -> np.ndarray:
        """Every entry of ``tasks`` whose float32 similarity to ``query`` is >= floor."""
        step = max(1, self._block_bytes // (4 * (len(query) + 1)))
        found = []
        for start, end, _ in tasks:
            for s in range(start, end, step):
                e = min(s + step, end)
                hits = np.flatnonzero(self._rows[s:e] @ query >= floor)
                found.append(self._order[s + hits])
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)

    def _exact_top(self, q: np.ndarray, idx: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The best m of candidates ``idx`` (r, c) (-1 = none) by float64 similarity, best
        first, ties to the lower index; (r, m) idx and float32 sims, -1/-inf padded."""
        valid = idx >= 0
        rows = self._index.embeddings[np.where(valid, idx, 0)].astype(np.float64)
        # float16 x float32 products are exact in float64, and numpy sums each row the same
        # way whatever the array's shape: equal embeddings get equal similarities.
        sims = np.where(valid, (rows * q.astype(np.float64)[:, None, :]).sum(axis=-1), -np.inf)
        order = np.lexsort((np.where(valid, idx, np.iinfo(np.int64).max), -sims), axis=1)
        order = order[:, :m]
        out_idx = np.take_along_axis(np.where(valid, idx, -1), order, axis=1)
        out_sim = np.take_along_axis(sims, order, axis=1).astype(np.float32)
        pad = m - out_idx.shape[1]
        if pad > 0:
            out_idx = np.pad(out_idx, ((0, 0), (0, pad)), constant_values=-1)
            out_sim = np.pad(out_sim, ((0, 0), (0, pad)), constant_values=-np.inf)
        return out_idx, out_sim

    def _normalised(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries)
        d = self._rows.shape[1]
        if q.ndim != 2 or q.shape[1] != d:
            raise InputError(f"queries must be a (q, {d}) array; got shape {q.shape}")
        q = q.astype(np.float32)
        norms = np.linalg.norm(q.astype(np.float64), axis=1)
        bad = ~np.isfinite(q).all(axis=1) | ~(norms > 0) | ~np.isfinite(norms)
        if bad.any():
            raise InputError(f"query {int(np.argmax(bad))} is not finite or is all zeros")
        unit: np.ndarray = (q / norms[:, None]).astype(np.float32)
        return unit

    def _slots(self, n_queries: int, cells: np.ndarray) -> np.ndarray:
        """(q, k) each cell id's position in the sorted cells, -1 for an unused slot or a
        cell without entries."""
        c = np.asarray(cells)
        if c.ndim != 2 or len(c) != n_queries or not np.issubdtype(c.dtype, np.integer):
            raise InputError(
                f"cells must be a ({n_queries}, k) array of cell ids; got {c.dtype} {c.shape}"
            )
        ids = c.astype(np.int64)
        where = np.minimum(np.searchsorted(self._cells, ids), max(len(self._cells) - 1, 0))
        present = (ids != UNUSED) & (self._cells[where] == ids)
        slots: np.ndarray = np.where(present, where, -1)
        return slots

    def _tasks(self, n_queries: int, slots: np.ndarray | None) -> list[tuple[int, int, np.ndarray]]:
        """(start, end, queries): each row range searched, once, for the queries that use it
        (``slots`` from :meth:`_slots`; None: the whole index for every query)."""
        if slots is None:
            return [(0, len(self._rows), np.arange(n_queries))]
        flat = slots.ravel()
        owner = np.repeat(np.arange(n_queries, dtype=np.int64), slots.shape[1])
        present = flat >= 0
        # One key per (cell, query), so a cell named twice by one query is searched once.
        keys = np.unique(flat[present] * n_queries + owner[present])
        slot, who = np.divmod(keys, n_queries)
        cuts = np.flatnonzero(np.diff(slot)) + 1
        return [
            (int(self._starts[s[0]]), int(self._ends[s[0]]), w)
            for s, w in zip(np.split(slot, cuts), np.split(who, cuts), strict=True)
            if len(s)
        ]


def make_search(index: LocationIndex) -> ExactSearch:
    """The search the rest of geotag uses over ``index`` (see the module docstring)."""
    return ExactSearch(index)


def _float32_rows(embeddings: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, float]:
    """``embeddings[order]`` as float32, converted a slice at a time (no float16 copy), and
    the longest row's norm."""
    out = np.empty(embeddings.shape, dtype=np.float32)
    longest = 0.0
    step = 65_536
    for start in range(0, len(order), step):
        block = out[start : start + step]
        block[:] = embeddings[order[start : start + step]]
        longest = max(longest, float(np.sqrt(np.einsum("ij,ij->i", block, block).max())))
    return out, longest


def _blocks(ranges: list[tuple[int, int]], step: int) -> Iterator[list[tuple[int, int]]]:
    """``ranges`` in consecutive blocks of at most ``step`` rows, a range split where a
    block fills."""
    block: list[tuple[int, int]] = []
    room = step
    for start, end in ranges:
        while start < end:
            take = min(end - start, room)
            block.append((start, start + take))
            start, room = start + take, room - take
            if room == 0:
                yield block
                block, room = [], step
    if block:
        yield block


def _largest(values: np.ndarray, m: int) -> np.ndarray:
    """The ``m`` largest of ``values`` (1-d), unordered; all of them if there are no more."""
    if len(values) <= m:
        return values
    return np.partition(values, len(values) - m)[len(values) - m :]


def _top(sims: np.ndarray, ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``size`` best columns of ``sims`` (unordered) as (similarities, ids); which
    of several equal ones is kept does not matter (see ExactSearch)."""
    width = sims.shape[1]
    if width <= size:
        return sims, np.broadcast_to(ids, sims.shape)
    part = np.argpartition(sims, width - size, axis=1)[:, width - size :]
    return np.take_along_axis(sims, part, axis=1), ids[part]


def _merge(
    a_sim: np.ndarray, a_idx: np.ndarray, b_sim: np.ndarray, b_idx: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` best of two candidate sets per row, best first, ties to the lower index."""
    sim = np.concatenate([a_sim, b_sim], axis=1)
    idx = np.concatenate([a_idx, b_idx], axis=1)
    # Padding (-inf, -1) sorts last: -(-inf) is the largest key.
    order = np.lexsort((idx, -sim), axis=1)[:, :m]
    return np.take_along_axis(sim, order, axis=1), np.take_along_axis(idx, order, axis=1)
