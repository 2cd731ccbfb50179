"""Export an emotion as a llama.cpp control vector (GGUF), with the α unit folded in.

llama.cpp's format: a GGUF with architecture ``controlvector`` and one 1-D F32 tensor
``direction.{k}`` per layer, all of the model's hidden size; ``direction.k`` is added to the output of
block k (0-based), which is steerlab's layer k, at every position. Block 0's output cannot be steered
there (``direction.0`` is refused by its loader), so layer 0 is refused here. llama.cpp multiplies the
file by ``--control-vector-scaled FILE S``; with S = 1 the edit is steerlab's ``add`` at that α, except
that llama.cpp also edits special tokens (BOS, template markers), which steerlab never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steerlab.core.errors import SteerlabError
from steerlab.core.files import atomic_write
from steerlab.core.vectors import EmotionVectors
from steerlab.steer.edits import add_edit

ARCH = "controlvector"


def control_vector(
    vectors: EmotionVectors, emotion: str, alpha: float, layers: Sequence[int] | None = None
) -> dict[int, np.ndarray]:
    """{layer: alpha * alpha_unit[layer] * direction} for llama.cpp (default: the steering layer)."""
    chosen = vectors.layers_for_steering(layers)
    for layer in chosen:
        vectors.check_layer(layer)
        if layer == 0:
            raise SteerlabError("llama.cpp cannot steer layer 0 (the output of block 0): choose layers >= 1")
    out = {}
    for layer in sorted(set(chosen)):
        edit = add_edit(vectors, layer, vectors.direction(emotion, layer), alpha, emotion)
        out[layer] = (edit.value * edit.direction).float().numpy().astype(np.float32)
    return out


def write_control_vector(
    path: str | Path, vectors: EmotionVectors, emotion: str, alpha: float, layers: Sequence[int] | None = None
) -> Path:
    """Write ``path`` (.gguf) atomically; the steerlab.* keys say what it holds (llama.cpp ignores them)."""
    import gguf

    path = Path(path)
    if path.suffix != ".gguf":
        raise SteerlabError(f"--out {str(path)!r} must end in .gguf")
    directions = control_vector(vectors, emotion, alpha, layers)

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_string(f"{ARCH}.model_hint", str(vectors.meta.get("model_spec", "")))
        writer.add_uint32(f"{ARCH}.layer_count", len(directions))
        writer.add_string("steerlab.emotion", emotion)
        writer.add_float32("steerlab.alpha", float(alpha))
        writer.add_string("steerlab.model_id", str(vectors.meta.get("model_id", "")))
        writer.add_string("steerlab.layer_convention", "direction.k = steerlab layer k = output of block k (0-based)")
        for layer, vector in directions.items():
            writer.add_tensor(f"direction.{layer}", vector)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    return path
