"""The retrieval predictors as train, eval and predict use them.

A fold's index (its training images' embeddings) and the settings its inner validation
split chose (:class:`~geotag.train.runs.RetrievalChoice`) answer two points per photo:
``knn`` (the nearest training locations in the whole index) and ``refined`` (those within
the top cells). A photo for which retrieval finds nothing (its top cells hold no indexed
entry) keeps the top cell's point, so every predictor answers every photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.retrieval.refine import (
    KS,
    RefineSettings,
    choose_settings,
    locate,
    softmax_weights,
    weighted_medoid,
)

if TYPE_CHECKING:
    from geotag.retrieval.index import LocationIndex
    from geotag.retrieval.search import ExactSearch
    from geotag.train.classes import ClassMap
    from geotag.train.runs import RetrievalChoice, Run

#: Top cells handed to the refined search: the most any choice may use.
TOP_CELLS = max(KS)


def top_cell_ids(probs: np.ndarray, cell_ids: Sequence[int], k: int = TOP_CELLS) -> np.ndarray:
    """(N, k) cell ids of the ``k`` most probable classes, best first."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return np.asarray(cell_ids, dtype=np.int64)[order]


def choose(
    search: ExactSearch,
    queries: np.ndarray,
    probs: np.ndarray,
    classes: ClassMap,
    true_lat: np.ndarray,
    true_lon: np.ndarray,
) -> tuple[RetrievalChoice, list[dict[str, float]]]:
    """The settings that place the inner split's photos best, and every combination tried
    (a photo retrieval cannot place is scored at its top cell's point, as it is answered)."""
    from geotag.train.runs import RetrievalChoice

    top_cells = top_cell_ids(probs, classes.cell_ids)
    centre_lat, centre_lon = classes.centres()
    best = probs.argmax(axis=1)
    refined, knn, table = choose_settings(
        search, queries, top_cells, true_lat, true_lon,
        fallback_lat=centre_lat[best], fallback_lon=centre_lon[best],
    )  # fmt: skip
    choice = RetrievalChoice(
        entries=len(search.index),
        refined_k=refined.k,
        refined_m=refined.m,
        refined_temperature=refined.temperature,
        knn_m=knn.m,
        knn_temperature=knn.temperature,
    )
    return choice, _rows(table)


def settings(choice: RetrievalChoice, predictor: str) -> RefineSettings:
    if predictor == "refined":
        return RefineSettings(choice.refined_k, choice.refined_m, choice.refined_temperature)
    return RefineSettings(1, choice.knn_m, choice.knn_temperature)


def retrieval_points(
    search: ExactSearch,
    queries: np.ndarray,
    probs: np.ndarray,
    classes: ClassMap,
    choice: RetrievalChoice,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"knn": (lat, lon), "refined": (lat, lon)}`` for one fold's photos."""
    top_cells = top_cell_ids(probs, classes.cell_ids)
    centre_lat, centre_lon = classes.centres()
    best = probs.argmax(axis=1)
    points = {}
    for name, cells in (("knn", None), ("refined", top_cells)):
        lat, lon, found = locate(search, queries, settings(choice, name), cells)
        points[name] = (
            np.where(found, lat, centre_lat[best]),
            np.where(found, lon, centre_lon[best]),
        )
    return points


@dataclass(frozen=True)
class Neighbour:
    """A training image retrieval leaned on: where it is and how alike it looked."""

    path: str
    lat: float
    lon: float
    similarity: float
    fold: int


@dataclass(frozen=True)
class FoldRetrieval:
    """One fold's part in a prediction by all the run's folds."""

    fold: int
    index: LocationIndex
    queries: np.ndarray  # (N, d) the photos' embeddings by this fold's model
    choice: RetrievalChoice
    #: (N, TOP_CELLS) the cell ids (of this fold's classes) the photos most likely lie in
    top_cells: np.ndarray


def pooled_answer(
    parts: Sequence[FoldRetrieval], predictor: str
) -> tuple[np.ndarray, np.ndarray, list[list[Neighbour]]]:
    """(lat, lon, neighbours) per photo from every fold's index at once.

    Each fold searches its own index with its own model's embedding (embeddings of two
    folds live in different spaces, so their neighbours are never compared by similarity
    across folds): its weights are softmax(similarity / its temperature) over its own
    neighbours, each fold counts equally, and the answer is the weighted medoid of all of
    them. NaN where no fold found anything. Neighbours come best first within each fold.
    Folds are searched one after another, so one search's float32 copy is held at a time.
    """
    from geotag.retrieval.search import make_search

    n = len(parts[0].queries) if parts else 0
    lats, lons, weights = [], [], []
    neighbours: list[list[Neighbour]] = [[] for _ in range(n)]
    for part in parts:
        chosen = settings(part.choice, predictor)
        cells = part.top_cells[:, : chosen.k] if predictor == "refined" else None
        idx, sims = make_search(part.index).nearest(part.queries, chosen.m, cells)
        valid = idx >= 0
        w = softmax_weights(idx, sims, chosen.temperature) / len(parts)
        safe = np.where(valid, idx, 0)
        lats.append(np.where(valid, part.index.lat[safe], np.nan))
        lons.append(np.where(valid, part.index.lon[safe], np.nan))
        weights.append(w)
        for row, col in zip(*np.nonzero(valid), strict=True):
            entry = int(idx[row, col])
            neighbours[row].append(
                Neighbour(
                    path=part.index.path[entry],
                    lat=float(part.index.lat[entry]),
                    lon=float(part.index.lon[entry]),
                    similarity=float(sims[row, col]),
                    fold=part.fold,
                )
            )
    if not parts:
        return np.full(n, np.nan), np.full(n, np.nan), neighbours
    all_w = np.concatenate(weights, axis=1)
    found = all_w.sum(axis=1) > 0
    all_w = np.divide(
        all_w, all_w.sum(axis=1, keepdims=True), out=np.zeros_like(all_w), where=found[:, None]
    )
    lat, lon = weighted_medoid(np.concatenate(lats, axis=1), np.concatenate(lons, axis=1), all_w)
    return np.where(found, lat, np.nan), np.where(found, lon, np.nan), neighbours


def fold_retrieval(
    run: Run, fold: int, predictor: str | None
) -> tuple[LocationIndex, RetrievalChoice] | None:
    """The fold's index and settings; None for a run from before retrieval. A run whose
    ``predictor`` needs them and lacks them is refused in one line."""
    from geotag.errors import DataError
    from geotag.evaluate.metrics import RETRIEVAL_PREDICTORS
    from geotag.retrieval.index import LocationIndex

    index = LocationIndex.load(run.fold_dir(fold))
    choice = run.config.retrieval.get(str(fold))
    if index is not None and choice is not None:
        return index, choice
    if predictor in RETRIEVAL_PREDICTORS:
        raise DataError(
            f"run {run.name} answers with its {predictor} point, but fold {fold} has no "
            f"retrieval index ({run.fold_dir(fold)}/index.safetensors) or settings; retrain it"
        )
    return None


def _rows(table: dict[str, Any]) -> list[dict[str, float]]:
    """choose_settings' table of every combination tried, as plain rows."""
    return [{str(k): float(v) for k, v in row.items()} for row in table["rows"]]
