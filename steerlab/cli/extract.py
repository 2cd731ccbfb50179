"""``steerlab models | corpus | extract | evaluate``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import SteerlabError
from ..names import (
    DEFAULT_METHOD,
    DEFAULT_READOUT,
    DEFAULT_SKIP_TOKENS,
    EMBEDDED,
    METHOD_NAMES,
    READER_NAMES,
    READOUT_NAMES,
)

if TYPE_CHECKING:
    from ..vectors import EmotionVectors
from .common import Phases, check_out, cli, echo_json, get_model, get_vectors, model_options, say, vector_meta


@cli.command()
def models() -> None:
    """List the built-in model specs with layers, hidden size and cache state."""
    from ..models import KNOWN_SPECS, is_cached, model_shape

    click.echo(f"{'spec':22} {'layers':>6} {'hidden':>6}  cached")
    for spec in KNOWN_SPECS:
        layers, hidden = model_shape(spec)
        click.echo(f"{spec:22} {layers:>6} {hidden:>6}  {'yes' if is_cached(spec) else 'no (built on first use)'}")
    click.echo("Any Hugging Face id or local path also works, e.g. --model google/gemma-2-2b-it.")


@cli.group()
def corpus() -> None:
    """Inspect emotion corpora (JSONL: text, emotion, optional topic/speaker/split/style)."""


@corpus.command("stats")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def corpus_stats_cmd(path: str | None, as_json: bool) -> None:
    """Counts, lengths, duplicates and self-naming texts (PATH default: the built-in corpus)."""
    import pandas as pd

    from ..corpus import corpus_stats, load_corpus

    stats = corpus_stats(load_corpus(path))
    if as_json:
        echo_json(stats)
        return
    click.echo(
        f"{stats['source']}  sha256 {str(stats['sha256'])[:12]}  "
        f"{stats['n_texts']} texts, {stats['n_emotions']} emotions; styles: "
        + ", ".join(f"{k} {v}" for k, v in stats["styles"].items())
    )
    table = pd.DataFrame.from_dict(stats["per_emotion"], orient="index")
    click.echo(table.to_string(float_format=lambda v: f"{v:.1f}"))
    click.echo(f"duplicates: {len(stats['duplicates'])}   texts naming their own emotion: {len(stats['self_naming'])}")
    for item in stats["self_naming"][:20]:
        click.echo(f"  #{item['index']} ({item['emotion']}): {item['word']!r}")


@corpus.command("validate")
@click.argument("path")
def corpus_validate_cmd(path: str) -> None:
    """Check a corpus file; exit 2 with the first problem, 0 when it loads."""
    from ..corpus import corpus_stats, load_corpus

    c = load_corpus(path)
    stats = corpus_stats(c)
    problems = len(stats["duplicates"]) + len(stats["self_naming"])
    click.echo(
        f"ok: {len(c.records)} texts, {len(c.emotions)} emotions; {len(stats['duplicates'])} duplicates, "
        f"{len(stats['self_naming'])} texts name their own emotion"
    )
    if problems:
        raise SteerlabError(f"{path}: fix the duplicates / self-naming texts listed by `steerlab corpus stats {path}`")


@cli.command("extract")
@model_options
@click.option("--corpus", "corpus_path", default=None, help="JSONL corpus (default: the built-in one).")
@click.option("--method", type=click.Choice(METHOD_NAMES), default=DEFAULT_METHOD, show_default=True)
@click.option(
    "--out",
    default=None,
    help="Output .safetensors (default: <cache>/vectors/<model>/emotions.safetensors, see `steerlab models`).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--test-fraction", default=0.25, show_default=True, type=float, help="Held-out share per emotion.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 1024))
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(8, 8192))
@click.option(
    "--readout",
    type=click.Choice(READOUT_NAMES),
    default=DEFAULT_READOUT,
    show_default=True,
    help="Positions pooled per text: mean of its tokens, its last token, or prep (the text as a user turn, "
    "read where the model is about to reply).",
)
@click.option(
    "--skip-tokens",
    default=DEFAULT_SKIP_TOKENS,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="Content tokens skipped at the start of each text (mean readout).",
)
def extract_cmd(
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    corpus_path: str | None,
    method: str,
    out: str | None,
    force: bool,
    seed: int,
    test_fraction: float,
    batch_size: int,
    max_length: int,
    readout: str,
    skip_tokens: int,
) -> None:
    """Extract one direction per emotion at every layer and sweep the layers on held-out texts."""
    import time

    from ..corpus import load_corpus
    from ..vectorfile import side_files, user_vectors

    start = time.perf_counter()
    if not 0 < test_fraction < 1:
        raise SteerlabError(f"--test-fraction {test_fraction} must lie between 0 and 1, e.g. 0.25")
    target = Path(out) if out else user_vectors(model_spec or EMBEDDED)
    if target.suffix != ".safetensors":
        raise SteerlabError(f"--out {str(target)!r} must end in .safetensors")
    sides = side_files(target)
    for path in (target, *sides.values()):
        check_out(path, "--out", force=force)
    c = load_corpus(corpus_path)  # everything above needs no torch: errors answer at once
    _claim(target, (target, *sides.values()), force)

    from ..activations import PoolingConfig
    from ..extraction import ExtractConfig, extract

    lm = get_model(model_spec, revision, dtype)
    load = time.perf_counter() - start
    config = ExtractConfig(
        method=method,  # type: ignore[arg-type]  # click.Choice checked it
        test_fraction=test_fraction,
        seed=seed,
        pooling=PoolingConfig(batch_size, max_length, skip_tokens, readout),  # type: ignore[arg-type]
    )
    units = {
        "forward": "text",
        "directions": "layer",
        "probes": "fit",
        "reply forward": "reply",
        "reader choice": "step",
    }
    with Phases(units) as phases:
        pooled = [0]

        def tick(n_texts: int, n_tokens: int) -> None:
            pooled[0] += n_texts
            phases("forward", pooled[0], len(c.records), n_tokens)

        result = extract(lm, c, config, tick, phases)
    timing = {"load": round(load, 2), **result.timing, "total": round(time.perf_counter() - start, 2)}
    v = replace(result.vectors, meta={**result.vectors.meta, "timing": timing})  # the file records its run
    say(
        f"{len(c.records)} texts, {result.pooled.n_tokens} content tokens in {result.pooled.seconds:.1f}s "
        f"({result.pooled.n_tokens / result.pooled.seconds:.0f} tok/s); phases (s): {timing}"
    )
    import pandas as pd

    from ..vectors import save_vectors

    table = pd.DataFrame([r.row() for r in result.sweep]).set_index("layer")
    click.echo(table.to_string(float_format=lambda x: f"{x:.3f}"))
    click.echo(
        f"chance top-1 = {1 / len(v.emotions):.3f} ({len(v.emotions)} emotions); "
        f"best layer {v.meta['best_layer']}, steering layer {v.steering_layer}, reading layer {v.reading_layer} "
        f"({v.default_reader} reader)"
    )
    click.echo(f"layers chosen {v.meta['selection']}; rule: {v.meta['layer_rule']}")
    if lm.is_random:
        click.echo("note: random weights — these vectors test the plumbing and say nothing about emotions")
    from ..parallel import is_main

    if not is_main():
        return  # rank 0 writes
    save_vectors(v, target)
    table.to_csv(sides["sweep_csv"], float_format="%.6f")
    if "sweep_png" in sides:
        from ..plots import plot_layer_sweep

        plot_layer_sweep(
            result.sweep,
            v.steering_layer,
            len(v.emotions),
            sides["sweep_png"],
            title=f"{lm.spec} · {method} · {readout} readout · {c.source}",
            reading=v.reading_layer,
        )
    click.echo(f"wrote {target}, {', '.join(p.name for p in sides.values())}")
    if "sweep_png" not in sides:
        say("no layer_sweep.png: the figure needs matplotlib, pip install 'steerlab[plots]'")
    if not out:
        say(f"use them with --vectors {target}")


def _claim(target: Path, outputs: tuple[Path, ...], force: bool) -> None:
    """Hold ``target`` until the command ends, then check the outputs again: a run that finished in the
    meantime has written them."""
    from ..files import claimed
    from ..parallel import is_main

    if is_main():  # under torchrun rank 0 writes
        click.get_current_context().with_resource(claimed(target))
        for path in outputs:
            check_out(path, "--out", force=force)


@cli.command("evaluate")
@click.option("--vectors", "vectors_path", required=True, help="A vector file from `steerlab extract`.")
@click.option(
    "--corpus",
    "corpus_path",
    default=None,
    help="Labelled JSONL: text, emotion, optional context (the user message a reply answers).",
)
@click.option(
    "--judged",
    "judged_paths",
    multiple=True,
    help="Instead of --corpus: the model's own replies judged blind (see `fit-reader`); repeatable.",
)
@click.option(
    "--reader",
    "reader_name",
    type=click.Choice(READER_NAMES),
    default=None,
    help="Reader to validate (default: the vector file's validated default).",
)
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 1024))
def evaluate_cmd(
    vectors_path: str,
    corpus_path: str | None,
    judged_paths: tuple[str, ...],
    reader_name: str | None,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    as_json: bool,
    batch_size: int,
) -> None:
    """Validate a reader on a labelled corpus at every layer: top-1/top-3 and one-vs-rest AUROC.

    Rows whose label is not an emotion of the vectors (e.g. "neutral") are negatives for every emotion.
    Rows with a "context" are read as the model's reply to that message (only the reply is pooled).
    With --judged: Spearman with the judged scales and AUROC per judged label, incoherent replies unread.
    """
    if (corpus_path is None) == (not judged_paths):
        raise SteerlabError("give either --corpus FILE (labelled texts) or --judged FILE (judged replies of the model)")
    vector_meta(vectors_path, None)  # before torch: a missing or broken file answers at once
    import numpy as np
    import pandas as pd

    from ..corpus import load_corpus
    from ..reader_choice import evaluate_reader
    from ..readers import READERS, check_covers

    v = get_vectors(vectors_path, None)
    if judged_paths:
        _evaluate_judged(v, judged_paths, reader_name or v.default_reader, model_spec, revision, dtype, as_json)
        return
    assert corpus_path is not None
    c = load_corpus(corpus_path, min_per_emotion=1)
    name = reader_name or v.default_reader
    check_covers(v, name, c.labels)
    lm = get_model(model_spec or v.meta.get("model_spec"), revision, dtype)
    v.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    rows = evaluate_reader(lm, v, c.texts, c.labels, name, c.contexts, batch_size)
    reading = v.reading_layer
    if as_json:
        echo_json(
            {
                "reader": name,
                "reading_layer": reading,
                "layered": READERS[name].layered,
                "steering_layer": v.steering_layer,
                "in_context": c.contexts is not None,
                "layers": [r.row() for r in rows],
            }
        )
        return
    table = pd.DataFrame(
        [
            {
                "layer": r.layer,
                "top1": r.top1,
                "top3": r.top3,
                "macro AUROC": r.macro_auroc,
                "length-adjusted": float(np.mean(list(r.auroc_length_adjusted.values())))
                if r.auroc_length_adjusted
                else float("nan"),
            }
            for r in rows
        ]
    ).set_index("layer")
    click.echo(table.to_string(float_format=lambda x: f"{x:.3f}"))
    at = next((r for r in rows if r.layer == reading), rows[0])
    click.echo(
        f"reader {name}, reading layer {reading}: "
        + ", ".join(f"{e} {a:.3f}" for e, a in sorted(at.auroc.items(), key=lambda kv: -kv[1]))
    )


def _evaluate_judged(
    v: EmotionVectors,
    paths: tuple[str, ...],
    name: str,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    as_json: bool,
) -> None:
    from ..judged import judged_by_layer, load_judged

    judged = load_judged(paths, v.emotions)
    lm = get_model(model_spec or v.meta.get("model_spec"), revision, dtype)
    v.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    if (v.meta.get("judged_validation") or {}).get("sha256") == judged.sha256:
        say("note: the file's reply reader was fitted on these replies: its figures here are in-sample")
    rows = judged_by_layer(lm, v, judged, name)
    if as_json:
        echo_json({"reader": name, "reading_layer": v.reading_layer, "judged": judged.source, "layers": rows})
        return
    keys = ("n", "coverage", "macro_auroc", "spearman_hopeful", "auroc_hopeful_3plus", "spearman_desperate")
    for r in rows:
        click.echo(
            f"layer {'-' if r['layer'] is None else r['layer']:>3}  "
            + "  ".join(f"{k} {'–' if r[k] is None else format(r[k], '.3g')}" for k in keys)
        )


@cli.command("fit-reader")
@click.option("--vectors", "vectors_path", required=True, help="A vector file from `steerlab extract`.")
@click.option(
    "--judged",
    "judged_paths",
    required=True,
    multiple=True,
    help="The model's own replies judged blind (JSONL: user, reply, label, hopeful, desperate, calm 1-5); repeatable.",
)
@click.option("--replies", "replies_path", default=None, help="Written labelled replies (default: the built-in ones).")
@click.option("--heldout", "heldout_path", default=None, help="Written replies to other messages, for a second figure.")
@click.option("--out", required=True, help="The new vector file (.safetensors); --force to overwrite.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file (it may be --vectors itself).")
@click.option("--report", "report_path", default=None, help="Also write the validation record to this JSON file.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split by user message.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the validation record as one JSON object.")
def fit_reader_cmd(
    vectors_path: str,
    judged_paths: tuple[str, ...],
    replies_path: str | None,
    heldout_path: str | None,
    out: str,
    force: bool,
    report_path: str | None,
    seed: int,
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    as_json: bool,
) -> None:
    """Validate every reader on the model's own replies judged blind, choose the default reader on them,
    and refit the reply reader on written and judged replies together (one emotion per judged label;
    replies judged incoherent teach it what is not to be read)."""
    import json

    from ..corpus import BUILTIN_REPLIES, load_corpus
    from ..files import atomic_write

    target = Path(out)
    if target.suffix != ".safetensors":
        raise SteerlabError(f"--out {str(target)!r} must end in .safetensors")
    check_out(target, "--out", force=force)
    if report_path:
        if Path(report_path).resolve() == target.with_suffix(".json").resolve():
            raise SteerlabError(f"--report {report_path!r} is the vector file's own .json: choose another --report")
        check_out(Path(report_path), "--report", force=True)
    vector_meta(vectors_path, None)  # before torch: a missing or broken file answers at once
    written = load_corpus(replies_path, min_per_emotion=1, builtin=BUILTIN_REPLIES)
    heldout = load_corpus(heldout_path, min_per_emotion=1) if heldout_path else None

    from ..gate import refresh_gates
    from ..judged import fit_on_judged, load_judged
    from ..vectors import save_vectors

    v = get_vectors(vectors_path, None)
    judged = load_judged(judged_paths, v.emotions)
    lm = get_model(model_spec or v.meta.get("model_spec"), revision, dtype)
    v.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    fitted, record = fit_on_judged(lm, v, written, judged, seed=seed, heldout=heldout, note=say)
    fitted = refresh_gates(lm, fitted, note=say)  # thresholds are in the units of the reader just refitted
    save_vectors(fitted, target)
    if report_path:
        atomic_write(Path(report_path), lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    if as_json:
        echo_json(record)
        return
    click.echo(f"on {record['test_replies']} judged replies to {record['test_messages']} held-out messages:")
    for name, f in record["readers"].items():
        macro = f["macro_auroc"]
        rho = f["spearman_hopeful"]
        click.echo(
            f"  {name:26} macro AUROC {'–' if macro is None else format(macro, '.3f')}  "
            f"Spearman hopeful {'–' if rho is None else format(rho, '+.3f')}  "
            f"AUROC hopeful>=3 {f['auroc_hopeful_3plus'] or '–'}"
        )
    inc = record["incoherence"]["rule"]
    click.echo(f"  incoherent replies caught: recall {inc['recall']:.2f}, precision {inc['precision']:.2f}")
    click.echo(f"default reader: {record['chosen']}; wrote {target}")
