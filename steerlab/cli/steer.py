"""``steerlab steer``: generate with emotions added, ablated or clamped, next to the baseline."""

from __future__ import annotations

import math

import click
import numpy as np

from ..edits import build_edits, parse_ablation
from ..errors import SteerlabError
from ..generate import GenerationConfig, generate
from ..interventions import POSITIONS, Displacement
from ..readers import READERS, read_texts
from ..sites import parse_layers
from ..validate import load_prompts
from .common import cli, echo_json, get_vectors_and_model, model_options, say


def _parse_alphas(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SteerlabError(f"cannot parse --sweep-alpha {text!r}: use numbers such as 0,1,2,4,8") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise SteerlabError(f"--sweep-alpha {text!r} needs finite numbers such as 0,1,2,4,8")
    return values


def _parse_clamp(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SteerlabError(f"cannot parse --clamp {item!r}: use EMOTION=VALUE, e.g. calm=3") from None
        if not sep:
            raise SteerlabError(f"cannot parse --clamp {item!r}: use EMOTION=VALUE, e.g. calm=3")
    return out


@cli.command("steer")
@click.argument("prompt", nargs=-1)
@click.option("--emotion", "emotions", multiple=True, help="Emotion to add (repeatable).")
@click.option("--alpha", "alphas", multiple=True, type=float, help="Strength per --emotion (one value applies to all). Default 4.")
@click.option("--ablate", multiple=True,
              help="EMOTION or EMOTION:zero|mean|directional (repeatable). Default mean-ablation: the projection "
                   "is set to its corpus mean, removing variation without pushing activations.")
@click.option("--clamp", "clamps", multiple=True, help="EMOTION=VALUE: set the projection to VALUE alpha-units above the mean.")
@click.option("--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors for the model).")
@model_options
@click.option("--layers", "layer_spec", default=None, help="6, 6-10, 3,5 or all (default: the vector file's chosen layer).")
@click.option("--positions", type=click.Choice(POSITIONS), default="all", show_default=True)
@click.option("--prompts-file", default=None, help="One prompt per line, or JSONL with a 'text' field.")
@click.option("--chat", is_flag=True, help="Treat each prompt as a user turn and generate the assistant reply.")
@click.option("--max-new-tokens", default=48, show_default=True, type=click.IntRange(1, 4096))
@click.option("--temperature", default=0.0, show_default=True, type=float, help="0 = greedy.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1, 1000), help="Replies per prompt (needs --temperature > 0 to differ).")
@click.option("--sweep-alpha", default=None, help="Comma-separated alphas, one row each, e.g. 0,1,2,4,8.")
@click.option("--reader", "reader_name", type=click.Choice(sorted(READERS)), default=None,
              help="How the clean model re-reads replies (default: the vector file's validated reader).")
@click.option("--reader-layer", default=None, type=int, help="Layer at which replies are re-read (default: the vector file's reading layer).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per prompt (and alpha, sample).")
def steer_cmd(prompt: tuple[str, ...], emotions: tuple[str, ...], alphas: tuple[float, ...], ablate: tuple[str, ...],
              clamps: tuple[str, ...], vectors_path: str | None, model_spec: str | None, revision: str | None,
              dtype: str | None, layer_spec: str | None, positions: str, prompts_file: str | None, chat: bool,
              max_new_tokens: int, temperature: float, seed: int, samples: int, sweep_alpha: str | None,
              reader_name: str | None, reader_layer: int | None, as_json: bool) -> None:
    """Generate with emotion directions added, ablated or clamped, beside the unsteered baseline.

    Alpha is scale-free: alpha 1 adds one "typical emotion offset" at the layer (the mean distance
    between an emotion's mean activation and the grand mean on the extraction corpus).
    """
    prompts = list(prompt) + ([p.text for p in load_prompts(prompts_file)] if prompts_file else [])
    if not prompts:
        raise SteerlabError("no prompt given: pass PROMPT text or --prompts-file FILE")
    if any(not p.strip() for p in prompts):
        raise SteerlabError("empty prompt: every prompt needs some text")
    if not (emotions or ablate or clamps):
        raise SteerlabError("nothing to steer: pass --emotion NAME [--alpha A], --ablate NAME or --clamp NAME=VALUE")
    if alphas and len(alphas) not in (1, len(emotions)):
        raise SteerlabError(f"{len(alphas)} --alpha values for {len(emotions)} --emotion: give one, or one per emotion")
    if not math.isfinite(temperature) or temperature < 0:
        raise SteerlabError(f"--temperature {temperature} must be a finite number >= 0")
    for a in alphas:
        if not math.isfinite(a):
            raise SteerlabError(f"--alpha {a} is not a finite number: use e.g. 4 or -2")
    clamp = _parse_clamp(clamps)
    v, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    ablated = [parse_ablation(spec)[0] for spec in ablate]
    for name in [*emotions, *ablated, *clamp]:
        v.index(name)
    layers = parse_layers(layer_spec, lm.n_layers) if layer_spec else [v.steering_layer]
    if reader_layer is not None:
        v.check_layer(reader_layer, "--reader-layer")
    if sweep_alpha and len(alphas) > 1:
        raise SteerlabError("--sweep-alpha applies one alpha to every --emotion: drop the per-emotion --alpha values")
    # "alpha" in the output is the strength of the first added emotion (0 when nothing is added).
    if sweep_alpha:
        sweep = _parse_alphas(sweep_alpha)
    else:
        sweep = [(alphas[0] if alphas else 4.0) if emotions else 0.0]
    per_emotion = list(alphas) if len(alphas) > 1 else None
    if v.meta.get("is_random"):
        say("note: random-weight model — output shows the plumbing, not emotions")

    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, chat=chat)
    expanded = [p for p in prompts for _ in range(samples)]
    say(f"generating baseline for {len(expanded)} prompt(s)")
    base = generate(lm, expanded, config)
    # Replies are read as the model's turn after the user's message; continuations alone.
    contexts = expanded if chat else None

    def read(replies: list[str]) -> np.ndarray:
        return read_texts(lm, v, replies, reader_layer, reader_name, contexts)

    base_scores = read(base)
    target = emotions[0] if emotions else (next(iter(clamp)) if clamp else ablated[0])
    t = v.index(target)
    for alpha in sweep:
        add = {e: (per_emotion[i] if per_emotion else alpha) for i, e in enumerate(emotions)}
        edits = build_edits(v, layers, add=add, ablate=list(ablate), clamp=clamp, label="steered")
        units = ", ".join(f"L{layer}: {float(v.alpha_unit[layer]):.1f} (token norm {float(v.token_norm[layer]):.0f})" for layer in layers)
        say(f"steering alpha={alpha:g} {describe(add, ablate, clamp)} at layers {layers}, positions={positions}; "
            f"alpha unit = {units}")
        moved = Displacement()
        steered = generate(lm, expanded, config, edits, positions, record=moved)  # type: ignore[arg-type]
        scores = read(steered)
        for i, p in enumerate(expanded):
            record = {"prompt": p, "alpha": alpha, "layers": layers, "displacement": round(moved.mean("steered"), 3),
                      "baseline": {"text": base[i], "scores": _named(v.emotions, base_scores[i])},
                      "steered": {"text": steered[i], "scores": _named(v.emotions, scores[i])}}
            if samples > 1:
                record["sample"] = i % samples
            if as_json:
                echo_json(record)
            else:
                _show(record, v.emotions, target, base_scores[i], scores[i], t)


def describe(add: dict[str, float], ablate: tuple[str, ...], clamp: dict[str, float]) -> str:
    parts = [f"+{e}×{a:g}" for e, a in add.items()] + [f"-{e}" for e in ablate] + [f"{e}={c:g}" for e, c in clamp.items()]
    return " ".join(parts)


def _named(names: tuple[str, ...], row: np.ndarray) -> dict[str, float]:
    return {n: round(float(s), 4) for n, s in zip(names, row)}


def _top(names: tuple[str, ...], row: np.ndarray, k: int = 3) -> str:
    return ", ".join(f"{names[i]} {row[i]:+.3f}" for i in np.argsort(-np.nan_to_num(row, nan=-np.inf))[:k])


def _show(record: dict, names: tuple[str, ...], target: str, b: np.ndarray, s: np.ndarray, t: int) -> None:
    width = 100
    click.echo("=" * width)
    click.echo(f"prompt: {record['prompt']}")
    click.echo(f"alpha {record['alpha']:g} at layers {record['layers']} "
               f"(mean |dx| per edited token = {record['displacement']:.1f})")
    for label, key, row in (("baseline", "baseline", b), ("steered ", "steered", s)):
        click.echo(f"-- {label}: {record[key]['text']!r}")
        click.echo(f"   read by the clean model: {_top(names, row)}")
    click.echo(f"   {target}: {b[t]:+.3f} -> {s[t]:+.3f} (change {s[t] - b[t]:+.3f})")
