from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from pyproj import Geod
from sklearn.metrics import balanced_accuracy_score

from geotag.errors import InputError
from geotag.evaluate.metrics import (
    CURVE_KM,
    aggregate_folds,
    balanced_accuracy,
    chance_top1,
    choose_headline,
    confusion,
    distance_curve,
    fuse_by_group,
    per_cell_table,
    predicted_points,
    score,
    top_k,
)

GEOD = Geod(ellps="WGS84")
#: The mean-radius sphere vs WGS84: up to ~0.56% (north-south arcs near the equator and poles).
SPHERE_VS_ELLIPSOID = 0.006
#: One degree of a great circle on the mean-radius sphere, in km.
DEG_KM = 6371.0088 * math.pi / 180

# Three cells on the equator, one degree apart.
CENTRE_LAT = np.zeros(3)
CENTRE_LON = np.array([0.0, 1.0, 2.0])


def hand_case() -> dict[str, np.ndarray]:
    """Four images whose errors can be worked out on paper (see test_score_by_hand)."""
    return {
        "probs": np.array(
            [
                [1.0, 0.0, 0.0],  # true 0: hit; both points on the truth
                [0.5, 0.0, 0.5],  # true 2: tie -> class 0 (miss); weighted point at lon 1
                [0.0, 0.5, 0.5],  # true 1: tie -> class 1 (hit); weighted point at lon 1.5
                [0.0, 0.0, 1.0],  # true 1: miss; both points at lon 2
            ]
        ),
        "true_class": np.array([0, 2, 1, 1]),
        "true_lat": np.zeros(4),
        "true_lon": np.array([0.0, 2.0, 1.0, 1.0]),
    }


def test_score_by_hand() -> None:
    case = hand_case()
    result = score(**case, centre_lat=CENTRE_LAT, centre_lon=CENTRE_LON, cell_km=100.0)
    m = result.metrics

    assert m["n"] == 4 and m["n_classes"] == 3 and m["unknown_class"] == 0
    assert m["top1"] == 0.5
    assert m["top5"] == 1.0  # K = 3 < 5: every class is in the top five
    # Recall: class 0 1/1, class 2 0/1, class 1 1/2.
    assert m["balanced_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["chance_top1"] == pytest.approx(1 / 3)
    assert result.pred_class.tolist() == [0, 0, 1, 2]

    top_cell = np.array([0, 2, 0, 1]) * DEG_KM
    weighted = np.array([0, 1, 0.5, 1]) * DEG_KM
    assert result.errors_km["top_cell"] == pytest.approx(top_cell, abs=1e-6)
    assert result.errors_km["weighted"] == pytest.approx(weighted, abs=1e-6)
    assert result.pred_lon["weighted"] == pytest.approx([0, 1, 1.5, 2], abs=1e-9)
    assert result.pred_lat["top_cell"] == pytest.approx([0, 0, 0, 0], abs=1e-9)

    tc, w = m["predictors"]["top_cell"], m["predictors"]["weighted"]
    assert tc["median_km"] == pytest.approx(0.5 * DEG_KM)
    assert tc["mean_km"] == pytest.approx(0.75 * DEG_KM)
    assert w["median_km"] == pytest.approx(0.75 * DEG_KM)
    assert w["mean_km"] == pytest.approx(0.625 * DEG_KM)
    assert [tc[f"within_{d}km"] for d in (1, 25, 200, 750, 2500)] == [0.5, 0.5, 0.75, 1, 1]
    assert [w[f"within_{d}km"] for d in (1, 25, 200, 750, 2500)] == [0.25, 0.25, 1, 1, 1]
    # Cell-relative radii: 50, 100 and 200 km for 100 km cells.
    assert [tc[f"within_{x}x_cell"] for x in ("0.5", "1.0", "2.0")] == [0.5, 0.5, 0.75]
    assert [w[f"within_{x}x_cell"] for x in ("0.5", "1.0", "2.0")] == [0.25, 0.5, 1.0]
    assert tc["geoscore"] == pytest.approx(np.mean(5000 * np.exp(-top_cell / 1492.7)))
    assert w["geoscore"] == pytest.approx(np.mean(5000 * np.exp(-weighted / 1492.7)))
    # The weighted point wins on mean error and GeoScore, but the headline is the median.
    assert w["geoscore"] > tc["geoscore"]
    assert m["headline"] == result.headline == "top_cell"


def test_metrics_serialise_to_plain_json() -> None:
    result = score(**hand_case(), centre_lat=CENTRE_LAT, centre_lon=CENTRE_LON, cell_km=100.0)

    def leaves(node: object) -> list[object]:
        if isinstance(node, dict):
            return [leaf for value in node.values() for leaf in leaves(value)]
        return [node]

    assert {type(leaf) for leaf in leaves(result.metrics)} <= {int, float, str}
    assert json.loads(json.dumps(result.metrics, allow_nan=False)) == result.metrics


def test_errors_agree_with_the_ellipsoid() -> None:
    rng = np.random.default_rng(1)
    k, n = 12, 200
    centre_lat, centre_lon = rng.uniform(8, 30, k), rng.uniform(70, 90, k)
    probs = rng.dirichlet(np.ones(k) * 0.3, n)
    true_class = rng.integers(0, k, n)
    true_lat = centre_lat[true_class] + rng.normal(0, 0.5, n)
    true_lon = centre_lon[true_class] + rng.normal(0, 0.5, n)
    result = score(probs, true_class, true_lat, true_lon, centre_lat, centre_lon, 50.0)
    for name in ("top_cell", "weighted"):
        _, _, metres = GEOD.inv(true_lon, true_lat, result.pred_lon[name], result.pred_lat[name])
        far = metres > 1000
        ratio = result.errors_km[name][far] / (metres[far] / 1000)
        assert np.abs(ratio - 1).max() < SPHERE_VS_ELLIPSOID
    assert result.top_classes.shape == result.top_probs.shape == (n, 5)
    assert (np.diff(result.top_probs, axis=1) <= 0).all()


def test_unknown_true_class_is_a_miss_but_still_scored_on_distance() -> None:
    case = hand_case()
    case["true_class"] = np.array([0, 2, 1, -1])
    m = score(**case, centre_lat=CENTRE_LAT, centre_lon=CENTRE_LON, cell_km=100.0).metrics
    assert m["unknown_class"] == 1
    assert m["top1"] == 0.5 and m["top5"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["predictors"]["top_cell"]["mean_km"] == pytest.approx(0.75 * DEG_KM)


def test_score_refuses_bad_input() -> None:
    case = hand_case()
    centres = {"centre_lat": CENTRE_LAT, "centre_lon": CENTRE_LON, "cell_km": 100.0}
    with pytest.raises(InputError, match=re.escape("outside -1..2")):
        score(**{**case, "true_class": np.array([0, 1, 2, 3])}, **centres)
    with pytest.raises(InputError, match="one entry per sample"):
        score(**{**case, "true_lat": np.zeros(3)}, **centres)
    with pytest.raises(InputError, match="centre_lon"):
        score(**case, centre_lat=CENTRE_LAT, centre_lon=np.zeros(2), cell_km=100.0)
    with pytest.raises(InputError, match="no samples"):
        score(np.zeros((0, 3)), [], [], [], CENTRE_LAT, CENTRE_LON, 100.0)
    with pytest.raises(InputError, match="cell_km"):
        score(**case, centre_lat=CENTRE_LAT, centre_lon=CENTRE_LON, cell_km=0)


def test_top_k_and_predicted_points() -> None:
    probs = np.array([[0.1, 0.3, 0.3, 0.3], [0.4, 0.1, 0.2, 0.3]])
    classes, values = top_k(probs, 2)
    assert classes.tolist() == [[1, 2], [0, 3]]  # ties go to the lower class index
    assert values.tolist() == [[0.3, 0.3], [0.4, 0.3]]
    assert top_k(probs, 10)[0].shape == (2, 4)
    # Many ties: the same as a stable sort, and top-1 is always argmax.
    rng = np.random.default_rng(3)
    tied = rng.integers(0, 4, (200, 9)).astype(float)
    for k in (1, 3, 9):
        classes, values = top_k(tied, k)
        expected = np.argsort(-tied, axis=1, kind="stable")[:, :k]
        assert (classes == expected).all()
        assert (values == np.take_along_axis(tied, expected, axis=1)).all()
    assert (top_k(tied, 3)[0][:, 0] == tied.argmax(axis=1)).all()

    lat = np.array([0.0, 0.0, 10.0, 0.0])
    lon = np.array([0.0, 179.0, 0.0, -179.0])
    points = predicted_points(np.array([[0.0, 0.5, 0.0, 0.5]]), lat, lon, top_k=2)
    assert points["top_cell"][1].tolist() == [179.0]
    # Renormalised top-2 weights 0.5/0.5 across the antimeridian meet at 180, not 0.
    assert abs(points["weighted"][1][0]) == pytest.approx(180.0)
    one = predicted_points(np.array([[0.2, 0.1, 0.7, 0.0]]), lat, lon, top_k=1)
    assert one["weighted"][0].tolist() == one["top_cell"][0].tolist() == [10.0]


def test_fuse_by_group_averages_views_in_order_of_first_appearance() -> None:
    probs = np.array(
        [
            [0.6, 0.4, 0.0],
            [0.0, 1.0, 0.0],
            [0.2, 0.0, 0.8],
            [0.1, 0.1, 0.8],
            [0.0, 0.5, 0.5],
        ]
    )
    fused, groups, first = fuse_by_group(probs, ["pano-b", "pano-a", "pano-b", "c", "pano-a"])
    assert groups.tolist() == ["pano-b", "pano-a", "c"]
    assert first.tolist() == [0, 1, 3]
    assert fused == pytest.approx(np.array([[0.4, 0.2, 0.4], [0.0, 0.75, 0.25], [0.1, 0.1, 0.8]]))
    assert fused.sum(axis=1) == pytest.approx(np.ones(3))
    # Two views that pick different cells fuse into the cell both found likely.
    views = np.array([[0.6, 0.4, 0.0], [0.0, 0.45, 0.55]])
    fused, ids, first = fuse_by_group(views, np.array([7, 7]))
    assert ids.tolist() == [7] and first.tolist() == [0]
    assert fused.argmax(axis=1).tolist() == [1]
    with pytest.raises(InputError, match="one group per row"):
        fuse_by_group(probs, [1, 2])


def test_balanced_accuracy_on_an_imbalanced_case() -> None:
    truth = np.array([0] * 8 + [1] * 2 + [2] * 2)
    pred = np.array([0] * 8 + [0, 1] + [2, 2])
    expected = (1.0 + 0.5 + 1.0) / 3
    assert balanced_accuracy(truth, pred) == pytest.approx(expected)
    assert balanced_accuracy(truth, pred) == pytest.approx(balanced_accuracy_score(truth, pred))
    # Always guessing the majority: 8/12 plain accuracy but only 1/3 balanced.
    always_zero = np.zeros(12, dtype=int)
    assert balanced_accuracy(truth, always_zero) == pytest.approx(1 / 3)
    assert chance_top1(4) == 0.25


def test_headline_prefers_lower_median_then_higher_geoscore() -> None:
    assert (
        choose_headline(
            {
                "top_cell": {"median_km": 120.0, "geoscore": 3000.0},
                "weighted": {"median_km": 90.0, "geoscore": 2900.0},
            }
        )
        == "weighted"
    )
    tie = {
        "top_cell": {"median_km": 100.0, "geoscore": 3000.0},
        "weighted": {"median_km": 100.0, "geoscore": 3100.0},
    }
    assert choose_headline(tie) == "weighted"
    tie["weighted"]["geoscore"] = 3000.0
    assert choose_headline(tie) == "top_cell"


def test_aggregate_three_folds_by_hand() -> None:
    folds = [
        {
            "n": n,
            "top1": top1,
            "predictors": {
                "top_cell": {"median_km": median, "geoscore": 3000.0},
                "weighted": {"median_km": median - delta, "geoscore": 3100.0},
            },
            "headline": "weighted",
        }
        for n, top1, median, delta in [
            (10, 0.5, 100.0, 10.0),
            (20, 0.6, 200.0, 10.0),
            (30, 0.7, 300.0, 40.0),
        ]
    ]
    out = aggregate_folds(folds)
    assert out["folds"] == 3
    assert out["mean"]["n"] == 20.0 and out["std"]["n"] == pytest.approx(10.0)
    assert out["mean"]["top1"] == pytest.approx(0.6)
    assert out["std"]["top1"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    assert out["mean"]["predictors"]["top_cell"]["median_km"] == pytest.approx(200.0)
    assert out["std"]["predictors"]["top_cell"]["median_km"] == pytest.approx(100.0)
    assert out["mean"]["predictors"]["weighted"]["median_km"] == pytest.approx(180.0)
    assert out["std"]["predictors"]["weighted"]["geoscore"] == 0.0
    assert "headline" not in out["mean"]
    assert out["headline"] == "weighted"
    json.dumps(out, allow_nan=False)

    single = aggregate_folds(folds[:1])
    assert single["folds"] == 1 and single["std"]["top1"] == 0.0
    assert single["mean"]["top1"] == 0.5

    with pytest.raises(InputError, match=re.escape("fold 1 has no 'predictors.weighted'")):
        only_top_cell = {"top_cell": folds[1]["predictors"]["top_cell"]}
        aggregate_folds([folds[0], {**folds[1], "predictors": only_top_cell}])
    with pytest.raises(InputError, match="no folds"):
        aggregate_folds([])


def test_aggregate_real_scores_keeps_the_layout() -> None:
    result = score(**hand_case(), centre_lat=CENTRE_LAT, centre_lon=CENTRE_LON, cell_km=100.0)
    out = aggregate_folds([result.metrics] * 3)
    assert out["mean"]["predictors"].keys() == result.metrics["predictors"].keys()
    assert out["mean"]["predictors"]["weighted"] == pytest.approx(
        result.metrics["predictors"]["weighted"]
    )
    assert out["headline"] == "top_cell"


def test_confusion_includes_never_predicted_and_never_true_classes() -> None:
    matrix = confusion([0, 1, 2, 2, 1, -1], [0, 0, 0, 2, 0, 3], n_classes=4)
    assert matrix.tolist() == [
        [1, 0, 0, 0],
        [2, 0, 0, 0],  # class 1 is never predicted
        [1, 0, 1, 0],
        [0, 0, 0, 0],  # class 3 is never true (the -1 sample has no row)
    ]
    with pytest.raises(InputError, match=re.escape("outside 0..3")):
        confusion([0, 4], [0, 0], n_classes=4)


def test_distance_curve() -> None:
    shares = distance_curve([1.0, 10.0, 100.0], [0.5, 1.0, 50.0, 100.0, 1000.0])
    assert shares == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    default = distance_curve(np.array([5.0, 5000.0]))
    assert default.shape == CURVE_KM.shape == (200,)
    assert CURVE_KM[0] == pytest.approx(1) and CURVE_KM[-1] == pytest.approx(20_000)
    assert (np.diff(default) >= 0).all() and default[-1] == 1.0


def test_per_cell_table() -> None:
    table = per_cell_table([42, 42, 3, 42], [42, 3, 3, 17], [0.0, 10.0, 1.0, 30.0])
    assert table.to_dict("list") == {
        "cell_id": [3, 42],
        "n": [1, 3],
        "accuracy": [1.0, pytest.approx(1 / 3)],
        "median_km": [1.0, 10.0],
    }


def test_score_reports_the_share_of_predicted_points_inside_the_region() -> None:
    import shapely

    region = shapely.box(0, 0, 10, 10)  # lon 0..10, lat 0..10
    centre_lat, centre_lon = np.array([5.0, 20.0]), np.array([5.0, 5.0])  # class 1 outside
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    out = score(probs, np.array([0, 1, 0]), np.full(3, 5.0), np.full(3, 5.0), centre_lat,
                centre_lon, 100.0, region=region)  # fmt: skip
    assert out.metrics["predictors"]["top_cell"]["inside_region"] == pytest.approx(2 / 3)
    plain = score(probs, np.array([0, 1, 0]), np.full(3, 5.0), np.full(3, 5.0), centre_lat,
                  centre_lon, 100.0)  # fmt: skip
    assert "inside_region" not in plain.metrics["predictors"]["weighted"]


def test_the_weighted_point_keeps_to_cells_near_the_top_one_and_to_the_region() -> None:
    import shapely

    from geotag.evaluate.metrics import predicted_points

    # Two likely cells on opposite coasts, 20 degrees apart, and a close neighbour.
    lat, lon = np.array([0.0, 0.0, 0.0]), np.array([0.0, 20.0, 1.0])
    probs = np.array([[0.45, 0.40, 0.15]])
    anywhere = predicted_points(probs, lat, lon, top_k=3)["weighted"]
    assert 8.0 < float(anywhere[1][0]) < 11.0  # averaged into the middle
    near = predicted_points(probs, lat, lon, top_k=3, near_km=500.0)["weighted"]
    assert 0.0 < float(near[1][0]) < 1.0  # only the top cell and its neighbour
    # A region the averaged point falls outside of: the top cell's point instead.
    region = shapely.union(shapely.box(-1, -1, 0.2, 1), shapely.box(19, -1, 21, 1))
    kept = predicted_points(probs, lat, lon, top_k=3, region=region)["weighted"]
    assert (float(kept[0][0]), float(kept[1][0])) == (0.0, 0.0)
