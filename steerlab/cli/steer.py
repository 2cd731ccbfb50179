"""``steerlab steer``: generate with emotions added, ablated or clamped, next to the baseline."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from ..errors import SteerlabError
from ..names import POSITIONS, READER_NAMES
from .common import cli, echo_json, get_vectors_and_model, model_options, say, vector_meta

if TYPE_CHECKING:
    from ..gate import Gate, TokenGate
    from ..vectors import EmotionVectors


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
        if not math.isfinite(out[name.strip()]):
            raise SteerlabError(f"--clamp {item!r} needs a finite value: use EMOTION=VALUE, e.g. calm=3")
    return out


@cli.command("steer")
@click.argument("prompt", nargs=-1)
@click.option("--emotion", "emotions", multiple=True, help="Emotion to add (repeatable).")
@click.option(
    "--alpha", "alphas", multiple=True, type=float, help="Strength per --emotion (one value applies to all). Default 4."
)
@click.option(
    "--ablate",
    multiple=True,
    help="EMOTION or EMOTION:zero|mean|directional (repeatable). Default mean-ablation: the projection "
    "is set to its corpus mean, removing variation without pushing activations.",
)
@click.option(
    "--clamp", "clamps", multiple=True, help="EMOTION=VALUE: set the projection to VALUE alpha-units above the mean."
)
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors for the model)."
)
@model_options
@click.option(
    "--layers", "layer_spec", default=None, help="6, 6-10, 3,5 or all (default: the vector file's steering layer)."
)
@click.option("--positions", type=click.Choice(POSITIONS), default="all", show_default=True)
@click.option("--prompts-file", default=None, help="One prompt per line, or JSONL with a 'text' field.")
@click.option(
    "--chat/--raw",
    default=None,
    help="Treat each prompt as a user turn and generate the assistant's reply (--chat), or continue it as "
    "plain text (--raw). Default: --chat for a model with a chat template (an instruction-tuned one), else --raw.",
)
@click.option("--max-new-tokens", default=48, show_default=True, type=click.IntRange(1, 4096))
@click.option("--temperature", default=0.0, show_default=True, type=float, help="0 = greedy.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--samples",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Replies per prompt (needs --temperature > 0 to differ).",
)
@click.option("--sweep-alpha", default=None, help="Comma-separated alphas, one row each, e.g. 0,1,2,4,8.")
@click.option(
    "--reader",
    "reader_name",
    type=click.Choice(READER_NAMES),
    default=None,
    help="How the clean model re-reads replies (default: the vector file's validated reader).",
)
@click.option(
    "--reader-layer",
    default=None,
    type=int,
    help="Layer at which replies are re-read (default: the vector file's reading layer).",
)
@click.option(
    "--when",
    "when",
    default=None,
    help="Gate: edit a prompt only when its user turn reads EMOTION above the vector file's calibrated threshold "
    "(5% false positives on neutral messages), or above a given one: 'desperate>0.2'. Other prompts get the "
    "baseline reply.",
)
@click.option(
    "--when-token",
    "when_token",
    default=None,
    help="Running gate: edit each position only while its own reading of EMOTION at the edited layer is above "
    "the calibrated token threshold (or EMOTION>VALUE); the reply states how many tokens were edited.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per prompt (and alpha, sample).")
def steer_cmd(
    prompt: tuple[str, ...],
    emotions: tuple[str, ...],
    alphas: tuple[float, ...],
    ablate: tuple[str, ...],
    clamps: tuple[str, ...],
    vectors_path: str | None,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    layer_spec: str | None,
    positions: str,
    prompts_file: str | None,
    chat: bool | None,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    samples: int,
    sweep_alpha: str | None,
    reader_name: str | None,
    reader_layer: int | None,
    when: str | None,
    when_token: str | None,
    as_json: bool,
) -> None:
    """Generate with emotion directions added, ablated or clamped, beside the unsteered baseline.

    Alpha is scale-free: alpha 1 adds one "typical emotion offset" at the layer (the mean distance
    between an emotion's mean activation and the grand mean on the extraction corpus).
    """
    from ..checks import calibrated_gate, check_prompts, emotion_index, parse_ablation, parse_when
    from ..validate.prompts import load_prompts

    # Everything that needs no model is checked before torch is imported.
    prompts = list(prompt) + ([p.text for p in load_prompts(prompts_file)] if prompts_file else [])
    check_prompts(prompts)
    if not (emotions or ablate or clamps):
        raise SteerlabError("nothing to steer: pass --emotion NAME [--alpha A], --ablate NAME or --clamp NAME=VALUE")
    if alphas and len(alphas) not in (1, len(emotions)):
        raise SteerlabError(f"{len(alphas)} --alpha values for {len(emotions)} --emotion: give one, or one per emotion")
    if sweep_alpha and len(alphas) > 1:
        raise SteerlabError("--sweep-alpha applies one alpha to every --emotion: drop the per-emotion --alpha values")
    if not math.isfinite(temperature) or temperature < 0:
        raise SteerlabError(f"--temperature {temperature} must be a finite number >= 0")
    for a in alphas:
        if not math.isfinite(a):
            raise SteerlabError(f"--alpha {a} is not a finite number: use e.g. 4 or -2")
    clamp = _parse_clamp(clamps)
    sweep = _parse_alphas(sweep_alpha) if sweep_alpha else []
    meta = vector_meta(vectors_path, model_spec)
    named = [*emotions, *clamp, *(parse_ablation(spec)[0] for spec in ablate)]
    for name in named:
        emotion_index(meta["emotions"], name)
    _check_layers(layer_spec, reader_layer, meta)
    for gate_spec, option in ((when, "--when"), (when_token, "--when-token")):
        if gate_spec is not None:  # a file without the gate's threshold fails before the model loads
            gate_name, given = parse_when(gate_spec, option)
            emotion_index(meta["emotions"], gate_name)
            if given is None:
                calibrated_gate(meta, gate_name, option)

    from ..comparison import compare
    from ..family import has_template
    from ..generation import GenerationConfig

    v, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    emotions = tuple(v.name(e) for e in emotions)
    gate, token_gate = _gates(v, when, when_token)
    layers = _layers(layer_spec, lm.n_layers)
    add = {e: (alphas[i] if len(alphas) > 1 else (alphas[0] if alphas else 4.0)) for i, e in enumerate(emotions)}
    if chat is None:
        chat = has_template(lm.tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, chat=chat)
    rows = compare(
        lm,
        v,
        prompts,
        add=add,
        ablate=ablate,
        clamp=clamp,
        sweep=sweep,
        layers=layers,
        positions=positions,  # type: ignore[arg-type]  # click.Choice checked it
        config=config,
        samples=samples,
        reader=reader_name,
        reader_layer=reader_layer,
        note=say,
        gate=gate,
        token_gate=token_gate,
    )
    units = ", ".join(
        f"L{la}: {float(v.alpha_unit[la]):.1f} (token norm {float(v.token_norm[la]):.0f})"
        for la in v.layers_for_steering(layers)
    )
    say(f"{describe(add, ablate, clamp)}; alpha unit = {units}")
    if v.meta.get("is_random"):
        say("note: random-weight model — output shows the plumbing, not emotions")
    target = emotions[0] if emotions else (next(iter(clamp)) if clamp else parse_ablation(ablate[0])[0])
    for row in rows:
        record = {"model": lm.spec, **row.to_json(v.emotions)}
        if samples == 1:
            del record["sample"]
        if as_json:
            echo_json(record)
        else:
            _show(record, v.emotions, target, bool(add))


def _gates(
    v: EmotionVectors, when: str | None, when_token: str | None, quiet: bool = False
) -> tuple[Gate | None, TokenGate | None]:
    from ..gate import gate_for, token_gate_for

    gate = gate_for(v, when) if when is not None else None
    token_gate = token_gate_for(v, when_token) if when_token is not None else None
    for g, option in ((gate, "--when"), (token_gate, "--when-token")):
        if g is not None and not quiet:
            say(f"{option}: {g.emotion} > {g.threshold:.4g} ({g.source}; {g.reader} reader)")
    return gate, token_gate


def _check_layers(layer_spec: str | None, reader_layer: int | None, meta: dict[str, Any]) -> None:
    """--layers and --reader-layer against the vector file's layer count (when its metadata names it)."""
    from ..checks import check_layers

    n_layers = meta.get("n_layers")
    if not isinstance(n_layers, int):
        return  # the loaded vectors check it
    _layers(layer_spec, n_layers)
    if reader_layer is not None:
        check_layers([reader_layer], n_layers, "--reader-layer")


def _layers(spec: str | None, n_layers: int) -> list[int] | None:
    from ..checks import parse_layers

    return parse_layers(spec, n_layers) if spec else None


def describe(add: dict[str, float], ablate: tuple[str, ...], clamp: dict[str, float]) -> str:
    parts = (
        [f"+{e}×{a:g}" for e, a in add.items()] + [f"-{e}" for e in ablate] + [f"{e}={c:g}" for e, c in clamp.items()]
    )
    return " ".join(parts)


def _top(side: dict[str, Any], k: int = 3) -> str:
    scores = side["scores"]
    if scores is None:
        return "(incoherent reply: not read as an emotion)" if side["incoherent"] else "(empty reply: nothing to read)"
    from ..readers import strongest_text

    return strongest_text(list(scores), list(scores.values()), k) or "(no emotion this reader reads)"


def _show(record: dict[str, Any], names: tuple[str, ...], target: str, adds: bool) -> None:
    click.echo("=" * 100)
    click.echo(f"prompt: {record['prompt']}")
    click.echo(
        f"{'alpha ' + format(record['alpha'], 'g') if adds else 'edit'} at layers {record['layers']} "
        f"(mean |dx| per edited token = {record['displacement']:.1f})"
    )
    gate, tokens = record.get("gate"), record.get("token_gate")
    if gate is not None:
        verdict = "fired: steered" if gate["fired"] else "did not fire: the steered reply is the baseline's"
        click.echo(f"gate: user turn reads {gate['reading']:+.4f} vs threshold {gate['threshold']:+.4f}, {verdict}")
    if tokens is not None:
        click.echo(f"running gate: edited {tokens['edited_tokens']} of the reply's {tokens['read_tokens']} tokens read")
    values = []
    for label, key in (("baseline", "baseline"), ("steered ", "steered")):
        side = record[key]
        click.echo(f"-- {label}: {side['text']!r}")
        click.echo(f"   read by the clean model: {_top(side)}")
        value = side["scores"][target] if side["scores"] else None
        values.append(float("nan") if value is None else value)
    b, s = values
    change = f"(change {s - b:+.3f})" if math.isfinite(s - b) else "(no change to report)"
    click.echo(f"   {target}: {b:+.3f} -> {s:+.3f} {change}")


@cli.command("export")
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors of the model)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gguf"]),
    default="gguf",
    show_default=True,
    help="gguf: a llama.cpp control vector (use with --control-vector-scaled FILE 1).",
)
@click.option("--emotion", required=True, help="The emotion to export.")
@click.option("--alpha", default=4.0, show_default=True, type=float, help="Strength, folded into the file.")
@click.option("--layers", "layer_spec", default=None, help="8, 6-10, 3,5 (default: the steering layer; not 0).")
@click.option("--out", required=True, help="Output .gguf file.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def export_cmd(
    vectors_path: str | None, fmt: str, emotion: str, alpha: float, layer_spec: str | None, out: str, force: bool
) -> None:
    """Write an emotion direction for another runtime: llama.cpp's control-vector GGUF, alpha unit
    folded in, layer k = steerlab's layer k (the output of block k)."""
    from ..export import write_control_vector
    from .common import check_out, get_vectors

    if not math.isfinite(alpha):
        raise SteerlabError(f"--alpha {alpha} is not a finite number: use e.g. 4 or -2")
    check_out(out, "--out", force=force)
    v = get_vectors(vectors_path, None)
    layers = _layers(layer_spec, v.n_layers)
    emotion = v.name(emotion)
    path = write_control_vector(out, v, emotion, alpha, layers)
    click.echo(
        f"wrote {path}: {emotion} alpha {alpha:g} at layers {v.layers_for_steering(layers)} "
        f"(llama.cpp: --control-vector-scaled {path} 1)"
    )
