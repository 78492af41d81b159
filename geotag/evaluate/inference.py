"""Class probabilities for images on disk, with a run's preprocessing and mask.

Shared by eval (one fold's model on its held-out images), predict (the folds' models
averaged) and the audit (the same images with a band blanked, or only a band kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Inference:
    """What models said of some samples: probabilities averaged over the models, which
    samples could be read, and (when asked) each model's pooled features."""

    probs: np.ndarray  # (N, K), NaN rows for unreadable samples
    ok: np.ndarray  # (N,) bool
    features: tuple[np.ndarray, ...] = ()  # per model, (N, F) float32, NaN where unreadable
    #: With ``class_maps`` or ``per_model``: per model, its own probabilities (N, K_i)
    #: (before mapping).
    model_probs: tuple[np.ndarray, ...] = ()


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
    done = infer(
        models, root, views, pre, blank=blank, keep_only=keep_only, batch_size=batch_size,
        workers=workers, device=device, progress=progress, task=task,
    )  # fmt: skip
    return done.probs, done.ok


@torch.no_grad()
def infer(
    models: Sequence[torch.nn.Module],
    root: Path,
    views: Sequence[Sequence[str]],
    pre: Preprocessing,
    *,
    features: bool = False,
    class_maps: Sequence[np.ndarray] | None = None,
    per_model: bool = False,
    blank: Band | None = None,
    keep_only: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | None = None,
    progress: Progress | None = None,
    task: str = "predicting",
) -> Inference:
    """:func:`class_probabilities`, and with ``features`` each model's pooled features
    from the same pass (the embeddings retrieval compares). Models with classes of their
    own (folds with their own cells) come with ``class_maps``: per model a (K_i, K) matrix
    sending its probabilities onto the K shared classes before they are averaged; each
    model's own probabilities are kept then, or when asked with ``per_model``."""
    from geotag.train.model import logits_and_features

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
    maps = None
    if class_maps is not None:
        if len(class_maps) != len(ready):
            raise ValueError(f"{len(class_maps)} class maps for {len(ready)} models")
        maps = [torch.as_tensor(m, dtype=torch.float32, device=device) for m in class_maps]
    if maps is not None:
        n_classes = int(maps[0].shape[1])
    else:
        n_classes = _classes(ready[0], dataset, device) if len(views) else 0
    probs = np.full((len(views), n_classes), np.nan, dtype=np.float32)
    ok = np.zeros(len(views), dtype=bool)
    pooled: list[np.ndarray | None] = [None] * len(ready)
    own: list[np.ndarray] = []
    if maps:
        own = [np.full((len(views), int(m.shape[0])), np.nan, np.float32) for m in maps]
    elif per_model:
        own = [np.full((len(views), n_classes), np.nan, np.float32) for _ in ready]
    progress.start(task, len(loader))
    for batch in loader:
        if len(batch.indices):
            images = batch.images.to(device, non_blocking=True)
            rows = batch.indices.numpy()
            total = torch.zeros((len(rows), n_classes), device=device)
            for i, model in enumerate(ready):
                if features:
                    logits, vectors = logits_and_features(model, images)
                    if pooled[i] is None:
                        pooled[i] = np.full((len(views), vectors.shape[1]), np.nan, np.float32)
                    pooled[i][rows] = vectors.float().cpu().numpy()  # type: ignore[index]
                else:
                    logits = model(images)
                p = torch.softmax(logits.float(), dim=1)
                if own:
                    own[i][rows] = p.cpu().numpy()
                if maps is not None:
                    p = p @ maps[i]
                total += p
            probs[rows] = (total / len(ready)).cpu().numpy()
            ok[rows] = True
        progress.advance()
    kept = tuple(p if p is not None else np.zeros((len(views), 0), np.float32) for p in pooled)
    return Inference(probs, ok, kept if features else (), tuple(own))


def _classes(model: torch.nn.Module, dataset: ImageDataset, device: torch.device) -> int:
    """The model's number of outputs, from its head (or one dummy forward pass)."""
    head = getattr(model, "num_classes", None)
    if isinstance(head, int) and head > 0:
        return head
    size = dataset.pre.input_size
    shape = (1, len(dataset.views[0]), 3, size, size) if dataset.multi_view else (1, 3, size, size)
    return int(model(torch.zeros(shape, device=device)).shape[1])
