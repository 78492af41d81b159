"""Where a model runs: ``--device auto|cpu|cuda|mps``, shared by train, eval, predict and explain.

The names import nothing; torch is imported only to resolve one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geotag.errors import InputError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` means here; ``auto`` prefers CUDA, then Apple's MPS."""
    import torch

    if name not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available here")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: Apple's Metal backend is not available here")
    return torch.device(name)
