"""The ablation's statistics: panorama bootstrap, the effect, the detectable effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geotag.errors import InputError
from geotag.explain.ablation import CONDITIONS, shortcut_effect, stratum_figures
from geotag.explain.measure import summarise
from geotag.explain.strata import STRIP, STRIP_FREE
from geotag.explain.verdict import Verdict, decide
from geotag.train.bands import Band


def conditions(**accuracies: np.ndarray) -> dict[str, np.ndarray]:
    return {name: accuracies[name] for name in CONDITIONS}


def test_a_control_that_helps_does_not_make_an_unused_band_count() -> None:
    # Blanking the sky raises top-1 by 7.5 points, blanking the band costs nothing.
    assert shortcut_effect(0.0, -0.075) == 0.0
    assert shortcut_effect(0.10, 0.02) == pytest.approx(0.08)
    assert shortcut_effect(0.10, -0.02) == pytest.approx(0.10)
    effects = shortcut_effect(np.array([0.1, 0.0]), np.array([0.2, -1.0]))
    np.testing.assert_allclose(effects, [-0.1, 0.0])


def panoramas(count: int, headings: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Correct-or-not per image, identical across the headings of one panorama: the band
    costs a hit on a random third of the panoramas."""
    rng = np.random.default_rng(seed)
    full = rng.random(count) < 0.6
    band = full & (rng.random(count) < 0.67)
    repeat = lambda a: np.repeat(a, headings)  # noqa: E731
    correct = conditions(
        full=repeat(full), band_blanked=repeat(band), control_blanked=repeat(full),
        band_only=repeat(np.zeros(count, bool)),
    )  # fmt: skip
    return correct, np.repeat(np.arange(count), headings)


def test_resampling_panoramas_widens_the_interval_that_images_would_give() -> None:
    correct, groups = panoramas(150, headings=4, seed=1)
    km = {name: np.zeros(len(groups)) for name in CONDITIONS}
    blank = np.zeros(len(groups), bool)
    by_panorama = stratum_figures(correct, km, groups, blank, blank)
    by_image = stratum_figures(correct, km, np.arange(len(groups)), blank, blank)
    assert by_panorama["effect"]["value"] == by_image["effect"]["value"]
    width = lambda f: f["effect"]["ci"][1] - f["effect"]["ci"][0]  # noqa: E731
    # Four identical headings: the honest interval is about sqrt(4) = 2 times wider.
    assert 1.6 < width(by_panorama) / width(by_image) < 2.5
    assert by_panorama["panoramas"] == 150 and by_panorama["images"] == 600
    assert by_panorama["detectable"] > by_image["detectable"]


def test_no_change_on_few_panoramas_vouches_for_little() -> None:
    count = 30
    same = np.ones(count, bool)
    correct = conditions(full=same, band_blanked=same, control_blanked=same, band_only=same)
    km = {name: np.zeros(count) for name in CONDITIONS}
    figures = stratum_figures(correct, km, np.arange(count), same, same)
    # Nothing moved, so the bootstrap's spread is zero; the rule of three still holds.
    assert figures["effect"]["ci"] == (0.0, 0.0)
    assert figures["detectable"] == pytest.approx(3 / count)


def test_baselines_are_the_blank_answer_and_the_training_majority() -> None:
    count = 10
    hits = np.zeros(count, bool)
    correct = conditions(full=hits, band_blanked=hits, control_blanked=hits, band_only=hits)
    km = {name: np.zeros(count) for name in CONDITIONS}
    cells = np.array([3, 3, 3, 3, 1, 1, 2, 2, 2, 5])
    # The model answers cell 1 to a blank picture; its training images were mostly cell 2.
    figures = stratum_figures(correct, km, np.arange(count), cells == 1, cells == 2)
    assert figures["blank_accuracy"] == pytest.approx(0.2)
    assert figures["majority_accuracy"] == pytest.approx(0.3)


def test_bad_figures_are_refused() -> None:
    with pytest.raises(InputError, match="at least one image"):
        stratum_figures({}, {}, np.array([]), np.array([]), np.array([]))
    short = {name: np.zeros(3) for name in CONDITIONS}
    with pytest.raises(InputError, match="another number"):
        stratum_figures(short, short, np.arange(4), np.zeros(4), np.zeros(4))


def measured_rows(strip_share: float, seed: int = 0, count: int = 2000) -> pd.DataFrame:
    """A model that reads the name on a third of the strip images (right with the strip,
    left to the scene without it) and is unmoved by the band elsewhere; two headings per
    panorama. Within the strip images that is a 15-point shortcut, as the review measured
    on the demo (9.8 points); pooled, it is diluted by the share of strip images."""
    rng = np.random.default_rng(seed)
    places = count // 2
    strip = np.repeat(rng.random(places) < strip_share, 2)
    honest = np.repeat(rng.random(places) < 0.5, 2)
    reads = strip & np.repeat(rng.random(places) < 0.33, 2)
    full = honest | reads
    rows = {
        "group": np.repeat(np.arange(places), 2).astype(str),
        "cell_id": np.repeat(rng.integers(0, 30, places), 2),
        "stratum": np.where(strip, STRIP, STRIP_FREE),
        "by_copyright": np.ones(count, bool),
        "mass": rng.random(count) * 0.1,
        "hit": np.zeros(count, bool),
        "blank_correct": np.zeros(count, bool),
        "majority_correct": np.zeros(count, bool),
        "correct_full": full,
        "correct_band_blanked": honest,
        "correct_control_blanked": full,
        "correct_band_only": reads,
    }
    for name in CONDITIONS:
        rows[f"km_{name}"] = np.where(rows[f"correct_{name}"], 10.0, 900.0)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("share", [0.1, 0.2])
def test_a_minority_that_reads_the_strip_is_caught_where_pooling_misses_it(share: float) -> None:
    rows = measured_rows(share)
    available = rows["stratum"].value_counts().to_dict()
    ablation = summarise(rows, Band("bottom", 0.1), 0.1, available, seed=0)
    # Pooled over every image the strip readers stay under the 5-point threshold ...
    assert ablation.pooled.effect.value < 0.05
    # ... within the strip images they cannot hide.
    assert ablation.strata[STRIP].effect.value > 0.1
    verdict, reasons = decide(ablation)
    assert verdict is Verdict.SHORTCUT and "strip images" in reasons[0]
    assert ablation.strata[STRIP_FREE].effect.ci[0] <= 0 <= ablation.strata[STRIP_FREE].effect.ci[1]


def test_the_pooled_row_is_weighted_back_to_the_held_out_share() -> None:
    # The audit drew strip images first: half of those audited, a tenth of those held out.
    rows = measured_rows(0.5, seed=3)
    ablation = summarise(rows, Band("bottom", 0.1), 0.1, {STRIP: 100, STRIP_FREE: 900}, seed=0)
    strip, free = ablation.strata[STRIP], ablation.strata[STRIP_FREE]
    expected = 0.1 * strip.drop_band.value + 0.9 * free.drop_band.value
    assert ablation.pooled.drop_band.value == pytest.approx(expected)
    assert ablation.pooled.images == len(rows)
    unweighted = summarise(rows, Band("bottom", 0.1), 0.1, {STRIP: 1, STRIP_FREE: 1}, seed=0)
    assert unweighted.pooled.drop_band.value > 2 * ablation.pooled.drop_band.value
