"""``steerlab scope``: read a text or a conversation token by token."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from steerlab.cli.common import check_out, cli, echo_json, get_vectors_and_model, model_options, say, vector_meta

if TYPE_CHECKING:  # steerlab's modules load torch: they are imported inside the commands
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel
    from steerlab.read.scope import Reading


@cli.command("scope")
@click.argument("text", required=False)
@click.option("--conversation", "conversation_path", default=None, help='JSON file: a list of {"role", "content"}.')
@click.option(
    "--generate", "do_generate", is_flag=True, help="Let the model write the assistant reply, then read it all."
)
@click.option("--max-new-tokens", default=48, show_default=True, type=click.IntRange(1, 1024))
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors of the model)."
)
@model_options
@click.option(
    "--layers", "layers_spec", default=None, help="Layers to read: 8, 6,8,10, 4-12 or all (default: the reading layer)."
)
@click.option("--top", default=3, show_default=True, type=click.IntRange(1, 50), help="Emotions shown per row.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: tokens, positions, speakers, scores.")
@click.option(
    "--plot", "plot_path", default=None, help="Write a tokens x emotions heatmap + trajectory (.png, .svg or .pdf)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing --plot file.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the noise-floor random directions.")
def scope_cmd(
    text: str | None,
    conversation_path: str | None,
    do_generate: bool,
    max_new_tokens: int,
    vectors_path: str | None,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    layers_spec: str | None,
    top: int,
    as_json: bool,
    plot_path: str | None,
    force: bool,
    seed: int,
) -> None:
    """Read TEXT (or --conversation FILE) token by token: per-token, per-turn and readout-point scores.

    Scores are cosines of the centred activation with each unit emotion direction, comparable across
    texts; the noise floor is the 95th percentile of |cosine| with random directions. Layers default
    to the vectors' reading layer. A TEXT with --generate is taken as the user's message.
    """
    _check_args(text, conversation_path, plot_path, force)
    meta = vector_meta(vectors_path, model_spec)  # before torch: a missing file or bad --layers answers at once
    if layers_spec and isinstance(meta.get("n_layers"), int):
        from steerlab.core.checks import parse_layers

        parse_layers(layers_spec, meta["n_layers"])

    from steerlab.read.scope import load_conversation

    messages = load_conversation(conversation_path) if conversation_path else None
    if do_generate and messages is None:
        messages = [{"role": "user", "content": str(text)}]
    vectors, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    reading, messages = _read(lm, vectors, text, messages, max_new_tokens if do_generate else None, layers_spec, seed)
    if plot_path:
        from steerlab.report.plots import plot_scope

        plot_scope(reading, plot_path)
        say(f"wrote {plot_path}")
    if as_json:
        obj = reading.to_json()
        if do_generate and messages:
            obj["generated_reply"] = messages[-1]["content"]
        echo_json(obj)
        return
    if do_generate and messages:
        click.echo(f"reply: {messages[-1]['content']}")
    _print_reading(reading, top)


def _check_args(text: str | None, conversation_path: str | None, plot_path: str | None, force: bool) -> None:
    """TEXT or --conversation, and --plot, checked before torch is imported."""
    from steerlab.core.errors import SteerlabError

    if (text is None) == (conversation_path is None):
        raise SteerlabError('give either TEXT or --conversation FILE (e.g. steerlab scope "I can\'t sleep")')
    if text is not None and not text.strip():
        raise SteerlabError("empty TEXT: give some text to read")
    if plot_path:
        if not plot_path.lower().endswith((".png", ".svg", ".pdf")):
            raise SteerlabError(f"--plot {plot_path!r} must end in .png, .svg or .pdf")
        check_out(plot_path, "--plot", force=force)
        from steerlab.core.extras import require

        require("plots", "--plot")


def _read(
    lm: LoadedModel,
    vectors: EmotionVectors,
    text: str | None,
    messages: list[dict[str, str]] | None,
    reply_tokens: int | None,
    layers_spec: str | None,
    seed: int,
) -> tuple[Reading, list[dict[str, str]] | None]:
    """Let the model write the reply (at most ``reply_tokens`` tokens; None: no reply), then read it all;
    returns the reading and the messages."""
    from steerlab.core.checks import parse_layers
    from steerlab.read.scope import ScopeConfig, generate_reply, read_conversation, read_text

    config = ScopeConfig(layers=tuple(parse_layers(layers_spec, vectors.n_layers)) if layers_spec else (), seed=seed)
    if reply_tokens is not None:
        say(f"generating the reply ({reply_tokens} tokens max) ...")
        messages = generate_reply(lm, messages or [], reply_tokens, seed)
    if messages:
        return read_conversation(lm, vectors, messages, config), messages
    return read_text(lm, vectors, str(text), config), messages


def _print_reading(r: Reading, top: int) -> None:
    from steerlab.core.display import strongest_text

    for li, layer in enumerate(r.layers):
        s = r.scores[li]
        click.echo(
            f"layer {layer}  ({r.template}; cosine with centred activations; noise floor ±{r.noise_floor[li]:.3f})"
        )
        if len(r.layers) == 1:
            for p, tok in enumerate(r.tokens):
                shown = json.dumps(tok, ensure_ascii=False)[:18]
                click.echo(f"  {p:4d} {r.roles[p][:9]:9} {shown:18} {strongest_text(r.emotions, s[p], top)}")
        click.echo("  per turn:")
        for i, role, mean in r.turn_means(layer):
            click.echo(f"    {i:2d} {role:9} {strongest_text(r.emotions, mean, top)}")
        click.echo("  readout points:")
        for name, pos in r.points.items():
            where = (
                f"token {pos[0]} {json.dumps(r.tokens[pos[0]], ensure_ascii=False)}"
                if len(pos) == 1
                else f"{len(pos)} tokens"
            )
            click.echo(f"    {name:9} {strongest_text(r.emotions, r.readout(name, layer), top)}   ({where})")
