"""The verdict rule: what each verdict needs, and what must never be enough."""

from __future__ import annotations

from typing import Any

import pytest

from geotag.explain.report import Ablation, Condition, Estimate, Stratum
from geotag.explain.strata import STRIP, STRIP_FREE
from geotag.explain.verdict import FAIL_ON, Verdict, data_warning, decide

QUIET_HEAT: dict[str, Any] = {
    "area_share": 0.1,
    "band_mass": {"mean": 0.11},
    "share_above": 0.05,
    "classes": {"share_above": 0.0},
}


def stratum(
    drop_band: float = 0.0,
    drop_control: float = 0.0,
    effect_ci: tuple[float, float] = (-0.02, 0.02),
    band_only: float = 0.05,
    band_only_low: float = 0.02,
    blank: float = 0.05,
    majority: float = 0.05,
    detectable: float = 0.03,
    heat: dict[str, Any] | None = None,
) -> Stratum:
    effect = drop_band - max(drop_control, 0.0)
    return Stratum(
        images=200, panoramas=100, by_copyright=200,
        conditions={
            "full": Condition(0.5, (0.45, 0.55), 100.0),
            "band_blanked": Condition(0.5 - drop_band, (0.4, 0.6), 100.0),
            "control_blanked": Condition(0.5 - drop_control, (0.4, 0.6), 100.0),
            "band_only": Condition(band_only, (band_only_low, band_only + 0.05), 900.0),
        },
        drop_band=Estimate(drop_band, (drop_band - 0.03, drop_band + 0.03)),
        drop_control=Estimate(drop_control, (drop_control - 0.03, drop_control + 0.03)),
        excess=Estimate(drop_band - drop_control, (0.0, 0.0)),
        effect=Estimate(effect, effect_ci),
        detectable=detectable, blank_accuracy=blank, majority_accuracy=majority,
        heat=heat or QUIET_HEAT,
    )  # fmt: skip


def ablation(strip: Stratum | None, official: Stratum | None = None) -> Ablation:
    official = official or stratum()
    strata = {STRIP_FREE: official} if strip is None else {STRIP: strip, STRIP_FREE: official}
    return Ablation(band="bottom:0.1", control="top:0.1", bootstrap=1000, level=0.95,
                    strata=strata, pooled=official)  # fmt: skip


def test_shortcut_needs_a_real_cost_on_the_strip_images() -> None:
    reads = stratum(drop_band=0.2, effect_ci=(0.12, 0.28), band_only=0.4, band_only_low=0.3)
    verdict, reasons = decide(ablation(reads))
    assert verdict is Verdict.SHORTCUT and len(reasons) == 2
    assert "on the 200 strip images (100 panoramas)" in reasons[0]
    # A model that reads the strip only together with the scene: the band alone tells it
    # nothing, but blanking the band costs 20 points. Still a shortcut, on one reason.
    with_scene = stratum(drop_band=0.2, effect_ci=(0.12, 0.28), band_only_low=0.02)
    verdict, reasons = decide(ablation(with_scene))
    assert verdict is Verdict.SHORTCUT and len(reasons) == 1
    # A small but real cost, or a large one whose interval reaches zero: suspect at most.
    small = stratum(drop_band=0.03, effect_ci=(0.01, 0.05), band_only=0.4, band_only_low=0.3)
    assert decide(ablation(small))[0] is Verdict.SUSPECT
    noisy = stratum(drop_band=0.08, effect_ci=(-0.01, 0.17))
    assert decide(ablation(noisy))[0] is Verdict.INCONCLUSIVE


def test_a_control_that_helps_is_never_a_shortcut() -> None:
    # The false SHORTCUT on real photos: band cost 0.0, blanking the top *raised* top-1 by
    # 7.5 points; the band alone beat 1/K but not the commonest cell.
    sky = stratum(drop_band=0.0, drop_control=-0.075, effect_ci=(-0.03, 0.06), band_only=0.2,
                  band_only_low=0.12, blank=0.1, majority=0.136, detectable=0.08)  # fmt: skip
    verdict, reasons = decide(ablation(sky))
    assert verdict is not Verdict.SHORTCUT
    assert verdict is Verdict.INCONCLUSIVE and "up to 6.0% cannot be ruled out" in reasons[0]


def test_the_band_alone_must_beat_what_a_blank_picture_gets() -> None:
    # 1/K would be 3.4%; the model's answer to a blank picture is right 5.2% of the time.
    blank_wins = stratum(band_only=0.06, band_only_low=0.045, blank=0.052, majority=0.03)
    assert decide(ablation(blank_wins)) == (Verdict.PASS, [])
    beats = stratum(band_only=0.2, band_only_low=0.1, blank=0.052, majority=0.03)
    verdict, reasons = decide(ablation(beats))
    assert verdict is Verdict.SUSPECT and "5.2% for a blank picture" in reasons[0]


def test_too_small_a_sample_is_inconclusive_not_a_pass() -> None:
    assert decide(ablation(stratum(effect_ci=(-0.02, 0.049))))[0] is Verdict.PASS
    verdict, reasons = decide(ablation(stratum(effect_ci=(-0.02, 0.09))))
    assert verdict is Verdict.INCONCLUSIVE and "against the 5% that counts" in reasons[0]
    # Nothing moved on 40 panoramas: an interval of zero width, but 3/40 is not ruled out.
    few = Stratum(**{**stratum(effect_ci=(0.0, 0.0)).__dict__, "panoramas": 40})
    verdict, reasons = decide(ablation(few))
    assert verdict is Verdict.INCONCLUSIVE and "up to 7.5%" in reasons[0]
    # An effect whose interval lies below zero rules out a shortcut, whatever the power.
    hurt = stratum(drop_band=-0.064, effect_ci=(-0.115, -0.016), detectable=0.071)
    assert decide(ablation(hurt))[0] is Verdict.PASS


def test_heat_on_the_strip_images_is_a_warning_sign() -> None:
    hot = {**QUIET_HEAT, "band_mass": {"mean": 0.3}}
    verdict, reasons = decide(ablation(stratum(heat=hot)))
    assert verdict is Verdict.SUSPECT and "3.0x its area share" in reasons[0]


def test_without_strip_images_the_band_holds_only_the_scene() -> None:
    road = stratum(drop_band=0.057, effect_ci=(0.011, 0.104))  # the simulator's honest road
    verdict, reasons = decide(ablation(None, road))
    assert verdict is Verdict.PASS and "none of the 200 audited images" in reasons[0]
    odd = stratum(drop_band=0.3, effect_ci=(0.2, 0.4))
    assert decide(ablation(None, odd))[0] is Verdict.SUSPECT


def test_a_band_masked_at_input_passes_on_that_ground() -> None:
    verdict, reasons = decide(None, "bottom:0.12")
    assert verdict is Verdict.PASS
    assert reasons == [
        "the band is blanked at input (the run's mask bottom:0.12 covers it): the model "
        "cannot read it"
    ]


def test_verdicts_are_ordered_and_fail_on_names_each() -> None:
    assert Verdict.PASS < Verdict.INCONCLUSIVE < Verdict.SUSPECT < Verdict.SHORTCUT
    assert FAIL_ON == {
        "never": None, "inconclusive": Verdict.INCONCLUSIVE, "suspect": Verdict.SUSPECT,
        "shortcut": Verdict.SHORTCUT,
    }  # fmt: skip


def test_a_leak_in_the_data_is_reported_beside_the_models_verdict() -> None:
    # Masking fixes the model, not the strings: the warning stays, the verdict passes.
    leak = {"leaks": True, "accuracy": 0.4, "baseline": 0.1}
    assert "copyright strings predict the cell (40.0% vs baseline 10.0%)" in str(data_warning(leak))
    assert data_warning({**leak, "leaks": False}) is None
    assert data_warning(None) is None


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_has_a_next_step(verdict: Verdict) -> None:
    from geotag.explain.verdict import NEXT_STEPS

    assert NEXT_STEPS[verdict]
