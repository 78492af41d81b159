"""A run with fresh (untrained) weights, written as ``geotag train`` would: what the
predict and explain benchmarks time, without minutes of training first.

Its ``folds.csv`` puts every image of the workspace in fold 1, so that fold 0 (the one
"trained") counts them all as its training images, as the audit's baselines need."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geotag import __version__
from geotag.dataset import read_images
from geotag.train.checkpoint import save_best
from geotag.train.data import preprocessing_for
from geotag.train.folds import write_folds
from geotag.train.model import create_classifier
from geotag.train.runs import RunConfig, write_config
from geotag.workspace import Workspace


def write_untrained_run(
    ws: Workspace,
    model_name: str,
    size: int,
    cell_ids: Sequence[int],
    centre_lat: Sequence[float],
    centre_lon: Sequence[float],
    name: str = "bench",
) -> torch.nn.Module:
    """Seeded weights for one fold, a config.json, a folds.csv and the model itself (in
    eval mode)."""
    torch.manual_seed(0)
    model = create_classifier(model_name, len(cell_ids), pretrained=False).eval()
    run = ws.run_folder(name)
    run.fold_dir(0).mkdir(parents=True)
    save_best(model, run.fold_dir(0), {"model": model_name})
    write_config(
        run,
        RunConfig(
            model=model_name,
            views=1,
            classes=tuple(int(c) for c in cell_ids),
            centre_lat=tuple(float(v) for v in centre_lat),
            centre_lon=tuple(float(v) for v in centre_lon),
            preprocessing=preprocessing_for(model, size, None).to_json(),
            folds_trained=(0,),
            geotag_version=__version__,
        ),
    )
    images = read_images(ws)
    write_folds(run.folds_path, images["path"], images["pano_id"], [1] * len(images))
    return model
