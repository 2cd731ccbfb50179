"""``steerlab scope | report``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .common import check_out, cli, echo_json, get_vectors_and_model, model_options, say, vector_meta

if TYPE_CHECKING:  # steerlab's modules load torch: they are imported inside the commands
    import numpy as np

    from ..scope import Reading


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
    from ..checks import parse_layers
    from ..errors import SteerlabError

    if (text is None) == (conversation_path is None):
        raise SteerlabError('give either TEXT or --conversation FILE (e.g. steerlab scope "I can\'t sleep")')
    if text is not None and not text.strip():
        raise SteerlabError("empty TEXT: give some text to read")
    if plot_path:
        if not plot_path.lower().endswith((".png", ".svg", ".pdf")):
            raise SteerlabError(f"--plot {plot_path!r} must end in .png, .svg or .pdf")
        check_out(plot_path, "--plot", force=force)
        from ..extras import require

        require("plots", "--plot")
    meta = vector_meta(vectors_path, model_spec)  # before torch: a missing file or bad --layers answers at once
    if layers_spec and isinstance(meta.get("n_layers"), int):
        parse_layers(layers_spec, meta["n_layers"])

    from ..scope import ScopeConfig, generate_reply, load_conversation, read_conversation, read_text

    messages = load_conversation(conversation_path) if conversation_path else None
    if do_generate and messages is None:
        messages = [{"role": "user", "content": str(text)}]
    vectors, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    config = ScopeConfig(layers=tuple(parse_layers(layers_spec, vectors.n_layers)) if layers_spec else (), seed=seed)
    if do_generate:
        say(f"generating the reply ({max_new_tokens} tokens max) ...")
        messages = generate_reply(lm, messages or [], max_new_tokens, seed)
    reading = (
        read_conversation(lm, vectors, messages, config) if messages else read_text(lm, vectors, str(text), config)
    )
    if plot_path:
        from ..plots import plot_scope

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


def _top(scores: np.ndarray, emotions: tuple[str, ...], k: int) -> str:
    from ..readers import strongest_text

    return strongest_text(emotions, scores, k)


def _print_reading(r: Reading, top: int) -> None:
    for li, layer in enumerate(r.layers):
        s = r.scores[li]
        click.echo(
            f"layer {layer}  ({r.template}; cosine with centred activations; noise floor ±{r.noise_floor[li]:.3f})"
        )
        if len(r.layers) == 1:
            for p, tok in enumerate(r.tokens):
                shown = json.dumps(tok, ensure_ascii=False)[:18]
                click.echo(f"  {p:4d} {r.roles[p][:9]:9} {shown:18} {_top(s[p], r.emotions, top)}")
        click.echo("  per turn:")
        for i, role, mean in r.turn_means(layer):
            click.echo(f"    {i:2d} {role:9} {_top(mean, r.emotions, top)}")
        click.echo("  readout points:")
        for name, pos in r.points.items():
            where = (
                f"token {pos[0]} {json.dumps(r.tokens[pos[0]], ensure_ascii=False)}"
                if len(pos) == 1
                else f"{len(pos)} tokens"
            )
            click.echo(f"    {name:9} {_top(r.readout(name, layer), r.emotions, top)}   ({where})")


@cli.command("report")
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors of the model)."
)
@model_options
@click.option("--out", required=True, help="Output .html file (self-contained: images inline, no network).")
@click.option(
    "--external", "external", default=None, help="Extra intensity scales in EmotionScope's or steerlab's format."
)
@click.option("--no-generate", is_flag=True, help="Skip the scope example whose reply the model generates.")
@click.option("--json", "as_json", is_flag=True, help="Print the key numbers as one JSON object.")
def report_cmd(
    vectors_path: str | None,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    out: str,
    external: str | None,
    no_generate: bool,
    as_json: bool,
) -> None:
    """Layer sweep, geometry, intensity scales, dual speaker and scope examples in one HTML file.

    Every analysis reads at the vectors' reading layer."""
    from ..errors import SteerlabError
    from ..extras import require

    require("plots", "steerlab report")
    from ..intensity import load_scales
    from ..report import ReportConfig, build_report

    if not out.endswith((".html", ".htm")):
        raise SteerlabError(f"--out {out!r} must end in .html")
    check_out(out, "--out", force=True)
    if external:
        load_scales(external)  # fail before the expensive passes
    vectors, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    path, numbers = build_report(
        lm,
        vectors,
        out,
        ReportConfig(external_scales=external, generate=not no_generate),
        progress=lambda m: say(f"report: {m} ..."),
    )
    if as_json:
        echo_json(numbers)
        return
    ds = numbers["dual_speaker"]
    click.echo(
        f"dual speaker (layer {ds['layer']}): mean cos(current, other) {ds['mean_cos_matched']:+.3f}, "
        f"mismatched {ds['mean_cos_mismatched']:+.3f}, random ±{ds['random_bound']:.3f}"
    )
    for name, c in ds["thermostat"].items():
        click.echo(f"  thermostat {name:9} r {c['r']:+.3f}  p {c['p']:.3g}  n {c['n']}")
    for label, points in numbers["intensity"].items():
        for point, s in points.items():
            click.echo(
                f"intensity {label} at {point}: {s['right_sign']}/{s['relations']} expected sign "
                f"({s['strong_right']} strong), {s['significant_right']} significant right, "
                f"{s['significant_wrong']} significant wrong"
            )
    geo = numbers.get("geometry")
    if isinstance(geo, dict):
        click.echo(
            f"geometry (layer {numbers['reading_layer']}): PC1~valence r {geo['pc1_valence']['r']:+.3f} "
            f"(p {geo['pc1_valence']['p']:.3g}), PC2~arousal r {geo['pc2_arousal']['r']:+.3f}"
        )
    click.echo(f"wrote {path}")
