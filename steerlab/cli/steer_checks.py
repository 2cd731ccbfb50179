"""The checks ``steerlab steer`` makes before torch is imported: its options against each other and
against the vector file's header, so that a bad value answers at once."""

from __future__ import annotations

import math
from typing import Any

from steerlab.cli.common import layer_list
from steerlab.core.errors import SteerlabError


def parse_alphas(text: str) -> list[float]:
    """--sweep-alpha: comma-separated finite numbers."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SteerlabError(f"cannot parse --sweep-alpha {text!r}: use numbers such as 0,1,2,4,8") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise SteerlabError(f"--sweep-alpha {text!r} needs finite numbers such as 0,1,2,4,8")
    return values


def parse_clamp(items: tuple[str, ...]) -> dict[str, float]:
    """--clamp EMOTION=VALUE (repeatable) as {emotion: value}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SteerlabError(f"cannot parse --clamp {item!r}: use EMOTION=VALUE, e.g. calm=3") from None
        if not sep:
            raise SteerlabError(f"cannot parse --clamp {item!r}: use EMOTION=VALUE, e.g. calm=3")
        if not math.isfinite(out[name.strip()]):
            raise SteerlabError(f"--clamp {item!r} needs a finite value: use EMOTION=VALUE, e.g. calm=3")
    return out


def read_prompts(prompt: tuple[str, ...], prompts_file: str | None) -> list[str]:
    """PROMPT arguments, then the prompts of --prompts-file; checked."""
    from steerlab.core.checks import check_prompts
    from steerlab.validate.prompts import load_prompts

    prompts = list(prompt) + ([p.text for p in load_prompts(prompts_file)] if prompts_file else [])
    check_prompts(prompts)
    return prompts


def check_edits(
    emotions: tuple[str, ...],
    alphas: tuple[float, ...],
    ablate: tuple[str, ...],
    clamps: tuple[str, ...],
    sweep_alpha: str | None,
    temperature: float,
) -> tuple[dict[str, float], list[float]]:
    """The edit options checked against each other; returns the parsed --clamp and --sweep-alpha."""
    from steerlab.core.checks import finite

    if not (emotions or ablate or clamps):
        raise SteerlabError("nothing to steer: pass --emotion NAME [--alpha A], --ablate NAME or --clamp NAME=VALUE")
    if alphas and len(alphas) not in (1, len(emotions)):
        raise SteerlabError(f"{len(alphas)} --alpha values for {len(emotions)} --emotion: give one, or one per emotion")
    if sweep_alpha and len(alphas) > 1:
        raise SteerlabError("--sweep-alpha applies one alpha to every --emotion: drop the per-emotion --alpha values")
    if not math.isfinite(temperature) or temperature < 0:
        raise SteerlabError(f"--temperature {temperature} must be a finite number >= 0")
    for a in alphas:
        finite(a, "--alpha")
    return parse_clamp(clamps), parse_alphas(sweep_alpha) if sweep_alpha else []


def check_against_file(
    meta: dict[str, Any],
    named: list[str],
    layer_spec: str | None,
    reader_layer: int | None,
    gates: dict[str, str | None],
) -> None:
    """The emotions ``named``, the layers and the gates ({option: spec}) against the vector file's header:
    a file without a gate's calibrated threshold, say, fails before the model loads."""
    from steerlab.core.checks import calibrated_gate, emotion_index, parse_when

    for name in named:
        emotion_index(meta["emotions"], name)
    check_layers(layer_spec, reader_layer, meta)
    for option, gate_spec in gates.items():
        if gate_spec is not None:
            gate_name, given = parse_when(gate_spec, option)
            emotion_index(meta["emotions"], gate_name)
            if given is None:
                calibrated_gate(meta, gate_name, option)


def check_layers(layer_spec: str | None, reader_layer: int | None, meta: dict[str, Any]) -> None:
    """--layers and --reader-layer against the vector file's layer count (when its metadata names it)."""
    from steerlab.core.checks import check_layers as check_range

    n_layers = meta.get("n_layers")
    if not isinstance(n_layers, int):
        return  # the loaded vectors check it
    layer_list(layer_spec, n_layers)
    if reader_layer is not None:
        check_range([reader_layer], n_layers, "--reader-layer")
