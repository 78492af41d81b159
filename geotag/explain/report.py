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
from geotag.explain.verdict import Verdict


@contracts.contract
@dataclass(frozen=True)
class Condition:
    """Top-1 of the model on the audited images under one masking condition."""

    accuracy: float
    accuracy_ci: tuple[float, float]  # 95% paired bootstrap interval
    median_km: float


@contracts.contract
@dataclass(frozen=True)
class Ablation:
    """The masking ablation: the band blanked, an equal-area control blanked, the band
    alone, against the full image; differences with paired bootstrap intervals."""

    images: int
    chance: float
    #: full, band_blanked, control_blanked, band_only
    conditions: dict[str, Condition]
    drop_band: float
    drop_band_ci: tuple[float, float]
    drop_control: float
    drop_control_ci: tuple[float, float]
    #: How much more blanking the band costs than blanking the control.
    excess_drop: float
    excess_drop_ci: tuple[float, float]
    bootstrap: int
    level: float
    band: str = ""
    control: str = ""


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
    fold: int
    images: int
    method: str
    band: str
    thresholds: dict[str, float]
    heat: dict[str, Any]  # heat.heat_summary's figures
    most_band_heat: tuple[BandHeat, ...]  # the contact sheet's images, hottest first
    ablation: Ablation
    metadata: dict[str, Any] | None  # metadata.copyright_leak's figures

    def to_json(self) -> dict[str, object]:
        return contracts.to_json(self)

    @classmethod
    def read(cls, path: Path) -> AuditReport:
        return contracts.read(cls, path)

    def markdown(self, pictures: list[str]) -> str:
        """audit.md: the verdict, its reasons and the figures behind them."""
        a = self.ablation
        h = self.heat
        lines = [
            f"# Shortcut audit of run `{self.run}`: **{self.verdict}**",
            "",
            f"Band `{self.band}`, control `{a.control}`, {self.images} held-out "
            f"images of fold {self.fold}, {self.method}.",
            "",
            *(f"- {r}" for r in self.reasons or ["no warning sign in the model"]),
            "",
            *([f"**Data:** {self.data_warning}.", ""] if self.data_warning else []),
            f"**Next:** {self.next_step}.",
            "",
            "## Masking ablation (top-1, 95% paired bootstrap intervals)",
            "",
            "| condition | top-1 | interval | median km |",
            "|---|---:|---|---:|",
            *(
                f"| {name.replace('_', ' ')} | {c.accuracy:.1%} | "
                f"{c.accuracy_ci[0]:.1%} to {c.accuracy_ci[1]:.1%} | {c.median_km:,.0f} |"
                for name, c in a.conditions.items()
            ),
            "",
            f"Chance {a.chance:.1%}. Blanking the band costs {a.drop_band:.1%}, the control "
            f"{a.drop_control:.1%}; excess {a.excess_drop:.1%} "
            f"({a.excess_drop_ci[0]:.1%} to {a.excess_drop_ci[1]:.1%}).",
            "",
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
        lines += ["## Pictures", "", *(f"![{p}]({p})" for p in pictures), ""]
        return "\n".join(lines)
