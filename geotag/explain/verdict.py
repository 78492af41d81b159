"""PASS, SUSPECT or SHORTCUT: the audit's verdict from documented thresholds.

SHORTCUT: blanking the band costs at least ``EXCESS_DROP`` more top-1 accuracy than
    blanking an equal-area control band, with the 95% interval of that excess above zero,
    AND the band alone scores above chance (interval above chance). Both together mean
    the model reads the band and the band carries the answer.
SUSPECT: any one warning sign: the excess drop's interval is above zero but small; the
    band alone beats chance; or the heat looks at the band (mean band mass at least twice
    its area share, or at least a quarter of the images or of the classes above that).
PASS: none of these.

The verdict judges the model. Whether the copyright strings predict the cell is a finding
about the data, reported beside it (:func:`data_warning`): masking the band fixes a model
that reads it, but cannot stop the strings from leaking the location to whoever trains on
the same images, so the warning stays even when the model passes.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geotag.explain.report import Ablation


class Verdict(str, enum.Enum):
    """The audit's verdict, in order of severity: ``PASS < SUSPECT < SHORTCUT``."""

    PASS = "PASS"
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

EXCESS_DROP = 0.05
HEAT_RATIO = 2.0
HEAT_SHARE = 0.25

NEXT_STEPS = {
    Verdict.SHORTCUT: "retrain with `geotag train --mask-bottom 0.1` (the band's fraction), or "
    "rescrape with `--source outdoor` to leave user photospheres out; then audit again",
    Verdict.SUSPECT: "look at the contact sheet and the per-class figures; if the band carries "
    "names or logos, retrain with --mask-bottom or filter those images",
    Verdict.PASS: "no sign of a shortcut in this band; audit other bands (--band top:0.1) to be "
    "sure",
}


def decide(ablation: Ablation, heat: dict[str, Any]) -> tuple[Verdict, list[str]]:
    """The model's verdict and the reasons behind it, one line each."""
    reasons: list[str] = []
    excess_low, excess_high = ablation.excess_drop_ci
    band_only = ablation.conditions["band_only"]
    chance = ablation.chance
    reads_band = excess_low > 0
    big_excess = ablation.excess_drop >= EXCESS_DROP
    band_informs = band_only.accuracy_ci[0] > chance
    if reads_band:
        reasons.append(
            f"blanking the band costs {ablation.excess_drop:.1%} more accuracy than the "
            f"control band (95% CI {excess_low:.1%} to {excess_high:.1%})"
        )
    if band_informs:
        reasons.append(
            f"the band alone scores {band_only.accuracy:.1%} top-1 against chance {chance:.1%}"
        )
    if reads_band and big_excess and band_informs:
        return Verdict.SHORTCUT, reasons
    mean_mass = (heat.get("band_mass") or {}).get("mean")
    ratio = mean_mass / heat["area_share"] if mean_mass is not None else 0.0
    if ratio >= HEAT_RATIO:
        reasons.append(f"mean heat in the band is {ratio:.1f}x its area share")
    if (heat.get("share_above") or 0.0) >= HEAT_SHARE:
        reasons.append(f"{heat['share_above']:.0%} of images put over {HEAT_RATIO:g}x heat there")
    classes = heat.get("classes") or {}
    if (classes.get("share_above") or 0.0) >= HEAT_SHARE:
        reasons.append(f"{classes['share_above']:.0%} of classes look mostly at the band")
    return (Verdict.SUSPECT if reasons else Verdict.PASS), reasons


def data_warning(leak: dict[str, Any] | None) -> str | None:
    """One line when the images' copyright strings predict their cell, else None."""
    if leak is None or not leak.get("leaks"):
        return None
    return (
        f"the copyright strings predict the cell ({leak['accuracy']:.1%} vs baseline "
        f"{leak['baseline']:.1%}): the data leaks location before any model sees it; keep "
        "photographer strips masked (or user photospheres out) in every model trained on it"
    )
