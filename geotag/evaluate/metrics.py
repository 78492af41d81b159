"""Geolocation metrics as the literature reports them (PlaNet, PIGEON, OSV-5M).

Inputs are class probabilities ``probs`` (N, K) over the K cells a run predicts, with each
class's cell centre. Two predicted points are scored side by side:

``top_cell``
    the centre of the most probable cell;
``weighted``
    the spherical mean of the top-k cell centres weighted by their renormalised
    probabilities (the original study's "weighted average of the grid centroids").

:func:`score` returns a :class:`Score` whose ``metrics`` dict holds only plain ``int``,
``float`` and ``str`` values, so it serialises straight to ``metrics.json``::

    {
      "n": 120, "n_classes": 40, "unknown_class": 0, "cell_km": 100.0,
      "top1": 0.41, "top5": 0.77, "balanced_accuracy": 0.35,
      "chance_top1": 0.025,
      "predictors": {
        "top_cell": {"median_km": ..., "mean_km": ..., "within_1km": ..., "within_25km": ...,
                     "within_200km": ..., "within_750km": ..., "within_2500km": ...,
                     "within_0.5x_cell": ..., "within_1.0x_cell": ..., "within_2.0x_cell": ...,
                     "geoscore": ...},
        "weighted": {...same keys...}
      },
      "headline": "weighted"
    }
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.errors import InputError
from geotag.geo.distance import geoscore, haversine_km, spherical_mean

if TYPE_CHECKING:
    import pandas as pd

#: Points from the class probabilities alone.
CELL_PREDICTORS = ("top_cell", "weighted")
#: Points from retrieval over a fold's index of training images (geotag.retrieval): the
#: nearest training locations over the whole index, or within the top cells.
RETRIEVAL_PREDICTORS = ("knn", "refined")
PREDICTORS = CELL_PREDICTORS + RETRIEVAL_PREDICTORS
#: The weighted point averages the top cells within this many cell sizes of the top cell.
WEIGHTED_NEAR_CELLS = 2.0
#: Fixed radii of the geolocation literature (street, city, region, country, continent).
THRESHOLDS_KM = (1, 25, 200, 750, 2500)
#: The radii a summary table shows: city, region and country.
SUMMARY_THRESHOLDS_KM = THRESHOLDS_KM[1:4]
#: Radii relative to the cell size, so small and large grids can be compared.
CELL_MULTIPLES = (0.5, 1.0, 2.0)
#: Default distances of :func:`distance_curve`: 1 km to about half the Earth's circumference.
CURVE_KM = np.geomspace(1, 20_000, 200)


@dataclass(frozen=True)
class Score:
    """What :func:`score` found.

    ``metrics`` is the JSON-ready dict (see the module docstring); the arrays are per
    sample, in input order: ``errors_km``, ``pred_lat`` and ``pred_lon`` are keyed by
    predictor (``"top_cell"``, ``"weighted"``); ``top_classes`` / ``top_probs`` are the
    five most probable classes (fewer when K < 5) and their probabilities, best first.
    """

    metrics: dict[str, Any]
    errors_km: dict[str, np.ndarray]
    pred_lat: dict[str, np.ndarray]
    pred_lon: dict[str, np.ndarray]
    top_classes: np.ndarray
    top_probs: np.ndarray

    @property
    def headline(self) -> str:
        """The predictor the headline numbers come from."""
        return str(self.metrics["headline"])

    @property
    def pred_class(self) -> np.ndarray:
        """The top-1 class per sample."""
        return self.top_classes[:, 0]


# -- fusion and predicted points --------------------------------------------------------


def fuse_by_group(probs: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the probabilities of the views of one place (multi-view fusion).

    Returns ``(fused (G, K), group_ids (G,), first (G,))``: groups are in order of first
    appearance, and ``first[g]`` is the row of group ``g``'s first view, so
    ``true_class[first]`` gives the fused rows' labels (all views of one place share it).
    """
    import pandas as pd

    p = _probabilities(probs)
    groups_a = np.asarray(groups)
    if groups_a.shape != (len(p),):
        raise InputError(f"fuse_by_group needs one group per row: {groups_a.shape} vs {len(p)}")
    codes, uniques = pd.factorize(groups_a, sort=False)
    if (codes < 0).any():
        raise InputError("fuse_by_group got a missing group id")
    n_groups = len(uniques)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_groups))
    sums = np.add.reduceat(p[order], starts, axis=0) if len(p) else np.zeros((0, p.shape[1]))
    counts = np.bincount(codes, minlength=n_groups)
    first = order[starts] if len(p) else np.zeros(0, dtype=np.int64)
    return sums / counts[:, None], np.asarray(uniques), first.astype(np.int64)


def top_k(probs: Any, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes per row (fewer if K < k), best first, and their
    probabilities; ties go to the lower class index."""
    p = _probabilities(probs)
    if k < 1:
        raise InputError(f"top-k needs k >= 1; got {k}")
    n, n_classes = p.shape
    k = min(k, n_classes)
    if k < n_classes:
        # Exactly k per row in O(K): everything above the k-th largest value, then as many
        # of the classes equal to it as are needed, lowest index first.
        kth = np.partition(p, n_classes - k, axis=1)[:, n_classes - k, None]
        chosen = p > kth
        tied = p == kth
        need = k - chosen.sum(axis=1)
        surplus = np.flatnonzero(tied.sum(axis=1) > need)  # rows where a tie must be broken
        tied[surplus] &= np.cumsum(tied[surplus], axis=1) <= need[surplus, None]
        chosen |= tied
        picked = np.nonzero(chosen)[1].reshape(n, k)
    else:
        picked = np.broadcast_to(np.arange(k), p.shape).copy()
    values = np.take_along_axis(p, picked, axis=1)
    # Sort the k picked by probability (descending), then by class index.
    order = np.lexsort((picked, -values), axis=1)
    classes = np.take_along_axis(picked, order, axis=1)
    return classes, np.take_along_axis(values, order, axis=1)


_top_k = top_k  # the functions below take a ``top_k`` parameter that shadows the name


def predicted_points(
    probs: Any,
    centre_lat: Any,
    centre_lon: Any,
    top_k: int = 5,
    near_km: float | None = None,
    region: Any = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"top_cell": (lat, lon), "weighted": (lat, lon)}``, arrays of shape (N,).

    ``top_cell`` is the most probable cell's centre; ``weighted`` the spherical mean of the
    ``top_k`` most probable centres, weighted by their probabilities renormalised to sum 1.
    With ``near_km`` only the centres within that distance of the top cell's take part, so
    two likely cells on opposite coasts never average into the sea between them; with
    ``region`` (a shapely geometry in degrees) a weighted point that still falls outside it
    (between two points of a curved coast) is the top cell's point instead.
    """
    classes, values = _top_k(probs, top_k)
    centres = _centres(centre_lat, centre_lon, np.shape(probs)[1])
    return _points(classes, values, *centres, near_km=near_km, region=region)


def _points(
    classes: np.ndarray,
    values: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    near_km: float | None = None,
    region: Any = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    top = classes[:, 0]
    if near_km is not None:
        far = haversine_km(lat[top][:, None], lon[top][:, None], lat[classes], lon[classes])
        values = np.where(np.asarray(far) <= near_km, values, 0.0)
    total = values.sum(axis=1, keepdims=True)
    weights = np.divide(values, total, out=np.zeros_like(values), where=total > 0)
    w_lat, w_lon = spherical_mean(lat[classes], lon[classes], weights)
    if region is not None:
        import shapely

        shapely.prepare(region)
        outside = ~shapely.intersects_xy(region, w_lon, w_lat)
        w_lat, w_lon = np.where(outside, lat[top], w_lat), np.where(outside, lon[top], w_lon)
    return {"top_cell": (lat[top], lon[top]), "weighted": (w_lat, w_lon)}


# -- scoring ----------------------------------------------------------------------------


def score(
    probs: Any,
    true_class: Any,
    true_lat: Any,
    true_lon: Any,
    centre_lat: Any,
    centre_lon: Any,
    cell_km: float,
    top_k: int = 5,
    *,
    region: Any = None,
    headline: str | None = None,
    near_km: float | None = None,
    retrieval: Mapping[str, tuple[Any, Any]] | None = None,
) -> Score:
    """Accuracy and distance metrics of ``probs`` (N, K) against the truth.

    ``true_class`` is each sample's class index, or -1 for a sample whose cell is not one
    of the run's classes: such a sample counts as a miss in top-1/top-5, is left out of
    the balanced accuracy (which is over the classes, as sklearn's
    ``balanced_accuracy_score``: the mean recall of the classes present in the truth), and
    is scored on distance like any other. ``top_k`` is the number of cell centres the
    ``weighted`` point averages; top-5 accuracy always uses five. With ``region`` (a
    shapely geometry in degrees) each predictor also reports ``inside_region``: the share
    of its predicted points that lie in the region (a point in the sea is a poor answer
    however close it is), and a weighted point outside it is the top cell's point.
    ``near_km`` restricts the weighted point as :func:`predicted_points` does.
    ``headline`` declares the predictor the headline figures use (one chosen before
    looking at these samples); by default the one with the lower median
    error here. ``retrieval`` adds the points of retrieval predictors (``knn``,
    ``refined``: (lat, lon) arrays of shape (N,)), scored like the others.
    """
    p = _probabilities(probs)
    n, k = p.shape
    if n == 0:
        raise InputError("there is nothing to score: no samples")
    truth = _class_array(true_class, n, k, "true_class", allow_unknown=True)
    t_lat = _float_array(true_lat, n, "true_lat")
    t_lon = _float_array(true_lon, n, "true_lon")
    c_lat, c_lon = _centres(centre_lat, centre_lon, k)
    if not (isinstance(cell_km, (int, float)) and math.isfinite(cell_km) and cell_km > 0):
        raise InputError(f"cell_km must be a positive number; got {cell_km!r}")

    extra = dict(retrieval or {})
    unknown = set(extra) - set(RETRIEVAL_PREDICTORS)
    if unknown:
        raise InputError(f"unknown retrieval predictor(s) {', '.join(sorted(unknown))}")
    names = [*CELL_PREDICTORS, *(name for name in RETRIEVAL_PREDICTORS if name in extra)]
    if headline is not None and headline not in names:
        raise InputError(f"unknown predictor {headline!r}; choose one of {', '.join(names)}")
    top5_classes, top5_probs = _top_k(p, 5)
    pred = top5_classes[:, 0]
    top1 = pred == truth
    top5 = (top5_classes == truth[:, None]).any(axis=1)

    if top_k == 5:
        classes, values = top5_classes, top5_probs
    else:
        classes, values = _top_k(p, top_k)
    points = _points(classes, values, c_lat, c_lon, near_km, region)
    for name, (lat, lon) in extra.items():
        points[name] = (_float_array(lat, n, f"{name} lat"), _float_array(lon, n, f"{name} lon"))
    errors = {name: haversine_km(t_lat, t_lon, *points[name]) for name in names}
    predictors = {name: distance_metrics(errors[name], float(cell_km)) for name in names}
    if region is not None:
        for name in names:
            predictors[name]["inside_region"] = inside_share(region, *points[name])

    metrics: dict[str, Any] = {
        "n": int(n),
        "n_classes": int(k),
        "unknown_class": int((truth < 0).sum()),
        "cell_km": float(cell_km),
        "top1": float(top1.mean()),
        "top5": float(top5.mean()),
        "balanced_accuracy": balanced_accuracy(truth, pred),
        "chance_top1": chance_top1(k),
        "predictors": predictors,
        "headline": headline if headline is not None else choose_headline(predictors),
    }
    return Score(
        metrics=metrics,
        errors_km=errors,
        pred_lat={name: points[name][0] for name in names},
        pred_lon={name: points[name][1] for name in names},
        top_classes=top5_classes,
        top_probs=top5_probs,
    )


def distance_metrics(errors_km: Any, cell_km: float) -> dict[str, float]:
    """Median and mean error, the share within each fixed and cell-relative radius, and
    the mean GeoScore, for one predictor's per-sample errors (km)."""
    e = np.asarray(errors_km, dtype=float)
    if e.ndim != 1 or len(e) == 0 or not np.isfinite(e).all():
        raise InputError("distance metrics need a non-empty 1-D array of finite errors")
    out = {"median_km": float(np.median(e)), "mean_km": float(e.mean())}
    for d in THRESHOLDS_KM:
        out[threshold_key(d)] = float((e <= d).mean())
    for m in CELL_MULTIPLES:
        out[cell_multiple_key(m)] = float((e <= m * cell_km).mean())
    out["geoscore"] = float(np.mean(geoscore(e)))
    return out


def inside_share(region: Any, lat: np.ndarray, lon: np.ndarray) -> float:
    """Share of the points (degrees) that lie inside ``region`` (or on its edge)."""
    import shapely

    shapely.prepare(region)
    return float(shapely.intersects_xy(region, np.asarray(lon), np.asarray(lat)).mean())


def threshold_key(km: float) -> str:
    """``within_25km`` for 25."""
    return f"within_{km:g}km"


def cell_multiple_key(multiple: float) -> str:
    """``within_0.5x_cell`` for 0.5, ``within_1.0x_cell`` for 1."""
    return f"within_{multiple:.1f}x_cell"


def choose_headline(predictors: Mapping[str, Mapping[str, Any]]) -> str:
    """The predictor with the lower median error; on a tie the higher GeoScore; on a tie
    of both, the first listed."""
    if not predictors:
        raise InputError("no predictors to choose a headline from")
    names = list(predictors)
    best = names[0]
    for name in names[1:]:
        if _better(predictors[name], predictors[best]):
            best = name
    return str(best)


def _better(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether predictor metrics ``a`` beat ``b``: lower median error, then higher GeoScore."""
    a_median, b_median = float(a["median_km"]), float(b["median_km"])
    if not _close(a_median, b_median):
        return a_median < b_median
    a_score, b_score = float(a["geoscore"]), float(b["geoscore"])
    return a_score > b_score and not _close(a_score, b_score)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def balanced_accuracy(true_class: Any, pred_class: Any) -> float:
    """Mean recall over the classes present in ``true_class`` (sklearn's
    ``balanced_accuracy_score``); samples with true class -1 are left out."""
    truth = np.asarray(true_class)
    pred = np.asarray(pred_class)
    known = truth >= 0
    truth, pred = truth[known], pred[known]
    if len(truth) == 0:
        return 0.0
    classes, inverse, counts = np.unique(truth, return_inverse=True, return_counts=True)
    hits = np.bincount(inverse, weights=(truth == pred).astype(float), minlength=len(classes))
    return float((hits / counts).mean())


def chance_top1(n_classes: int) -> float:
    """Top-1 accuracy of guessing uniformly among ``n_classes`` classes."""
    if n_classes < 1:
        raise InputError(f"chance needs at least one class; got {n_classes}")
    return 1.0 / n_classes


def confusion(true_class: Any, pred_class: Any, n_classes: int) -> np.ndarray:
    """(K, K) counts: rows are true classes, columns predicted, every class included
    (never-predicted and never-true ones are rows/columns of zeros). Samples whose true
    class is -1 (not one of the run's classes) have no row and are left out."""
    truth = np.asarray(true_class, dtype=np.int64)
    pred = np.asarray(pred_class, dtype=np.int64)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise InputError("confusion needs 1-D true and predicted classes of the same length")
    if n_classes < 1:
        raise InputError(f"confusion needs at least one class; got {n_classes}")
    keep = truth >= 0
    truth, pred = truth[keep], pred[keep]
    if (truth >= n_classes).any() or (pred < 0).any() or (pred >= n_classes).any():
        raise InputError(f"a class index lies outside 0..{n_classes - 1}")
    flat = np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def distance_curve(errors_km: Any, thresholds: Any | None = None) -> np.ndarray:
    """Share of samples with error <= d, for each d in ``thresholds`` (default
    :data:`CURVE_KM`, 1 to 20,000 km on a log scale)."""
    e = np.sort(np.asarray(errors_km, dtype=float).ravel())
    if len(e) == 0:
        raise InputError("a distance curve needs at least one error")
    d = CURVE_KM if thresholds is None else np.asarray(thresholds, dtype=float)
    return np.searchsorted(e, d, side="right") / len(e)


def per_cell_table(true_cell: Any, pred_cell: Any, errors_km: Any) -> pd.DataFrame:
    """One row per true cell: ``cell_id``, ``n``, ``accuracy`` (share predicted in that
    cell) and ``median_km``; the input of the accuracy map. Cells are real cell ids."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "cell_id": np.asarray(true_cell),
            "hit": np.asarray(true_cell) == np.asarray(pred_cell),
            "error_km": np.asarray(errors_km, dtype=float),
        }
    )
    table = frame.groupby("cell_id", sort=True).agg(
        n=("hit", "size"), accuracy=("hit", "mean"), median_km=("error_km", "median")
    )
    return table.reset_index()


# -- folds ------------------------------------------------------------------------------


def aggregate_folds(
    per_fold: Sequence[Mapping[str, Any]], headline: str | None = None
) -> dict[str, Any]:
    """Mean and standard deviation of every numeric leaf across folds.

    Returns ``{"folds": n, "mean": {...}, "std": {...}}`` with the folds' nested layout
    (std with ddof=1 for two or more folds, 0 for one). Non-numeric leaves (such as
    ``headline``) are left out of mean/std; when the folds have ``predictors``, a
    ``headline`` is chosen again from the mean predictor metrics, unless one is declared.
    """
    if not per_fold:
        raise InputError("there are no folds to aggregate")
    mean, std = _aggregate([dict(f) for f in per_fold], path="")
    out: dict[str, Any] = {"folds": len(per_fold), "mean": mean, "std": std}
    predictors = mean.get("predictors")
    if headline is not None:
        out["headline"] = headline
    elif isinstance(predictors, dict) and predictors:
        with contextlib.suppress(KeyError):  # folds without median_km/geoscore
            out["headline"] = choose_headline(predictors)
    return out


def _aggregate(nodes: list[dict[str, Any]], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key, first in nodes[0].items():
        where = f"{path}{key}"
        values = []
        for i, node in enumerate(nodes):
            if key not in node:
                raise InputError(f"fold {i} has no {where!r}; the folds' metrics differ")
            values.append(node[key])
        if isinstance(first, Mapping):
            if not all(isinstance(v, Mapping) for v in values):
                raise InputError(f"{where!r} is not a section in every fold")
            m, s = _aggregate([dict(v) for v in values], path=f"{where}.")
            mean[key], std[key] = m, s
        elif _is_number(first):
            if not all(_is_number(v) for v in values):
                raise InputError(f"{where!r} is not a number in every fold")
            array = np.asarray(values, dtype=float)
            mean[key] = float(array.mean())
            std[key] = float(array.std(ddof=1)) if len(array) >= 2 else 0.0
    return mean, std


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


# -- validation -------------------------------------------------------------------------


def _probabilities(probs: Any) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] == 0:
        raise InputError(f"probabilities must be an (N, K) array with K >= 1; got {p.shape}")
    if not np.isfinite(p).all():
        raise InputError("probabilities contain NaN or infinity")
    return p


def _class_array(values: Any, n: int, k: int, name: str, allow_unknown: bool) -> np.ndarray:
    a = np.asarray(values)
    if a.shape != (n,):
        raise InputError(f"{name} must have one entry per sample ({n}); got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"{name} must hold integer class indices")
    low = -1 if allow_unknown else 0
    if len(a) and (a.min() < low or a.max() >= k):
        raise InputError(f"{name} has a class index outside {low}..{k - 1}")
    return a.astype(np.int64)


def _float_array(values: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.shape != (n,):
        raise InputError(f"{name} must have one entry per sample ({n}); got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinity")
    return a


def _centres(centre_lat: Any, centre_lon: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    return _float_array(centre_lat, k, "centre_lat"), _float_array(centre_lon, k, "centre_lon")
