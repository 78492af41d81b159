"""PASS, INCONCLUSIVE, SUSPECT or SHORTCUT: the audit's verdict from documented thresholds.

The verdict rests on the images that carry a photographer strip (see
:mod:`~geotag.explain.strata`), where the shortcut lives; pooled over every image, a model
that reads the name on the 20% that carry one would pass. Its figure is the *effect*:
what blanking the band costs beyond what blanking an equal-area control band costs, never
more than the band's own cost (see :func:`~geotag.explain.ablation.shortcut_effect`).

SHORTCUT: the effect is at least ``EFFECT`` with its 95% interval above zero. On a strip
    image the strip *replaces* the band's scene, so what blanking it costs beyond the
    control is what the strip was worth to the model: it reads the strip. Whether the band
    alone beats what the model answers with no picture at all (its answer to a blank
    picture, and its training images' commonest cell) is reported beside it, not
    required: a model may read the strip only together with the scene.
SUSPECT: any one warning sign: the effect's interval is above zero but the effect is
    small; the band alone beats those baselines; the heat looks at the band (mean band
    mass at least ``HEAT_RATIO`` times its area share, or at least ``HEAT_SHARE`` of the
    images or of the classes above that). With no strip images at all: the band costs
    ``UNSTRIPPED_EFFECT`` beyond the control on official images, more than scene content
    should.
INCONCLUSIVE: no sign, but the sample cannot rule out an effect of ``EFFECT``: the upper
    end of the effect's interval reaches it, or so few panoramas were audited that the
    rule of three (no change seen in n of them rules out no more than 3/n) cannot.
PASS: none of these; or the run's own mask blanks the band at input; or no audited image
    carries a strip.

The verdict judges the model. Whether the copyright strings predict the cell is a finding
about the data, reported beside it (:func:`data_warning`): masking the band fixes a model
that reads it, but cannot stop the strings from leaking the location to whoever trains on
the same images, so the warning stays even when the model passes.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geotag.explain.report import Ablation, Stratum


class Verdict(str, enum.Enum):
    """The audit's verdict, in order of severity: ``PASS < INCONCLUSIVE < SUSPECT <
    SHORTCUT``. An inconclusive audit saw no sign but could not vouch for the model."""

    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    SUSPECT = "SUSPECT"
    SHORTCUT = "SHORTCUT"

    def __str__(self) -> str:
        return self.value

    @property
    def severity(self) -> int:
        return list(Verdict).index(self)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self.severity >= other.severity

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self.severity > other.severity

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self.severity <= other.severity

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return self.severity < other.severity


#: ``--fail-on`` choices: never, or the least severe verdict that fails the command.
FAIL_ON: dict[str, Verdict | None] = {
    "never": None,
    **{v.value.lower(): v for v in Verdict if v is not Verdict.PASS},
}

#: The smallest effect (top-1 points) that counts as a shortcut: a model that reads names
#: on every strip image loses far more; an honest road cue costs a few points at most.
EFFECT = 0.05
#: Without strip images, an effect this large is more than the scene in a band explains
#: (the simulator's road cost 5.7 points beyond the sky).
UNSTRIPPED_EFFECT = 0.15
HEAT_RATIO = 2.0
HEAT_SHARE = 0.25

NEXT_STEPS = {
    Verdict.SHORTCUT: "retrain with `geotag train --mask-bottom 0.1` (the band's fraction), or "
    "rescrape with `--source outdoor` to leave user photospheres out; then audit again",
    Verdict.SUSPECT: "look at the contact sheet and the per-class figures; if the band carries "
    "names or logos, retrain with --mask-bottom or filter those images",
    Verdict.INCONCLUSIVE: "audit more held-out strip images: train every fold (`geotag train "
    "--fold all`) so that each image is held out once, or pass a larger test set with --images",
    Verdict.PASS: "no sign of a shortcut in this band; audit other bands (--band top:0.1) to be "
    "sure",
}


def decide(ablation: Ablation | None, mask: str | None = None) -> tuple[Verdict, list[str]]:
    """The model's verdict and the reasons behind it, one line each. ``ablation`` None means
    the run's own ``mask`` blanks the whole band."""
    # Imported here: --help reads FAIL_ON from this module and must not load numpy.
    from geotag.explain.ablation import RULE_OF_THREE
    from geotag.explain.strata import STRIP, STRIP_FREE

    if ablation is None:
        return Verdict.PASS, [
            f"the band is blanked at input (the run's mask {mask} covers it): the model "
            "cannot read it"
        ]
    strip = ablation.strata.get(STRIP)
    if strip is None:
        return _without_strips(ablation.strata[STRIP_FREE])
    reasons: list[str] = []
    effect = strip.effect
    band_only = strip.conditions["band_only"]
    reads_band = effect.ci[0] > 0
    band_informs = band_only.accuracy_ci[0] > strip.baseline
    where = f"on the {strip.images} strip images ({strip.panoramas} panoramas)"
    if reads_band:
        reasons.append(
            f"{where}, blanking the band costs {strip.drop_band.value:.1%} and the control "
            f"{strip.drop_control.value:.1%}: effect {effect.value:.1%} (95% CI "
            f"{effect.ci[0]:.1%} to {effect.ci[1]:.1%})"
        )
    if band_informs:
        reasons.append(
            f"{where}, the band alone scores {band_only.accuracy:.1%} top-1 against "
            f"{strip.blank_accuracy:.1%} for a blank picture and {strip.majority_accuracy:.1%} "
            "for the commonest training cell"
        )
    if reads_band and effect.value >= EFFECT:
        return Verdict.SHORTCUT, reasons
    reasons += _heat_signs(strip.heat, "strip images")
    if reasons:
        return Verdict.SUSPECT, reasons
    bound = max(effect.ci[1], RULE_OF_THREE / strip.panoramas)
    if bound >= EFFECT:
        return Verdict.INCONCLUSIVE, [
            f"no sign of a shortcut {where}, but an effect of up to {bound:.1%} cannot be "
            f"ruled out, against the {EFFECT:.0%} that counts (this sample finds an effect "
            f"of {strip.detectable:.1%} four times in five)"
        ]
    return Verdict.PASS, []


def _without_strips(official: Stratum) -> tuple[Verdict, list[str]]:
    """No audited image carries a strip: the band holds only the scene."""
    note = (
        f"none of the {official.images} audited images carries a photographer strip (by "
        "copyright or by look): the band holds only the scene"
    )
    effect = official.effect
    if effect.ci[0] > 0 and effect.value >= UNSTRIPPED_EFFECT:
        return Verdict.SUSPECT, [
            note,
            f"yet blanking it costs {effect.value:.1%} beyond the control (95% CI "
            f"{effect.ci[0]:.1%} to {effect.ci[1]:.1%}), more than scene content explains: "
            "look at what the band holds",
        ]
    return Verdict.PASS, [note]


def _heat_signs(heat: dict[str, Any], where: str) -> list[str]:
    signs = []
    mean_mass = (heat.get("band_mass") or {}).get("mean")
    ratio = mean_mass / heat["area_share"] if mean_mass is not None else 0.0
    if ratio >= HEAT_RATIO:
        signs.append(f"on {where}, mean heat in the band is {ratio:.1f}x its area share")
    if (heat.get("share_above") or 0.0) >= HEAT_SHARE:
        signs.append(
            f"{heat['share_above']:.0%} of {where} put over {HEAT_RATIO:g}x heat in the band"
        )
    classes = heat.get("classes") or {}
    if (classes.get("share_above") or 0.0) >= HEAT_SHARE:
        signs.append(f"on {where}, {classes['share_above']:.0%} of classes look mostly at the band")
    return signs


def data_warning(leak: dict[str, Any] | None) -> str | None:
    """One line when the images' copyright strings predict their cell, else None."""
    if leak is None or not leak.get("leaks"):
        return None
    return (
        f"the copyright strings predict the cell ({leak['accuracy']:.1%} vs baseline "
        f"{leak['baseline']:.1%}): the data leaks location before any model sees it; keep "
        "photographer strips masked (or user photospheres out) in every model trained on it"
    )
