"""Class probabilities for images on disk, with a run's preprocessing and mask.

Shared by eval (one fold's model on its held-out images), predict (the folds' models
averaged) and the audit (the same images with a band blanked, or only a band kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from geotag.progress import NullProgress, Progress
from geotag.train.bands import Band
from geotag.train.data import (
    EpochSampler,
    ImageDataset,
    Preprocessing,
    build_transform,
    make_loader,
)


@torch.no_grad()
def class_probabilities(
    models: Sequence[torch.nn.Module],
    root: Path,
    views: Sequence[Sequence[str]],
    pre: Preprocessing,
    *,
    blank: Band | None = None,
    keep_only: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | None = None,
    progress: Progress | None = None,
    task: str = "predicting",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (N, K) for each sample (one path, or V views), averaged over
    ``models``; and a mask of the samples that could be read (unreadable rows are NaN)."""
    progress = progress or NullProgress()
    device = device or torch.device("cpu")
    dataset = ImageDataset(
        root,
        views,
        [0] * len(views),  # labels are not needed to predict
        pre,
        build_transform(pre, training=False),
        blank=blank,
        keep_only=keep_only,
    )
    loader = make_loader(
        dataset,
        EpochSampler(len(views), shuffle=False, seed=0),
        batch_size,
        workers,
        training=False,
        pin_memory=device.type == "cuda",
    )
    ready = []
    for model in models:
        ready.append(model.to(device).eval())
    n_classes = _classes(ready[0], dataset, device) if len(views) else 0
    probs = np.full((len(views), n_classes), np.nan, dtype=np.float32)
    ok = np.zeros(len(views), dtype=bool)
    progress.start(task, len(loader))
    for batch in loader:
        if len(batch.indices):
            images = batch.images.to(device, non_blocking=True)
            total = sum(torch.softmax(m(images).float(), dim=1) for m in ready)
            rows = batch.indices.numpy()
            probs[rows] = (total / len(ready)).cpu().numpy()  # type: ignore[union-attr]
            ok[rows] = True
        progress.advance()
    return probs, ok


def _classes(model: torch.nn.Module, dataset: ImageDataset, device: torch.device) -> int:
    """The model's number of outputs, from its head (or one dummy forward pass)."""
    head = getattr(model, "num_classes", None)
    if isinstance(head, int) and head > 0:
        return head
    size = dataset.pre.input_size
    shape = (1, len(dataset.views[0]), 3, size, size) if dataset.multi_view else (1, 3, size, size)
    return int(model(torch.zeros(shape, device=device)).shape[1])
