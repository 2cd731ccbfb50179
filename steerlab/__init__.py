"""steerlab: emotion vectors in open-weight language models — extract, scope, steer, validate.

The public API::

    from steerlab import load_model, load_vectors, steering, generate, read_texts
    lm = load_model()                                   # the embedded gemma-3-270m
    v = load_vectors("vectors/gemma-3-270m/emotions.safetensors")
    with steering(lm, v, add={"hopeful": 4}) as s:      # hooks live only inside the block
        ...
"""

__version__ = "0.1.0"

from .activations import PoolingConfig, pooled_activations
from .corpus import Corpus, Record, load_corpus
from .edits import Edit, build_edits, random_direction
from .errors import SteerlabError
from .extract import ExtractConfig, extract
from .generate import GenerationConfig, generate
from .interventions import steering
from .models import LoadedModel, load_model
from .readers import READERS, evaluate_reader, read_texts
from .vectors import EmotionVectors, load_vectors, save_vectors

__all__ = [
    "READERS",
    "Corpus",
    "Edit",
    "EmotionVectors",
    "ExtractConfig",
    "GenerationConfig",
    "LoadedModel",
    "PoolingConfig",
    "Record",
    "SteerlabError",
    "build_edits",
    "evaluate_reader",
    "extract",
    "generate",
    "load_corpus",
    "load_model",
    "load_vectors",
    "pooled_activations",
    "random_direction",
    "read_texts",
    "save_vectors",
    "steering",
]
