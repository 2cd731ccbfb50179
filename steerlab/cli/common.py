"""Shared CLI pieces: the group, model/vector options, progress bars, JSON output."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import SteerlabError
from ..models import EMBEDDED, LoadedModel, load_model
from ..vectors import EmotionVectors, load_vectors

REPO = Path(__file__).resolve().parents[2]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="steerlab")
def cli() -> None:
    """Emotion vectors in open-weight language models: extract, scope, steer, validate."""


def say(message: str) -> None:
    """Progress and notes go to stderr so stdout stays clean for tables and --json."""
    click.echo(message, err=True)


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
                      help="Weights dtype (default: float32 for gemma-3-270m, bfloat16 for random:gemma-2-2b, the checkpoint's own otherwise).")(fn)
    fn = click.option("--revision", default=None, help="Hub revision (branch, tag or commit) for a Hugging Face id.")(fn)
    fn = click.option("--model", "model_spec", default=None,
                      help=f"Model: {EMBEDDED} (embedded default), random:gemma-2-2b, a Hugging Face id or a local path. Default: the vector file's model, else {EMBEDDED}.")(fn)
    return fn


def get_model(spec: str | None, revision: str | None, dtype: str | None) -> LoadedModel:
    return load_model(spec or EMBEDDED, revision=revision, dtype=dtype, progress=say)


def default_vectors_path(spec: str) -> Path:
    return REPO / "vectors" / spec.replace("/", "__").replace(":", "_") / "emotions.safetensors"


def get_vectors_and_model(
    vectors_path: str | None, spec: str | None, revision: str | None, dtype: str | None
) -> tuple[EmotionVectors, LoadedModel]:
    """Vectors (given, or the shipped ones for the model) and a model they were built for."""
    path = Path(vectors_path) if vectors_path else default_vectors_path(spec or EMBEDDED)
    if not vectors_path and not path.exists():
        raise SteerlabError(
            f"no shipped vectors for model {spec or EMBEDDED!r} at {path}: run "
            f"`steerlab extract --model {spec or EMBEDDED}` first, or pass --vectors"
        )
    vectors = load_vectors(path)
    lm = get_model(spec or vectors.meta.get("model_spec") or EMBEDDED, revision, dtype)
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    return vectors, lm


def echo_json(obj: Any) -> None:
    """One line of strict JSON: NaN and infinities (no value) become null, which every parser reads."""
    click.echo(json.dumps(_strict(obj), ensure_ascii=False, allow_nan=False))


def _strict(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _strict(obj.item())
    return obj


def progress_bar(total: int, desc: str, unit: str = "text") -> Any:
    """A tqdm bar on stderr that also shows tokens/s; silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False)
