"""``steerlab steer``: generate with emotions added, ablated or clamped, next to the baseline."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from steerlab.cli.common import cli, echo_json, get_vectors_and_model, layer_list, model_options, say, vector_meta
from steerlab.cli.steer_checks import check_against_file, check_edits, read_prompts
from steerlab.core.names import POSITIONS, READER_NAMES

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel
    from steerlab.read.comparison import Comparison
    from steerlab.read.gate import Gate, TokenGate
    from steerlab.steer.generation import GenerationConfig


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
    from steerlab.core.checks import parse_ablation

    # Everything that needs no model is checked before torch is imported.
    prompts = read_prompts(prompt, prompts_file)
    clamp, sweep = check_edits(emotions, alphas, ablate, clamps, sweep_alpha, temperature)
    meta = vector_meta(vectors_path, model_spec)
    named = [*emotions, *clamp, *(parse_ablation(spec)[0] for spec in ablate)]
    check_against_file(meta, named, layer_spec, reader_layer, {"--when": when, "--when-token": when_token})

    from steerlab.model.family import has_template
    from steerlab.steer.generation import GenerationConfig

    v, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    emotions = tuple(v.name(e) for e in emotions)
    add = {e: (alphas[i] if len(alphas) > 1 else (alphas[0] if alphas else 4.0)) for i, e in enumerate(emotions)}
    edits = Edits(add, tuple(_named(v, spec) for spec in ablate), {v.name(e): c for e, c in clamp.items()}, sweep)
    if chat is None:
        chat = has_template(lm.tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, chat=chat)
    reading = (reader_name, reader_layer)
    rows = _run(lm, v, prompts, edits, layer_spec, positions, config, samples, reading, (when, when_token))
    if v.meta.get("is_random"):
        say("note: random-weight model — output shows the plumbing, not emotions")
    target = emotions[0] if emotions else (next(iter(edits.clamp)) if clamp else parse_ablation(edits.ablate[0])[0])
    _print_rows(rows, lm.spec, v.emotions, samples, as_json, target, bool(add))


def _named(v: EmotionVectors, spec: str) -> str:
    """An --ablate spec with the file's spelling of its emotion (``Calm:zero`` -> ``calm:zero``)."""
    name, colon, mode = spec.partition(":")
    return v.name(name) + colon + mode


class Edits(NamedTuple):
    """What --emotion/--alpha, --ablate, --clamp and --sweep-alpha ask for."""

    add: dict[str, float]
    ablate: tuple[str, ...]
    clamp: dict[str, float]
    sweep: list[float]


def _run(
    lm: LoadedModel,
    v: EmotionVectors,
    prompts: list[str],
    edits: Edits,
    layer_spec: str | None,
    positions: str,
    config: GenerationConfig,
    samples: int,
    reading: tuple[str | None, int | None],
    gates: tuple[str | None, str | None],
) -> list[Comparison]:
    """:func:`comparison.compare` with the command's options (``reading``: reader and its layer; ``gates``:
    --when and --when-token), then the edits and their alpha units on stderr."""
    from steerlab.read.comparison import compare

    gate, token_gate = _gates(v, *gates)
    layers = layer_list(layer_spec, lm.n_layers)
    rows = compare(
        lm,
        v,
        prompts,
        add=edits.add,
        ablate=edits.ablate,
        clamp=edits.clamp,
        sweep=edits.sweep,
        layers=layers,
        positions=positions,  # type: ignore[arg-type]  # click.Choice checked it
        config=config,
        samples=samples,
        reader=reading[0],
        reader_layer=reading[1],
        note=say,
        gate=gate,
        token_gate=token_gate,
    )
    say(f"{describe(edits.add, edits.ablate, edits.clamp)}; alpha unit = {_alpha_units(v, layers)}")
    return rows


def _alpha_units(v: EmotionVectors, layers: list[int] | None) -> str:
    """What alpha 1 is at each edited layer, beside the typical token norm there."""
    return ", ".join(
        f"L{la}: {float(v.alpha_unit[la]):.1f} (token norm {float(v.token_norm[la]):.0f})"
        for la in v.layers_for_steering(layers)
    )


def _gates(v: EmotionVectors, when: str | None, when_token: str | None) -> tuple[Gate | None, TokenGate | None]:
    """The --when and --when-token gates (None where not given), each named on stderr with its threshold."""
    from steerlab.read.gate import gate_for, token_gate_for

    gate = gate_for(v, when) if when is not None else None
    token_gate = token_gate_for(v, when_token) if when_token is not None else None
    for g, option in ((gate, "--when"), (token_gate, "--when-token")):
        if g is not None:
            say(f"{option}: {g.emotion} > {g.threshold:.4g} ({g.source}; {g.reader} reader)")
    return gate, token_gate


def describe(add: dict[str, float], ablate: tuple[str, ...], clamp: dict[str, float]) -> str:
    """The edits in a few characters: ``+hopeful×4 -calm desperate=2``."""
    parts = (
        [f"+{e}×{a:g}" for e, a in add.items()] + [f"-{e}" for e in ablate] + [f"{e}={c:g}" for e, c in clamp.items()]
    )
    return " ".join(parts)


def _reading_text(side: dict[str, Any], k: int = 3) -> str:
    """A reply's ``k`` strongest emotions, or why it has none."""
    scores = side["scores"]
    if scores is None:
        return "(incoherent reply: not read as an emotion)" if side["incoherent"] else "(empty reply: nothing to read)"
    from steerlab.core.display import strongest_text

    return strongest_text(list(scores), list(scores.values()), k) or "(no emotion this reader reads)"


def _print_rows(
    rows: list[Comparison],
    model: str,
    emotions: tuple[str, ...],
    samples: int,
    as_json: bool,
    target: str,
    adds: bool,
) -> None:
    """One record per prompt (and alpha, sample): a JSON line, or both replies with their readings and the
    change of ``target``."""
    for row in rows:
        record = {"model": model, **row.to_json(emotions)}
        if samples == 1:
            del record["sample"]
        if as_json:
            echo_json(record)
        else:
            _show(record, target, adds)


def _show(record: dict[str, Any], target: str, adds: bool) -> None:
    """One comparison for a reader: the edit, the gates' decisions, both replies and ``target``'s change."""
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
        click.echo(f"   read by the clean model: {_reading_text(side)}")
        value = side["scores"][target] if side["scores"] else None
        values.append(float("nan") if value is None else value)
    b, s = values
    change = f"(change {s - b:+.3f})" if math.isfinite(s - b) else "(no change to report)"
    click.echo(f"   {target}: {b:+.3f} -> {s:+.3f} {change}")
