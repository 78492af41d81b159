"""Benchmark what retrieval refinement adds per image: refined and knn ``locate`` at scale.

A synthetic fold index as ``LocationIndex`` holds one: ``--entries`` unit embeddings of
``--dim`` dims in float16, spread over ``--cells`` cells of unequal size (log-normal shares
with sigma ``--cell-skew``, 1 by default: real coverage is uneven), with random locations.
Queries are entries' embeddings plus noise; each query's top cells are its own cell first,
then cells drawn in proportion to their size (the cells a classifier trained on this data
predicts most), so the rows a refined search reads are those of a realistic mix, not of
average cells.

Timed (``time.perf_counter``, median over repeats, each repeat a new set of queries so the
cells read are not all in cache):

1. ``ExactSearch(index)`` once: sort by cell, float32 copy of the embeddings;
2. ``locate`` refined (k=5, m=10) and knn over the whole index (m=10), for one query at a
   time and for batches of 64, as ms per image;
3. for the restricted batch-1 search, what its matrix products alone cost, in numpy
   (float32 copy), in torch (the same float32 rows), and without the float32 copy
   (numpy converting the cells' float16 rows per query): the options weighed. The numpy
   case is the floor under a query alone; the rate it reads the rows at is printed.

The search computes in float32 (BLAS) over the float32 copy, then recomputes the few
shortlisted similarities in float64 (see ``geotag.retrieval.search``).

Target (issue #16): refinement adds at most 2 ms per image (refined, both batch sizes).

    .venv/bin/python benchmarks/bench_refine_cost.py [--entries 1000000] [--repeats N]
    .venv/bin/python benchmarks/bench_refine_cost.py --quick     # 20,000 entries

Prints machine facts, the table and a PASS/MISS line; always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
from machine import machine_line  # benchmarks/machine.py

from geotag.retrieval.index import LocationIndex
from geotag.retrieval.refine import RefineSettings, locate
from geotag.retrieval.search import ExactSearch

TARGET_MS = 2.0
K, M, TEMPERATURE = 5, 10, 0.03
BATCHES = (1, 64)
SEED = 0


def machine_facts() -> list[str]:
    from threadpoolctl import threadpool_info

    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    )
    return [
        f"{machine_line()}; load average: {load_average()}",
        f"numpy: {np.__version__}  blas: {blas}",
    ]


def load_average() -> str:
    """The 1-minute load: other work on the machine inflates every timing below."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def make_index(
    entries: int, dim: int, cells: int, skew: float, rng: np.random.Generator
) -> LocationIndex:
    """Unit float16 embeddings made a chunk at a time (no float32 copy of the whole); cell
    shares log-normal with sigma ``skew`` (0: equal cells)."""
    share = rng.lognormal(0.0, skew, cells)
    cell = rng.choice(cells, size=entries, p=share / share.sum()).astype(np.int64)
    embeddings = np.empty((entries, dim), dtype=np.float16)
    for start in range(0, entries, 65_536):
        block = rng.standard_normal((min(65_536, entries - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        embeddings[start : start + len(block)] = block
    names = tuple(f"g{i}" for i in range(entries))
    return LocationIndex(
        embeddings,
        rng.uniform(-60, 60, entries),
        rng.uniform(-180, 180, entries),
        cell,
        names,
        names,
    )


def make_queries(
    index: LocationIndex, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(count, d) queries near random entries, and their (count, K) top cells."""
    source = rng.integers(0, len(index), count)
    queries = index.embeddings[source].astype(np.float32)
    queries += (
        0.5 * rng.standard_normal(queries.shape, dtype=np.float32) / np.sqrt(queries.shape[1])
    )
    ids, sizes = np.unique(index.cell, return_counts=True)
    p = sizes / sizes.sum()
    top = np.empty((count, K), dtype=np.int64)
    for row in range(count):
        own = index.cell[source[row]]
        others = rng.choice(ids, size=K + 1, replace=False, p=p)
        top[row] = [own, *[c for c in others if c != own][: K - 1]]
    return queries, top


def one_sample(
    run: Callable[[np.ndarray, np.ndarray], object],
    index: LocationIndex,
    batch: int,
    rng: np.random.Generator,
) -> float:
    """ms per image of one ``run(queries, top_cells)`` on fresh queries."""
    queries, top = make_queries(index, batch, rng)
    started = time.perf_counter()
    run(queries, top)
    return (time.perf_counter() - started) * 1000 / batch


def interleaved(
    cases: Sequence[tuple[Callable[[np.ndarray, np.ndarray], object], int, int]],
    index: LocationIndex,
    rng: np.random.Generator,
) -> list[list[float]]:
    """Samples per case of (run, batch, repeats), taken in rounds (one of each case per
    round, after one warm-up each) so that load from elsewhere falls on all cases alike."""
    for run, batch, _ in cases:
        one_sample(run, index, batch, rng)
    samples: list[list[float]] = [[] for _ in cases]
    for round_ in range(max(count for _, _, count in cases)):
        for i, (run, batch, count) in enumerate(cases):
            if round_ < count:
                samples[i].append(one_sample(run, index, batch, rng))
    return samples


def products_only(index: LocationIndex, how: str) -> Callable[[np.ndarray, np.ndarray], object]:
    """The restricted search's matrix products alone, one query: the floor under it.

    Rows are sorted by cell as ExactSearch keeps them (its own copy is private, so this
    makes one: float32 for numpy and torch, float16 for the no-copy option)."""
    order = np.argsort(index.cell, kind="stable")
    sorted_cells = index.cell[order]
    rows = index.embeddings[order]
    if how != "f16":
        rows = rows.astype(np.float32)
    mv = None
    if how == "torch":
        import torch

        mv = torch.mv
        rows_t = torch.from_numpy(rows)

    def run(queries: np.ndarray, top: np.ndarray) -> object:
        q = queries[0] / np.linalg.norm(queries[0])
        out = []
        for c in np.unique(top[0]):
            lo, hi = np.searchsorted(sorted_cells, [c, c + 1])
            if mv is not None:
                import torch

                out.append(mv(rows_t[lo:hi], torch.from_numpy(q)))
            elif how == "f16":
                out.append(rows[lo:hi].astype(np.float32) @ q)
            else:
                out.append(rows[lo:hi] @ q)
        return out

    return run


def fmt_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument(
        "--cell-skew", type=float, default=1.0, help="sigma of log-normal cell shares; 0: equal"
    )
    parser.add_argument("--repeats", type=int, default=0, help="default: by case")
    parser.add_argument("--quick", action="store_true", help="20,000 entries, few repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries = 20_000
    print("\n".join(machine_facts()))
    rng = np.random.default_rng(SEED)

    started = time.perf_counter()
    index = make_index(args.entries, args.dim, args.cells, args.cell_skew, rng)
    made_s = time.perf_counter() - started
    started = time.perf_counter()
    search = ExactSearch(index)
    search_s = time.perf_counter() - started
    sizes = np.bincount(index.cell)
    _, probe_top = make_queries(index, 2000, rng)
    rows_read = np.mean([sizes[np.unique(t)].sum() for t in probe_top])
    print(
        f"index: {len(index):,} entries x {args.dim} float16 ({index.embeddings.nbytes / 2**30:.2f}"
        f" GiB), {args.cells} cells of {sizes.min():,}-{sizes.max():,} entries (skew "
        f"{args.cell_skew:g}); made in "
        f"{made_s:.1f} s"
    )
    print(
        f"ExactSearch(index): {search_s:.2f} s once (sort by cell + float32 copy, "
        f"{len(index) * args.dim * 4 / 2**30:.2f} GiB); computes in float32, shortlist in float64"
    )
    print(
        f"refined k={K}, m={M}, T={TEMPERATURE}: a query reads {rows_read:,.0f} rows on "
        f"average (its cells drawn by size); knn m={M} reads all {len(index):,}\n"
    )

    def repeats(default: int) -> int:
        base = args.repeats or default
        return max(3, base // 4) if args.quick and not args.repeats else base

    refined = RefineSettings(K, M, TEMPERATURE)
    knn = RefineSettings(1, M, TEMPERATURE)
    # (case, function, batch, repeats, note)
    cases: list[tuple[str, Callable[[np.ndarray, np.ndarray], object], int, int, str]] = []
    for batch in BATCHES:
        cases.append(
            (
                f"locate refined, batch {batch}",
                lambda q, top: locate(search, q, refined, top),
                batch,
                repeats(200 if batch == 1 else 20),
                "the cost refinement adds",
            )
        )
    for batch in BATCHES:
        cases.append(
            (
                f"locate knn (whole index), batch {batch}",
                lambda q, top: locate(search, q, knn, None),
                batch,
                repeats(10 if batch == 1 else 5),
                "for comparison",
            )
        )
    for how, note in (
        ("numpy", "floor: float32 copy, numpy BLAS"),
        ("torch", "same rows through torch.mv"),
        ("f16", "no float32 copy: convert per query"),
    ):
        cases.append(
            (
                f"products only ({how}), batch 1",
                products_only(index, how),
                1,
                repeats(200 if how != "f16" else 40),
                note,
            )
        )

    header = ("case", "ms/image (median)", "min", "max", "repeats", "notes")
    lines = []
    medians: dict[str, float] = {}
    all_samples = interleaved(
        [(run, batch, count) for _, run, batch, count, _ in cases], index, rng
    )
    for (case, _, _, count, note), samples in zip(cases, all_samples, strict=True):
        medians[case] = statistics.median(samples)
        lines.append(
            (
                case,
                f"{medians[case]:.3f}",
                f"{min(samples):.3f}",
                f"{max(samples):.3f}",
                str(count),
                note,
            )
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    print(fmt_row(header, widths))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt_row(line, widths))

    # Reading the cells' float32 rows is the floor under a query alone: memory-bound.
    megabytes = rows_read * args.dim * 4 / 1e6
    floor_ms = medians["products only (numpy), batch 1"]
    print(
        f"\nproducts only (numpy): {megabytes:.0f} MB of float32 rows per query on average, "
        f"read at {megabytes / floor_ms:.1f} GB/s at the median"
    )
    print(f"load average at the end: {load_average()} (cpus: {os.cpu_count()})")
    for batch in BATCHES:
        ms = medians[f"locate refined, batch {batch}"]
        verdict = "PASS" if ms <= TARGET_MS else "MISS"
        by = "" if ms <= TARGET_MS else f", over by {ms - TARGET_MS:.2f} ms ({ms / TARGET_MS:.1f}x)"
        print(
            f"{verdict}  refinement adds <= {TARGET_MS:g} ms per image, batch {batch} "
            f"({ms:.3f} ms{by}; {len(index):,} entries x {args.dim})"
        )


if __name__ == "__main__":
    main()
