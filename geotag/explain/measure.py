"""The audit's measurements: one fold's model on the images it held out.

For every image: how much of its Grad-CAM heat falls in the band, whether its top cell is
right (and how far off) with the full picture, the band blanked, the control band blanked
and only the band kept, and whether the model's answer to a blank picture would be right.
:func:`summarise` turns the rows of every fold into the report's per-stratum ablation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.explain import ablation, heat
from geotag.explain.strata import STRATA

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from geotag.explain.report import Ablation
    from geotag.progress import Progress
    from geotag.train.bands import Band
    from geotag.train.classes import ClassMap
    from geotag.train.data import Preprocessing

CONTACT_SHEET = 18
#: The masking conditions besides the full picture: (band to blank, keep only the band).
MASKINGS = {"band_blanked": False, "control_blanked": False, "band_only": True}


def picture(tensor: torch.Tensor, pre: Preprocessing) -> np.ndarray:
    """The model's input back as the uint8 RGB picture it saw."""
    mean = np.asarray(pre.mean)[:, None, None]
    std = np.asarray(pre.std)[:, None, None]
    pixels = (tensor.detach().cpu().numpy() * std + mean).clip(0, 1)
    return (pixels.transpose(1, 2, 0) * 255).round().astype(np.uint8)


@dataclass
class HeatPictures:
    """What the audit's pictures are drawn from: the mean map, the mean map per class and
    the images with the most heat in the band, gathered image by image."""

    size: int
    measured: int = 0
    mean_map: np.ndarray = field(init=False)
    per_class: dict[int, np.ndarray] = field(default_factory=dict)
    per_class_count: dict[int, int] = field(default_factory=dict)
    #: (band mass, picture, map, caption, path), hottest first
    hottest: list[tuple[float, np.ndarray, np.ndarray, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mean_map = np.zeros((self.size, self.size))

    def add(self, mass: float, image: np.ndarray, cam: np.ndarray, cell: int, path: str) -> None:
        self.measured += 1
        self.mean_map += cam
        self.per_class[cell] = self.per_class.get(cell, 0) + cam
        self.per_class_count[cell] = self.per_class_count.get(cell, 0) + 1
        self.hottest.append((mass, image, cam, f"cell {cell}, {mass:.0%} in band", path))
        self.hottest = sorted(self.hottest, key=lambda t: -t[0])[:CONTACT_SHEET]


def measure_fold(
    model: torch.nn.Module,
    classes: ClassMap,
    frame: pd.DataFrame,
    root: Path,
    pre: Preprocessing,
    *,
    heat_band: Band,
    band: Band | None,
    majority_cell: int,
    method: str,
    layer: str | None,
    batch_size: int,
    device: torch.device,
    pictures: HeatPictures,
    progress: Progress,
) -> pd.DataFrame:
    """``frame`` (held out of this model's fold) with the audit's columns added: ``mass``
    and ``hit`` (heat in ``heat_band``), then per condition ``correct_<name>`` and
    ``km_<name>``, ``blank_correct`` and ``majority_correct`` (whether the image lies in
    ``majority_cell``, the commonest cell of the fold's training images). ``band`` None (the
    run's mask covers the band) measures the full picture only."""
    from geotag.evaluate.inference import class_probabilities
    from geotag.explain.cam import compute_cams
    from geotag.train.bands import Band
    from geotag.train.data import EpochSampler, ImageDataset, build_transform, make_loader

    paths = [str(p) for p in frame["path"]]
    views = [(p,) for p in paths]
    count = len(paths)
    masses = np.full(count, np.nan)
    hits = np.zeros(count, dtype=bool)
    # The CAM pass's own forward gives the full picture's answers: no second pass for them.
    scored = {"full": np.full((count, len(classes)), 1.0 / len(classes))}
    dataset = ImageDataset(root, views, [0] * count, pre, build_transform(pre, False))
    loader = make_loader(
        dataset, EpochSampler(count, shuffle=False, seed=0), batch_size, 0, training=False
    )
    cells = frame["cell_id"].to_numpy()
    progress.start("Grad-CAM over held-out images", count)
    for batch in loader:
        if len(batch.indices) == 0:
            continue
        result = compute_cams(model, batch.images, None, method, layer)
        rows = batch.indices.numpy()
        masses[rows] = heat.band_mass(result.maps, heat_band)
        hits[rows] = heat.pointing_game(result.maps, heat_band)
        scored["full"][rows] = result.probabilities
        for row, index in enumerate(rows):
            if not result.all_zero[row]:
                pictures.add(
                    float(masses[index]), picture(batch.images[row], pre), result.maps[row],
                    int(cells[index]), paths[index],
                )  # fmt: skip
        progress.advance(len(rows))

    if band is not None:
        for name, keep_only in MASKINGS.items():
            blank = band.opposite() if name == "control_blanked" else band
            probs, ok = class_probabilities(
                [model], root, views, pre, blank=blank, keep_only=keep_only,
                batch_size=batch_size, device=device, progress=progress,
                task=f"ablation: {name.replace('_', ' ')}",
            )  # fmt: skip
            scored[name] = np.where(ok[:, None], probs, 1.0 / len(classes))
    # The model's answer to a picture with nothing in it (every pixel the mean colour).
    empty, _ = class_probabilities(
        [model], root, views[:1], pre, blank=Band("bottom", 0.0), keep_only=True, device=device
    )
    true_class = classes.index_of(frame["cell_id"])
    centre_lat, centre_lon = classes.centres()
    columns: dict[str, Any] = {
        "mass": masses,
        "hit": hits,
        "blank_correct": true_class == int(empty[0].argmax()),
        "majority_correct": cells == majority_cell,
    }
    for name, probs in scored.items():
        correct, errors = ablation.correct_and_errors(
            probs, true_class, frame["lat"].to_numpy(), frame["lon"].to_numpy(), centre_lat,
            centre_lon,
        )  # fmt: skip
        columns[f"correct_{name}"] = correct
        columns[f"km_{name}"] = errors
    return frame.assign(**columns)


def summarise(
    measured: pd.DataFrame,
    band: Band,
    area_share: float,
    available: dict[str, int],
    *,
    seed: int,
    resamples: int = ablation.BOOTSTRAP,
) -> Ablation:
    """Per stratum and over every image: the ablation's figures and the heat's. ``measured``
    holds :func:`measure_fold`'s rows with ``stratum``, ``by_copyright`` and ``group``;
    ``available`` the held-out images per stratum, which the row over every image is
    weighted back to (strip images are drawn first)."""
    from geotag import contracts
    from geotag.explain.report import Ablation

    audited = measured["stratum"].value_counts()
    total = sum(available.values())
    weight = measured["stratum"].map(
        lambda name: available[name] / total / (audited[name] / len(measured))
    )

    def figures(rows: pd.DataFrame, weights: np.ndarray | None = None) -> dict[str, Any]:
        figs = ablation.stratum_figures(
            {c: rows[f"correct_{c}"].to_numpy() for c in ablation.CONDITIONS},
            {c: rows[f"km_{c}"].to_numpy() for c in ablation.CONDITIONS},
            rows["group"].to_numpy(), rows["blank_correct"].to_numpy(),
            rows["majority_correct"].to_numpy(), weights=weights, seed=seed,
            resamples=resamples,
        )  # fmt: skip
        figs["by_copyright"] = int(rows["by_copyright"].sum())
        figs["heat"] = heat.heat_summary(
            rows["mass"].to_numpy(), area_share, grid_cells(rows),
            hits=rows["hit"].to_numpy(),
        )  # fmt: skip
        return figs

    strata = {
        name: figures(measured[measured["stratum"] == name])
        for name in STRATA
        if (measured["stratum"] == name).any()
    }
    data = {
        "band": str(band),
        "control": str(band.opposite()),
        "bootstrap": resamples,
        "level": ablation.LEVEL,
        "strata": strata,
        "pooled": figures(measured, weight.to_numpy(dtype=np.float64)),
    }
    return contracts.parse(Ablation, data, "the masking ablation")


def grid_cells(frame: pd.DataFrame) -> np.ndarray:
    """The images' workspace grid cells: what per-cell figures count by across folds (whose
    own cells, under ``--cells adaptive``/``admin``, differ); ``cell_id`` without them."""
    return frame["grid_cell" if "grid_cell" in frame.columns else "cell_id"].to_numpy()
