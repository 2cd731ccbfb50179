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
    "PoolingConfig": "activations",
    "pooled_activations": "activations",
    "Corpus": "corpus",
    "Record": "corpus",
    "load_corpus": "corpus",
    "Edit": "edits",
    "build_edits": "edits",
    "random_direction": "edits",
    "SteerlabError": "errors",
    "Gate": "gate",
    "TokenGate": "gate",
    "gate_for": "gate",
    "token_gate_for": "gate",
    "read_gate": "gate",
    "generate_gated": "gate",
    "calibrate_gates": "gate",
    "ExtractConfig": "extraction",
    "extract": "extraction",
    "GenerationConfig": "generation",
    "generate": "generation",
    "steering": "interventions",
    "LoadedModel": "models",
    "load_model": "models",
    "wrap_model": "models",
    "Family": "family",
    "resolve_family": "family",
    "READERS": "readers",
    "evaluate_reader": "reader_choice",
    "read_texts": "readers",
    "Comparison": "comparison",
    "compare": "comparison",
    "EmotionVectors": "vectors",
    "load_vectors": "vectors",
    "save_vectors": "vectors",
    "shipped_vectors": "vectors",
}


def lazy_names(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``name`` from ``package.<homes[name]>`` on first use and keeps it."""

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f"{package}.{homes[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


__getattr__ = lazy_names(__name__, _HOMES)


__all__ = sorted(_HOMES)  # the public names: the keys of the one table above

if TYPE_CHECKING:  # the same names, eagerly, for type checkers (tests/test_house.py keeps them equal)
    from .activations import PoolingConfig, pooled_activations
    from .comparison import Comparison, compare
    from .corpus import Corpus, Record, load_corpus
    from .edits import Edit, build_edits, random_direction
    from .errors import SteerlabError
    from .extraction import ExtractConfig, extract
    from .family import Family, resolve_family
    from .gate import Gate, TokenGate, calibrate_gates, gate_for, generate_gated, read_gate, token_gate_for
    from .generation import GenerationConfig, generate
    from .interventions import steering
    from .models import LoadedModel, load_model, wrap_model
    from .reader_choice import evaluate_reader
    from .readers import READERS, read_texts
    from .vectors import EmotionVectors, load_vectors, save_vectors, shipped_vectors
