"""Data-parallel training under ``torchrun``: who this process is and how ranks agree.

Without torchrun (no WORLD_SIZE > 1 in the environment) everything here is a no-op, so the
loop has one code path for one process and for many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: torch.device) -> Ranks:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Ranks(rank, world_size, local_rank)


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_all(values: list[float], ranks: Ranks) -> list[float]:
    """Element-wise sum of ``values`` over every rank."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def gather_all(items: list[Any], ranks: Ranks) -> list[Any]:
    """Every rank's ``items``, concatenated in rank order."""
    if not ranks.distributed:
        return items
    gathered: list[list[Any]] = [[] for _ in range(ranks.world_size)]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def agree(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank (e.g. a run name made from the clock)."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()
