"""Data parallelism on torch.distributed: under ``torchrun`` every rank runs its share of the forward
passes, the pooled sums are added across ranks, and rank 0 writes what one process would write.

Pooling is split (:func:`activations.pooled_activations`: ``extract``, ``evaluate``, every reading) and
so is a suite's generation (:func:`validate.run.run_suite` shares its batches and gathers the
replies); ``steer`` runs whole on every rank. Backend: gloo on CPU, nccl on GPU, chosen from the device.
"""

from __future__ import annotations

import json
import os
from typing import Any

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
        moved = tensor.to(_device())
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        tensor.copy_(moved.cpu())
    return tensor


def gather_json(value: Any) -> list[Any]:
    """Every rank's JSON-serialisable ``value``, in rank order (sent as UTF-8 bytes, never pickled)."""
    size = world()[1]
    if size == 1:
        return [value]
    data = torch.tensor(list(json.dumps(value).encode()), dtype=torch.uint8, device=_device())
    lengths = [torch.zeros(1, dtype=torch.int64, device=_device()) for _ in range(size)]
    dist.all_gather(lengths, torch.tensor([data.numel()], device=_device()))
    longest = int(max(int(n.item()) for n in lengths))
    padded = torch.zeros(longest, dtype=torch.uint8, device=_device())
    padded[: data.numel()] = data
    chunks = [torch.zeros(longest, dtype=torch.uint8, device=_device()) for _ in range(size)]
    dist.all_gather(chunks, padded)
    return [json.loads(bytes(c[: int(n.item())].cpu().tolist()).decode()) for c, n in zip(chunks, lengths, strict=True)]


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
