"""Where the residual stream is read and written.

Convention (written into every vector file): "layer i" is the output of decoder block i, counted
from 0. In transformers' ``hidden_states`` tuple that is entry ``i + 1``; the last entry of that tuple
is taken *after* the final norm and is never used as a layer here.
"""

from __future__ import annotations

import torch

from steerlab.core.checks import check_layers as check_layers  # re-exported: its home is checks
from steerlab.core.checks import parse_layers as parse_layers

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
