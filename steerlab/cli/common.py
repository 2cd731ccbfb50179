"""Shared CLI pieces: the group, model/vector options, progress, JSON output.

Commands import torch and transformers only inside their bodies, so ``--help`` and every argument
error answer at once.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import click

from steerlab import __version__
from steerlab.core.errors import SteerlabError
from steerlab.core.names import EMBEDDED

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="steerlab")
def cli() -> None:
    """Emotion vectors in open-weight language models: extract, scope, steer, validate."""


def say(message: str) -> None:
    """Progress and notes go to stderr so stdout stays clean for tables and --json (rank 0 only)."""
    if os.environ.get("RANK", "0") == "0":
        click.echo(message, err=True)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[str(param.name)] = value
    if param.name == "verbose" and value:
        ctx.call_on_close(_report_peak_memory)
    return value


def _report_peak_memory() -> None:
    import resource

    peak = f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB resident"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        peak += f", {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB on the GPU"
    say(peak)


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--verbose", is_flag=True, expose_value=False, callback=_remember, help="Report peak memory at the end."
    )(fn)
    fn = click.option(
        "--device-map",
        default=None,
        expose_value=False,
        callback=_remember,
        help="For a checkpoint larger than one device: auto, balanced, sequential or a JSON object of module -> "
        'device ("disk" offloads), handed to transformers/accelerate.',
    )(fn)
    fn = click.option(
        "--dtype",
        type=click.Choice(["float32", "bfloat16", "float16"]),
        default=None,
        help="Weights dtype (default: float32 for gemma-3-270m, bfloat16 for random:gemma-2-2b, "
        "the checkpoint's own otherwise).",
    )(fn)
    fn = click.option("--revision", default=None, help="Hub revision (branch, tag or commit) for a Hugging Face id.")(
        fn
    )
    fn = click.option(
        "--model",
        "model_spec",
        default=None,
        help=f"Model: {EMBEDDED} (embedded default), random:gemma-2-2b, a Hugging Face id or a local "
        f"path. Default: the vector file's model, else {EMBEDDED}.",
    )(fn)
    return fn


def get_model(spec: str | None, revision: str | None, dtype: str | None) -> LoadedModel:
    from steerlab.model.models import load_model

    if not sys.stderr.isatty():  # logs get steerlab's progress lines, not transformers' bars
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    ctx = click.get_current_context(silent=True)
    device_map = ctx.meta.get("device_map") if ctx else None
    return load_model(spec or EMBEDDED, revision=revision, dtype=dtype, progress=say, device_map=device_map)


def vector_path(vectors_path: str | None, spec: str | None) -> Path:
    """The vector file given, else the one shipped (or extracted into the cache) for the model."""
    from steerlab.core.vectorfile import shipped_vectors, user_vectors

    if vectors_path:
        return Path(vectors_path)
    found = shipped_vectors(spec or EMBEDDED)
    if found is None:
        raise SteerlabError(
            f"no vectors for model {spec or EMBEDDED!r} (none shipped, none at {user_vectors(spec or EMBEDDED)}): "
            f"run `steerlab extract --model {spec or EMBEDDED}` first, or pass --vectors"
        )
    return found


def vector_meta(vectors_path: str | None, spec: str | None) -> dict[str, Any]:
    """The metadata of the vector file a command will use (see :func:`vector_path`), read without torch:
    a missing or broken file, or an emotion it lacks, answers before the model stack is imported."""
    from steerlab.core.vectorfile import read_meta

    return read_meta(vector_path(vectors_path, spec))


def get_vectors(vectors_path: str | None, spec: str | None) -> EmotionVectors:
    """The vector file given, else the one shipped (or extracted into the cache) for the model."""
    from steerlab.core.vectors import load_vectors

    return load_vectors(vector_path(vectors_path, spec))


def get_vectors_and_model(
    vectors_path: str | None, spec: str | None, revision: str | None, dtype: str | None
) -> tuple[EmotionVectors, LoadedModel]:
    """Vectors (given, or the shipped ones for the model) and a model they were built for."""
    vectors = get_vectors(vectors_path, spec)
    lm = get_model(spec or vectors.meta.get("model_spec") or EMBEDDED, revision, dtype)
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    return vectors, lm


def layer_list(spec: str | None, n_layers: int) -> list[int] | None:
    """The layers a --layers value names (checked), or None when none is given (the file's default)."""
    from steerlab.core.checks import parse_layers

    return parse_layers(spec, n_layers) if spec else None


def check_out(path: str | Path, what: str = "--out", *, directory: bool = False, force: bool = False) -> Path:
    from steerlab.core.files import check_writable

    return check_writable(path, what, directory=directory, force=force)


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


class Progress:
    """Progress on stderr: a tqdm bar on a terminal; otherwise one line every ``every`` seconds (done,
    rate, ETA), so logged runs show that they are alive."""

    def __init__(self, total: int, desc: str, unit: str = "text", every: float = 30.0) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n, self.tokens = 0, 0
        self.start = self.last = time.perf_counter()
        self.bar: Any = None
        self.quiet = threading.Event()
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, desc=desc, unit=unit, file=sys.stderr, leave=False)
        else:  # a phase that reports rarely (one long call) still says it is alive every `every` seconds
            threading.Thread(target=self._heartbeat, daemon=True).start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quiet.set()
        if self.bar is not None:
            self.bar.close()

    def _heartbeat(self) -> None:
        while not self.quiet.wait(self.every / 3):
            if time.perf_counter() - self.last >= self.every:
                self._line(time.perf_counter())

    def update(self, done: int, total: int | None = None, tokens: int = 0) -> None:
        """``done`` items so far (absolute), ``tokens`` more tokens read since the last call."""
        self.total = total if total is not None else self.total
        self.tokens += tokens
        step, self.n = done - self.n, done
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.total = self.total or None
            self.bar.update(step)
            if self.tokens:
                self.bar.set_postfix_str(f"{self.tokens / (now - self.start):.0f} tok/s")
        elif now - self.last >= self.every or (self.total and done >= self.total and step):
            self._line(now)

    def _line(self, now: float) -> None:
        self.last = now
        done, rate = self.n, f", {self.tokens / (now - self.start):.0f} tok/s" if self.tokens else ""
        eta = (now - self.start) / done * (self.total - done) if done and self.total else float("nan")
        say(
            f"{self.desc}: {done}/{self.total or '?'} {plural(self.unit)}{rate}, "
            f"{now - self.start:.0f}s elapsed" + (f", ETA {eta:.0f}s" if math.isfinite(eta) else "")
        )


def plural(noun: str) -> str:
    """English plural of a progress unit ("reply" -> "replies", "text" -> "texts")."""
    return noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou") else noun + "s"


class Phases:
    """One :class:`Progress` per phase of a long command: ``phases(name, done, total)`` opens the phase's
    bar on its first report (so its rate and ETA are its own) and closes the previous one."""

    def __init__(self, units: dict[str, str] | None = None) -> None:
        self.units = units or {}
        self.name: str | None = None
        self.bar: Progress | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__()

    def __call__(self, name: str, done: int, total: int, tokens: int = 0) -> None:
        if name != self.name:
            self.__exit__()
            self.name, self.bar = name, Progress(total, name, unit=self.units.get(name, "step"))
        if self.bar is not None:
            self.bar.update(done, total, tokens)
