"""``audit.json`` and ``audit.md``: what the shortcut audit found, as one typed contract.

The lower modules compute the figures (:mod:`~geotag.explain.heat`,
:mod:`~geotag.explain.ablation`, :mod:`~geotag.explain.metadata`); :class:`AuditReport`
is how they are written, read back (the demo's story) and shown, with the verdict of
:mod:`~geotag.explain.verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geotag import contracts
from geotag.explain.strata import STRIP, TITLES
from geotag.explain.verdict import EFFECT, HEAT_RATIO, HEAT_SHARE, UNSTRIPPED_EFFECT, Verdict


@contracts.contract
@dataclass(frozen=True)
class Condition:
    """Top-1 of the model on a stratum's images under one masking condition."""

    accuracy: float
    accuracy_ci: tuple[float, float]  # 95% paired bootstrap interval over panoramas
    median_km: float


@contracts.contract
@dataclass(frozen=True)
class Estimate:
    value: float
    ci: tuple[float, float]  # 95% paired bootstrap interval over panoramas


@contracts.contract
@dataclass(frozen=True)
class Stratum:
    """The masking ablation on one stratum's images (see :mod:`~geotag.explain.ablation`)."""

    images: int
    panoramas: int
    by_copyright: int  # images placed here by their copyright; the rest by their look
    #: full, band_blanked, control_blanked, band_only
    conditions: dict[str, Condition]
    drop_band: Estimate  # top-1 lost when the band is blanked
    drop_control: Estimate  # top-1 lost when the control band is blanked
    excess: Estimate  # drop_band - drop_control
    #: drop_band - max(drop_control, 0): the figure the verdict rests on.
    effect: Estimate
    #: The smallest effect this sample finds four times in five (or vouches against).
    detectable: float
    blank_accuracy: float  # the model's answer to a blank picture, scored on these images
    majority_accuracy: float  # the training images' commonest cell, scored on these images
    heat: dict[str, Any]  # heat.heat_summary's figures on these images

    @property
    def baseline(self) -> float:
        """What the model reaches with no band at all: the band alone must beat this."""
        return max(self.blank_accuracy, self.majority_accuracy)


@contracts.contract
@dataclass(frozen=True)
class Ablation:
    """The audited band, its control, and the ablation per stratum and over all images."""

    band: str
    control: str
    bootstrap: int
    level: float
    strata: dict[str, Stratum]  # strip, strip_free; a stratum without images is left out
    #: Every audited image, weighted back to the held-out set's share of strip images: what
    #: a pooled audit would see. For reference, never for the verdict.
    pooled: Stratum


@contracts.contract
@dataclass(frozen=True)
class BandHeat:
    path: str
    band_mass: float


@contracts.contract
@dataclass(frozen=True)
class AuditReport:
    verdict: Verdict
    reasons: tuple[str, ...]
    next_step: str
    data_warning: str | None  # a finding about the data, beside the model's verdict
    run: str
    folds: tuple[int, ...]  # each audited image is scored by the fold that held it out
    images: int
    #: Held-out images per stratum, audited or not: what more images could be drawn from.
    available: dict[str, int]
    rounds: int  # 1, or more when the audit drew more strip images to reach a verdict
    method: str
    band: str  # the band asked for
    mask: str | None  # the run's own mask, applied to every input
    audited_band: str | None  # the part of the band the mask leaves visible; None: none
    thresholds: dict[str, float]
    heat: dict[str, Any]  # heat.heat_summary's figures over every audited image
    most_band_heat: tuple[BandHeat, ...]  # the contact sheet's images, hottest first
    ablation: Ablation | None  # None when the run's mask covers the whole band
    strip_detector: dict[str, Any]  # strata.detector_agreement's figures
    metadata: dict[str, Any] | None  # metadata.copyright_leak's figures

    def to_json(self) -> dict[str, object]:
        return contracts.to_json(self)

    @classmethod
    def read(cls, path: Path) -> AuditReport:
        return contracts.read(cls, path)

    @property
    def headline(self) -> Stratum | None:
        """The stratum the verdict rests on: the strip images, when there are any."""
        return None if self.ablation is None else self.ablation.strata.get(STRIP)

    def markdown(self, pictures: list[str]) -> str:
        """audit.md: the verdict, its reasons, the figures behind them, what they can show."""
        lines = [
            f"# Shortcut audit of run `{self.run}`: **{self.verdict}**",
            "",
            f"Band `{self.band}`, {self.images} held-out images of fold(s) "
            f"{', '.join(map(str, self.folds))} (each scored by the model that never saw "
            f"it), {self.method}.",
            "",
            *(f"- {r}" for r in self.reasons or ["no warning sign in the model"]),
            "",
            *([f"**Data:** {self.data_warning}.", ""] if self.data_warning else []),
            f"**Next:** {self.next_step}.",
            "",
        ]
        if self.ablation is None:
            lines += [
                "## Masking ablation",
                "",
                f"Not run: the run's own mask `{self.mask}` blanks the band `{self.band}` in "
                "every image before the model sees it, so blanking it again changes nothing "
                "and the band alone is a blank picture. The model cannot read the band; that "
                "is the finding.",
                "",
            ]
        else:
            lines += self._ablation_lines(self.ablation)
        lines += _heat_lines(self.heat)
        lines += _detector_lines(self.strip_detector)
        leak = self.metadata
        if leak:
            lines += [
                "## Metadata",
                "",
                f"Copyright strings predict the cell with {leak['accuracy']:.1%} accuracy "
                f"(baseline {leak['baseline']:.1%}, p = {leak['p_value']:.3f}): "
                f"{'they leak the location' if leak['leaks'] else 'no leak'}.",
                "",
            ]
        lines += [*_RULE, "## Pictures", "", *(f"![{p}]({p})" for p in pictures), ""]
        return "\n".join(lines)

    def _ablation_lines(self, a: Ablation) -> list[str]:
        masked = (
            f" The run's mask `{self.mask}` covers part of it; the audit tests the part left "
            f"visible, `{a.band}`."
            if self.mask and a.band != self.band
            else ""
        )
        lines = [
            "## Masking ablation, per stratum",
            "",
            f"Band `{a.band}`, control `{a.control}` (the same area on the opposite side).{masked} "
            f"Top-1 with {a.level:.0%} intervals from {a.bootstrap} paired bootstrap draws of "
            "panoramas (the headings of one place are not independent).",
            "",
            "| stratum | images | panoramas | full | band blanked | control blanked | "
            "band alone | blank picture | commonest training cell | band cost | control cost | "
            "effect (interval) | detectable |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, s in [*a.strata.items(), ("all images, weighted", a.pooled)]:
            c = s.conditions
            lines.append(
                f"| {TITLES.get(name, name)} | {s.images} | {s.panoramas} | "
                f"{c['full'].accuracy:.1%} | {c['band_blanked'].accuracy:.1%} | "
                f"{c['control_blanked'].accuracy:.1%} | {c['band_only'].accuracy:.1%} | "
                f"{s.blank_accuracy:.1%} | {s.majority_accuracy:.1%} | "
                f"{s.drop_band.value:+.1%} | {s.drop_control.value:+.1%} | "
                f"{s.effect.value:+.1%} ({s.effect.ci[0]:+.1%} to {s.effect.ci[1]:+.1%}) | "
                f"{s.detectable:.1%} |"
            )
        return [
            *lines,
            "",
            "The verdict rests on the strip stratum alone. The strip-free stratum is the "
            "reference for what the band honestly carries (road, kerb, car): it is shown "
            "beside the headline, never subtracted from it, because on a strip image the strip "
            "*replaces* that content. The last row is every audited image weighted back to the "
            "held-out set's share of strip images (the audit draws strip images first): what a "
            "pooled audit would see, where a minority that reads the strip barely moves it.",
            "",
        ]


_RULE = [
    "## How the verdict is reached",
    "",
    "- **Effect** = band cost - max(control cost, 0), on the strip images: what blanking "
    "the band costs beyond what blanking the same area opposite costs, never more than the "
    "band's own cost (a control whose blanking helps must not make an unused band look "
    "read).",
    f"- **SHORTCUT**: effect at least {EFFECT:.0%} with its interval above zero. On a strip "
    "image the strip replaces the band's scene, so that cost is what the strip was worth "
    "to the model. Whether the band alone beats what the model answers with no picture "
    "(its answer to a blank picture, its training images' commonest cell) is shown beside "
    "it, not required: a model may read the strip only together with the scene.",
    "- **SUSPECT**: any one sign: the effect's interval is above zero but the effect is small; "
    f"the band alone beats those baselines; Grad-CAM puts at least {HEAT_RATIO:g}x the band's "
    f"area share of heat in it on average, or on at least {HEAT_SHARE:.0%} of the images or "
    f"classes. Without strip images: the band costs at least {UNSTRIPPED_EFFECT:.0%} beyond "
    "the control on official images, more than scene content explains.",
    f"- **INCONCLUSIVE**: no sign, but the sample cannot rule out an effect of {EFFECT:.0%}: "
    "the upper end of the effect's interval reaches it, or 3 / panoramas does (the rule of "
    "three: no change seen in n panoramas rules out no more than that). The *detectable* "
    "column is the power at this size: 2.8 standard errors, the effect found four times in "
    "five.",
    "- **PASS**: none of these, and the sample could have seen it; or the run's own mask "
    "blanks the band; or no audited image carries a strip.",
    "",
    "What the figures cannot show: the control is the opposite band (sky above, road or "
    "strip below), so it measures what losing *some* of the picture costs, not what the "
    "band's honest content is worth; the strip-free row does that. A model could read the "
    "strip only together with the rest of the picture, so the band alone may score low "
    "while blanking it costs much. The audit tests one band; a watermark elsewhere needs "
    "its own `--band`.",
    "",
]


def _heat_lines(h: dict[str, Any]) -> list[str]:
    if not h.get("measured"):
        return [
            "## Heat in the band",
            "",
            "No Grad-CAM map carried any heat (the layer gets no gradient from the answer): no "
            "heat figures; try another `--layer`.",
            "",
        ]
    return [
        "## Heat in the band",
        "",
        f"The band is {h['area_share']:.0%} of the picture. Mean share of heat in it: "
        f"{(h['band_mass']['mean'] or 0):.1%}; images with more than {h['ratio']:g}x its "
        f"area share: {(h['share_above'] or 0):.1%}; classes where most images do: "
        f"{(h.get('classes', {}).get('share_above') or 0):.1%}. Pointing game: "
        f"{(h.get('pointing_game', {}).get('hit_rate') or 0):.1%} "
        f"(chance {h['area_share']:.1%}).",
        "",
    ]


def _detector_lines(d: dict[str, Any]) -> list[str]:
    if not d.get("compared"):
        return []
    return [
        "## Strip detector",
        "",
        f"Where an image has no copyright, its stratum comes from the look of its band. On "
        f"the {d['compared']} audited images that have one, the look agrees with the "
        f"copyright on {d['agreement']:.1%} ({d['missed_strips']} named photographer(s) "
        f"without a visible strip, {d['false_strips']} official image(s) that look striped).",
        "",
    ]
