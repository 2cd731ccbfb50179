"""Checks of user input that need no model and no torch, so the CLI runs them before it imports either.

Each rule lives here once; the modules that use it at run time (``sites``, ``edits``, ``vectors``,
``comparison``, ``serve``) import it from here.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from steerlab.core.errors import InterventionError, SteerlabError
from steerlab.core.names import ABLATIONS, Ablation


def check_layers(layers: list[int], n_layers: int, what: str = "layer") -> list[int]:
    """The one range check of layer indices."""
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise InterventionError(f"{what} {layer} is out of range: use 0-{n_layers - 1}")
    return layers


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """Parse ``"6"``, ``"6-10"``, ``"3,5,7"`` or ``"all"`` into a checked list of layers."""
    text = spec.strip().lower()
    if text == "all":
        return list(range(n_layers))
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise SteerlabError(
            f"cannot parse layers {spec!r}: use a number (6), a range (6-10), a list (3,5) or 'all'"
        ) from None
    return check_layers(sorted(set(out)), n_layers)


def parse_ablation(spec: str) -> tuple[str, Ablation]:
    """``"desperate"`` -> (desperate, mean); ``"desperate:zero"`` -> (desperate, zero)."""
    name, _, mode = spec.partition(":")
    mode = mode.strip().lower() or "mean"
    if mode not in ABLATIONS:
        raise InterventionError(f"unknown ablation {spec!r}: use EMOTION or EMOTION:{'|'.join(ABLATIONS)}")
    return name.strip(), mode  # type: ignore[return-value]


def finite(value: float, name: str) -> float:
    """The one check that a strength (an alpha, a clamp value) is a finite number."""
    if not math.isfinite(value):
        raise InterventionError(f"{name} {value} is not a finite number: use e.g. 4 or -2")
    return float(value)


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """The hint an unknown name gets: `` (did you mean 'x'?)`` for the nearest of ``choices``, or nothing."""
    near = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def emotion_index(emotions: Sequence[str], emotion: str) -> int:
    """Position of ``emotion`` among a vector file's ``emotions``; unknown names get the list and the
    nearest match."""
    name = emotion.strip().lower()
    if name in emotions:
        return list(emotions).index(name)
    raise InterventionError(
        f"unknown emotion {emotion!r}{did_you_mean(name, emotions)}: available are {', '.join(emotions)}"
    )


def check_prompts(prompts: Sequence[str]) -> None:
    if not prompts:
        raise SteerlabError("no prompt given: pass PROMPT text or --prompts-file FILE")
    if any(not p.strip() for p in prompts):
        raise SteerlabError("empty prompt: every prompt needs some text")


_WHEN = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:>\s*(\S+)\s*)?$")


def parse_when(spec: str, option: str = "--when") -> tuple[str, float | None]:
    """``"desperate"`` -> (desperate, None: the calibrated threshold); ``"desperate>0.2"`` -> (desperate, 0.2)."""
    found = _WHEN.match(spec)
    value = None
    if found and found.group(2) is not None:
        try:
            value = float(found.group(2))
        except ValueError:
            found = None
    if not found or (value is not None and not math.isfinite(value)):
        raise SteerlabError(
            f"cannot parse {option} {spec!r}: use EMOTION (the calibrated threshold) or EMOTION>NUMBER, "
            "e.g. desperate or 'desperate>0.2'"
        )
    return found.group(1).lower(), value


def calibrated_gate(meta: Mapping[str, Any], name: str, option: str = "--when") -> Mapping[str, Any]:
    """A vector file's calibrated gate for ``name`` (from its metadata); none is a one-line error."""
    record = (meta.get("gates") or {}).get(name)
    if not record:
        have = ", ".join(sorted(meta.get("gates") or {})) or "none"
        raise SteerlabError(
            f"{option} {name!r}: this vector file has no calibrated gate threshold for it (calibrated: {have}): "
            f"give one ({option} '{name}>0.2') or run `steerlab calibrate-gate --vectors FILE --messages M.jsonl`"
        )
    return record
