"""Data parallelism on torch.distributed: under ``torchrun`` every rank runs its share of the forward
passes, the pooled sums are added across ranks, and rank 0 writes what one process would write.

Only pooling is split (:func:`activations.pooled_activations`), so ``extract`` and ``evaluate`` scale
with the ranks; generation (``steer``, ``validate``) runs whole on every rank. Backend: gloo on CPU,
nccl on GPU, chosen from the device.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env() -> None:
    """Join the process group that ``torchrun`` describes in the environment (nothing otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (in place); each rank fills only its own rows, so the sum is the
    whole, exactly (adding zeros)."""
    if world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
