"""steerlab: emotion vectors in open-weight language models — extract, scope, steer, validate.

The public API::

    from steerlab import load_model, load_vectors, steering, generate, read_texts
    lm = load_model()                                   # the embedded gemma-3-270m
    lm = wrap_model(model, tokenizer)                   # or a transformers model you already hold
    v = load_vectors("vectors/gemma-3-270m/emotions.safetensors")
    with steering(lm, v, add={"hopeful": 4}) as s:      # hooks live only inside the block
        ...
"""

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Names resolve on first use (PEP 562): `import steerlab` and the CLI's --help stay free of torch.
_HOMES = {
    "PoolingConfig": "model.activations",
    "pooled_activations": "model.activations",
    "Corpus": "core.corpus",
    "Record": "core.corpus",
    "load_corpus": "core.corpus",
    "Edit": "steer.edits",
    "build_edits": "steer.edits",
    "random_direction": "steer.edits",
    "SteerlabError": "core.errors",
    "Gate": "read.gate",
    "TokenGate": "read.gate",
    "gate_for": "read.gate",
    "token_gate_for": "read.gate",
    "read_gate": "read.gate",
    "generate_gated": "read.gate",
    "calibrate_gates": "read.gate",
    "ExtractConfig": "read.extraction",
    "extract": "read.extraction",
    "GenerationConfig": "steer.generation",
    "generate": "steer.generation",
    "steering": "steer.interventions",
    "LoadedModel": "model.models",
    "load_model": "model.models",
    "wrap_model": "model.models",
    "Family": "model.family",
    "resolve_family": "model.family",
    "READERS": "read.readers",
    "evaluate_reader": "read.reader_choice",
    "read_texts": "read.readers",
    "Comparison": "read.comparison",
    "compare": "read.comparison",
    "EmotionVectors": "core.vectors",
    "load_vectors": "core.vectors",
    "save_vectors": "core.vectors",
    "shipped_vectors": "core.vectors",
}


def lazy_names(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``name`` from ``package.<homes[name]>`` on first use and keeps it."""

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        home = homes[name]
        value = getattr(import_module(home if home.startswith("steerlab.") else f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


__getattr__ = lazy_names(__name__, _HOMES)


__all__ = sorted(_HOMES)  # the public names: the keys of the one table above

if TYPE_CHECKING:  # the same names, eagerly, for type checkers (tests/test_house.py keeps them equal)
    from steerlab.core.corpus import Corpus, Record, load_corpus
    from steerlab.core.errors import SteerlabError
    from steerlab.core.vectors import EmotionVectors, load_vectors, save_vectors, shipped_vectors
    from steerlab.model.activations import PoolingConfig, pooled_activations
    from steerlab.model.family import Family, resolve_family
    from steerlab.model.models import LoadedModel, load_model, wrap_model
    from steerlab.read.comparison import Comparison, compare
    from steerlab.read.extraction import ExtractConfig, extract
    from steerlab.read.gate import Gate, TokenGate, calibrate_gates, gate_for, generate_gated, read_gate, token_gate_for
    from steerlab.read.reader_choice import evaluate_reader
    from steerlab.read.readers import READERS, read_texts
    from steerlab.steer.edits import Edit, build_edits, random_direction
    from steerlab.steer.generation import GenerationConfig, generate
    from steerlab.steer.interventions import steering
