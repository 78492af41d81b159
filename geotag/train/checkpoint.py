"""What a run keeps: best weights as safetensors, and ``last.ckpt`` to resume from.

``last.ckpt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: nothing is unpickled, not even from our own files.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from geotag.atomic import atomic_path
from geotag.errors import DataError, first_line
from geotag.train.model import unwrap
from geotag.workspace import BEST_WEIGHTS, LAST_CHECKPOINT

BEST = BEST_WEIGHTS
LAST = LAST_CHECKPOINT


def save_best(model: torch.nn.Module, folder: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    target = folder / BEST
    with atomic_path(target) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return target


def load_best(model: torch.nn.Module, path: Path) -> None:
    """Load a run's safetensors weights into a model built from the run's config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"cannot read weights {path}: {exc}") from None
    try:
        unwrap(model).load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{path} does not fit the run's model: {first_line(exc)}") from None


def rng_state() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    saved: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(state), gauss],
    }
    if torch.cuda.is_available():
        saved["cuda"] = torch.cuda.get_rng_state_all()
    return saved


def restore_rng(saved: dict[str, Any]) -> None:
    torch.set_rng_state(saved["torch"])
    version, state, gauss = saved["python"]
    random.setstate((version, tuple(state), gauss))
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])


def save_last(folder: Path, state: dict[str, Any]) -> None:
    with atomic_path(folder / LAST) as tmp:
        torch.save(state, tmp)


def load_last(folder: Path) -> dict[str, Any]:
    path = folder / LAST
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path} is missing: this fold has nothing to resume from") from None
    except Exception as exc:  # a damaged pickle raises anything from EOFError to UnpicklingError
        raise DataError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise DataError(f"{path} is not a geotag checkpoint")
    return state
