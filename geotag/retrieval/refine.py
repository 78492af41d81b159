"""Answer a location from a photo's nearest training entries, and choose how on the inner split.

``refined`` searches the training entries of the top ``k`` predicted cells, ``knn`` the whole
index; both weight the ``m`` nearest by softmax(cosine similarity / temperature) and answer
their weighted medoid: the neighbour's own location that minimises the weighted sum of
great-circle distances to the others. A medoid is always a real training location, so two
far-apart neighbours (two coasts of a bay) never average into the sea between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geotag.errors import InputError
from geotag.geo.distance import geoscore, haversine_km
from geotag.retrieval.search import ExactSearch

#: The grid choose_settings tries by default.
KS = (1, 2, 3, 5)
MS = (1, 3, 5, 10, 20)
TEMPERATURES = (0.01, 0.03, 0.1)
#: Half the Earth's circumference: the score of a query nothing was found for, unless the
#: caller gives a fallback point.
NOWHERE_KM = math.pi * 6_371.0088
#: Queries per chunk of pairwise neighbour distances: (rows, m, m) float64 stays ~100 MB at
#: m = 50.
_MEDOID_ROWS = 4_096


@dataclass(frozen=True)
class RefineSettings:
    """How one retrieval predictor answers: ``k`` top cells searched (refined only; knn
    ignores it), ``m`` neighbours, softmax ``temperature`` on their cosine similarities."""

    k: int
    m: int
    temperature: float

    def __post_init__(self) -> None:
        for name in ("k", "m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InputError(f"retrieval {name} must be a whole number >= 1; got {value!r}")
        t = self.temperature
        number = isinstance(t, int | float | np.number) and not isinstance(t, bool)
        if not (number and math.isfinite(t) and t > 0):
            raise InputError(f"retrieval temperature must be a positive number; got {t!r}")


def weighted_medoid(
    lat: np.ndarray, lon: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the neighbour location minimising the weighted sum of great-circle distances
    to the row's other neighbours.

    ``lat``, ``lon``, ``weights`` are (q, m); entries with weight 0 (padding, NaN locations)
    neither count nor can be the answer. Ties go to the earlier column (the more similar
    neighbour when columns come best first). A row without positive weight answers NaN.
    """
    lat_a, lon_a, w = (np.asarray(a, dtype=np.float64) for a in (lat, lon, weights))
    if lat_a.ndim != 2 or not (lat_a.shape == lon_a.shape == w.shape):
        raise InputError(
            f"lat, lon and weights must be (q, m) arrays of one shape; got "
            f"{lat_a.shape}, {lon_a.shape}, {w.shape}"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("weighted_medoid needs finite, non-negative weights")
    usable = w > 0
    if not (np.isfinite(lat_a[usable]).all() and np.isfinite(lon_a[usable]).all()):
        raise InputError("weighted_medoid got a weighted neighbour without a location")
    out_lat, out_lon = np.full(len(w), np.nan), np.full(len(w), np.nan)
    for s in range(0, len(w), _MEDOID_ROWS):
        rows = slice(s, s + _MEDOID_ROWS)
        dist = _pairwise_km(lat_a[rows], lon_a[rows], usable[rows])
        pick = _medoid_column(dist, w[rows])
        out_lat[rows], out_lon[rows] = _at(lat_a[rows], pick), _at(lon_a[rows], pick)
    return out_lat, out_lon


def locate(
    search: ExactSearch,
    queries: np.ndarray,
    settings: RefineSettings,
    top_cells: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, found) per query: knn over the whole index (``top_cells`` None) or refined
    within the first ``settings.k`` of ``top_cells`` (q, K), best first.

    A query without candidates (its cells hold no entries) gets found=False and NaN lat/lon;
    the caller falls back to its top cell's point.
    """
    idx, sims = search.nearest(queries, settings.m, _cells(top_cells, len(queries), settings.k))
    lat, lon = _neighbour_locations(search, idx)
    w = softmax_weights(idx, sims, settings.temperature)
    answer_lat, answer_lon = weighted_medoid(lat, lon, w)
    return answer_lat, answer_lon, idx[:, 0] >= 0


def softmax_weights(idx: np.ndarray, sims: np.ndarray, temperature: float) -> np.ndarray:
    """(q, m) float64 softmax(sims / temperature) over each row's found neighbours (idx >=
    0); 0 for padding, all 0 on a row with none. float64: exp(-2 / 0.01) underflows float32."""
    valid = idx >= 0
    scaled = np.where(valid, sims.astype(np.float64) / temperature, -np.inf)
    top = np.max(scaled, axis=1, keepdims=True, initial=-np.inf)
    w = np.where(valid, np.exp(scaled - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = w.sum(axis=1, keepdims=True)
    weights: np.ndarray = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    return weights


def choose_settings(
    search: ExactSearch,
    queries: np.ndarray,
    top_cells: np.ndarray,
    true_lat: np.ndarray,
    true_lon: np.ndarray,
    *,
    ks: Sequence[int] = KS,
    ms: Sequence[int] = MS,
    temperatures: Sequence[float] = TEMPERATURES,
    fallback_lat: np.ndarray | None = None,
    fallback_lon: np.ndarray | None = None,
) -> tuple[RefineSettings, RefineSettings, dict[str, Any]]:
    """The refined and knn settings that place ``queries`` best, and every combination tried.

    Run it on the INNER validation split (the caller's duty): the settings are fit to the
    queries given. Best = lowest median km, then highest mean GeoScore, then the smallest k,
    m and temperature. Each k (and knn) is searched once for the largest m; smaller m are
    its prefixes. A ``k`` beyond ``top_cells``' width is skipped (it would search the same
    cells as the width). A query with no candidate scores as ``fallback_lat/lon`` (the top
    cell's point, as the predictors answer it) or, without them, as :data:`NOWHERE_KM` away.

    The table is JSON-ready: ``{"queries": n, "rows": [{"k", "m", "temperature",
    "median_km", "geoscore", "found"}...], "refined": {...}, "knn": {...}}``; knn rows have
    ``k`` 0 (the whole index) and the knn settings carry k=1, which knn ignores.
    """
    n = len(queries)
    cells = np.asarray(top_cells)
    if n < 1:
        raise InputError("choose_settings needs at least one query")
    if cells.ndim != 2 or len(cells) != n or cells.shape[1] < 1:
        raise InputError(f"top_cells must be a ({n}, K) array; got shape {cells.shape}")
    truth_lat, truth_lon = _points("true", true_lat, true_lon, n)
    fallback = None
    if fallback_lat is not None or fallback_lon is not None:
        fallback = _points("fallback", fallback_lat, fallback_lon, n)
    grid = [RefineSettings(k, m, t) for k in ks for m in ms for t in temperatures]
    if not grid:
        raise InputError("choose_settings needs at least one k, m and temperature")
    usable_ks = sorted({s.k for s in grid if s.k <= cells.shape[1]})
    m_values, t_values = sorted({s.m for s in grid}), sorted({s.temperature for s in grid})
    if not usable_ks:
        raise InputError(f"every k in {tuple(ks)} exceeds the {cells.shape[1]} top cells given")

    if fallback is not None:
        miss_km = haversine_km(fallback[0], fallback[1], truth_lat, truth_lon)
    else:
        miss_km = np.full(n, NOWHERE_KM)
    rows: list[dict[str, float]] = []
    for k in [*usable_ks, 0]:  # 0: knn over the whole index
        idx, sims = search.nearest(queries, max(m_values), None if k == 0 else cells[:, :k])
        found = idx[:, 0] >= 0
        errors = _errors_by_setting(search, idx, sims, m_values, t_values, truth_lat, truth_lon)
        for (m, t), answered_km in errors.items():
            km = np.where(found, answered_km, miss_km)
            rows.append(
                {
                    "k": k,
                    "m": m,
                    "temperature": t,
                    "median_km": float(np.median(km)),
                    "geoscore": float(np.mean(geoscore(km))),
                    "found": float(found.mean()),
                }
            )

    def rank(row: dict[str, float]) -> tuple[float, ...]:
        return (row["median_km"], -row["geoscore"], row["k"], row["m"], row["temperature"])

    best_refined = min((r for r in rows if r["k"] > 0), key=rank)
    best_knn = min((r for r in rows if r["k"] == 0), key=rank)
    refined = RefineSettings(
        int(best_refined["k"]), int(best_refined["m"]), best_refined["temperature"]
    )
    knn = RefineSettings(1, int(best_knn["m"]), best_knn["temperature"])
    table = {
        "queries": n,
        "rows": rows,
        "refined": {"k": refined.k, "m": refined.m, "temperature": refined.temperature},
        "knn": {"m": knn.m, "temperature": knn.temperature},
    }
    return refined, knn, table


def _errors_by_setting(
    search: ExactSearch,
    idx: np.ndarray,
    sims: np.ndarray,
    m_values: list[int],
    t_values: list[float],
    truth_lat: np.ndarray,
    truth_lon: np.ndarray,
) -> dict[tuple[int, float], np.ndarray]:
    """km from the truth per (m, temperature), from one search: the pairwise distances of
    the neighbours are computed once per chunk and sliced for each m."""
    lat, lon = _neighbour_locations(search, idx)
    out = {(m, t): np.empty(len(idx)) for m in m_values for t in t_values}
    for s in range(0, len(idx), _MEDOID_ROWS):
        rows = slice(s, s + _MEDOID_ROWS)
        dist = _pairwise_km(lat[rows], lon[rows], idx[rows] >= 0)
        for m in m_values:
            for t in t_values:
                w = softmax_weights(idx[rows, :m], sims[rows, :m], t)
                pick = _medoid_column(dist[:, :m, :m], w)
                km = haversine_km(
                    _at(lat[rows], pick), _at(lon[rows], pick), truth_lat[rows], truth_lon[rows]
                )
                out[(m, t)][rows] = km  # NaN where nothing was found: replaced by the caller
    return out


def _cells(top_cells: np.ndarray | None, n: int, k: int) -> np.ndarray | None:
    if top_cells is None:
        return None
    cells = np.asarray(top_cells)
    if cells.ndim != 2 or len(cells) != n or cells.shape[1] < 1:
        raise InputError(f"top_cells must be a ({n}, K) array; got shape {cells.shape}")
    return cells[:, :k]


def _points(name: str, lat: Any, lon: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    lat_a, lon_a = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if lat_a.shape != (n,) or lon_a.shape != (n,):
        raise InputError(f"{name} lat/lon must have one value per query ({n})")
    if not (np.isfinite(lat_a).all() and np.isfinite(lon_a).all()):
        raise InputError(f"{name} lat/lon must be finite")
    return lat_a, lon_a


def _neighbour_locations(search: ExactSearch, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, m) lat, lon of the found entries, NaN for padding."""
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    index = search.index
    return np.where(valid, index.lat[safe], np.nan), np.where(valid, index.lon[safe], np.nan)


def _pairwise_km(lat: np.ndarray, lon: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """(q, m, m) great-circle km between each row's neighbours; 0 where one is unusable."""
    la, lo = np.where(usable, lat, 0.0), np.where(usable, lon, 0.0)
    dist: np.ndarray = haversine_km(la[:, :, None], lo[:, :, None], la[:, None, :], lo[:, None, :])
    return np.where(usable[:, :, None] & usable[:, None, :], dist, 0.0)


def _medoid_column(dist: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(q,) column of each row's weighted medoid; -1 for a row without positive weight."""
    cost = np.einsum("qab,qb->qa", dist, w)
    cost = np.where(w > 0, cost, np.inf)
    pick = np.argmin(cost, axis=1)  # the first column on a tie
    return np.where((w > 0).any(axis=1), pick, -1)


def _at(values: np.ndarray, column: np.ndarray) -> np.ndarray:
    """values[row, column[row]], NaN where column is -1."""
    got = np.take_along_axis(values, np.maximum(column, 0)[:, None], axis=1)[:, 0]
    return np.where(column >= 0, got, np.nan)
