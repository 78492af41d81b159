"""Who took each photo: the audit's strata.

In the study geotag grew from, the photographer's name was printed on user-contributed
panoramas only, a minority of the data. Averaged over every image, a model that reads the
name on each of those looks like a model that barely uses the band; within them it cannot
hide. So the audit splits its images in two:

- ``strip``: user-contributed, where a photographer strip is printed: a copyright that
  names someone (not "© Google", see :mod:`~geotag.explain.metadata`);
- ``strip_free``: official images, whose band holds only the scene (road, car, kerb).

An image without a copyright (imported photos, a test set without metadata) is placed by
what its band looks like (:mod:`~geotag.explain.strip`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.explain.metadata import is_generic, normalise_copyright

if TYPE_CHECKING:
    from geotag.train.bands import Band

STRIP = "strip"
STRIP_FREE = "strip_free"
STRATA = (STRIP, STRIP_FREE)
#: How each stratum is named in reports.
TITLES = {STRIP: "with a strip (user-contributed)", STRIP_FREE: "without (official)"}


def strip_by_copyright(values: Sequence[object]) -> list[bool | None]:
    """Per copyright string: True when it names a photographer, False when it is official
    ("© Google"), None when there is none to go by."""
    verdicts: list[bool | None] = []
    for value in values:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        if missing or not str(value).strip():
            verdicts.append(None)
        else:
            verdicts.append(not is_generic(normalise_copyright(value)))
    return verdicts


@dataclass(frozen=True)
class Strata:
    """Each image's stratum, and whether its copyright or its look put it there."""

    labels: np.ndarray  # str, STRIP or STRIP_FREE
    by_copyright: np.ndarray  # bool

    def rows(self, stratum: str) -> np.ndarray:
        return np.asarray(self.labels == stratum)


def assign_strata(copyrights: Sequence[object], paths: Sequence[Path], band: Band) -> Strata:
    """Strata from the copyright where there is one, else from the look of the band
    (only those images are opened)."""
    from geotag.explain.strip import strips_by_look

    named = strip_by_copyright(copyrights)
    unknown = [i for i, v in enumerate(named) if v is None]
    looks = strips_by_look([paths[i] for i in unknown], band) if unknown else np.zeros(0, bool)
    strip = np.array([bool(v) for v in named], dtype=bool)
    strip[unknown] = looks
    labels = np.where(strip, STRIP, STRIP_FREE)
    return Strata(labels, np.array([v is not None for v in named], dtype=bool))


def detector_agreement(
    copyrights: Sequence[object], paths: Sequence[Path], band: Band
) -> dict[str, Any]:
    """How often the look of the band agrees with the copyright, on images that have one:
    a check that the look can be trusted where it is all there is."""
    from geotag.explain.strip import strips_by_look

    named = strip_by_copyright(copyrights)
    known = [i for i, v in enumerate(named) if v is not None]
    if not known:
        return {"compared": 0, "agreement": None, "missed_strips": 0, "false_strips": 0}
    truth = np.array([bool(named[i]) for i in known])
    looks = strips_by_look([paths[i] for i in known], band)
    return {
        "compared": len(known),
        "agreement": float((looks == truth).mean()),
        "missed_strips": int((truth & ~looks).sum()),
        "false_strips": int((~truth & looks).sum()),
    }


def draw_panoramas(groups: Sequence[str], labels: np.ndarray, seed: int) -> dict[str, list[str]]:
    """Per stratum, its panoramas in a seeded random order: the order the audit draws them
    in. A panorama belongs to the stratum of most of its images."""
    import pandas as pd

    table = pd.DataFrame({"group": list(groups), "strip": np.asarray(labels) == STRIP})
    share = table.groupby("group", sort=True)["strip"].mean()
    rng = np.random.default_rng(seed)
    drawn: dict[str, list[str]] = {}
    for name, members in ((STRIP, share[share >= 0.5]), (STRIP_FREE, share[share < 0.5])):
        order = rng.permutation(len(members))
        drawn[name] = [str(members.index[i]) for i in order]
    return drawn


def take(queue: list[str], sizes: dict[str, int], budget: int) -> tuple[list[str], list[str]]:
    """Whole panoramas from the front of ``queue`` while their images fit in ``budget`` (a
    positive budget takes at least one, however large); and the rest of the queue."""
    taken: list[str] = []
    used = 0
    for position, group in enumerate(queue):
        if used + sizes[group] > budget and (taken or budget <= 0):
            return taken, queue[position:]
        taken.append(group)
        used += sizes[group]
    return taken, []
