"""Where the residual stream is read and written.

Convention (written into every vector file): "layer i" is the output of decoder block i, counted
from 0. In transformers' ``hidden_states`` tuple that is entry ``i + 1``; the last entry of that tuple
is taken *after* the final norm and is never used as a layer here.
"""

from __future__ import annotations

import torch

from .errors import InterventionError, SteerlabError

SITE = "block_output"
CONVENTION = "layer i = output of decoder block i (0-based) = hidden_states[i+1]; residual stream"


def block_tensor(output: object) -> torch.Tensor:
    """The hidden-state tensor of a decoder block's output.

    Newer transformers return a bare tensor, older ones a tuple whose first item is the tensor;
    indexing a bare tensor with ``[0]`` would silently take batch row 0.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected decoder block output type {type(output).__name__}")


def check_layers(layers: list[int], n_layers: int, what: str = "layer") -> list[int]:
    """The one range check of layer indices."""
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise InterventionError(f"{what} {layer} is out of range: use 0-{n_layers - 1}")
    return layers


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """Parse ``"6"``, ``"6-10"``, ``"3,5,7"`` or ``"all"`` into a checked list of layers."""
    text = spec.strip().lower()
    if text == "all":
        return list(range(n_layers))
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise SteerlabError(
            f"cannot parse layers {spec!r}: use a number (6), a range (6-10), a list (3,5) or 'all'"
        ) from None
    return check_layers(sorted(set(out)), n_layers)
