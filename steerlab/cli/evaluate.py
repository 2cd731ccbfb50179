"""``steerlab evaluate``: a reader checked at every layer on labelled texts or on judged replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from steerlab.cli.common import cli, echo_json, get_model, get_vectors, model_options, say, vector_meta
from steerlab.core.errors import SteerlabError
from steerlab.core.names import READER_NAMES

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.read.reader_choice import ReaderScore


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
    from steerlab.core.corpus import load_corpus
    from steerlab.read.reader_choice import evaluate_reader
    from steerlab.read.readers import READERS, check_covers

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
    if as_json:
        echo_json(
            {
                "reader": name,
                "reading_layer": v.reading_layer,
                "layered": READERS[name].layered,
                "steering_layer": v.steering_layer,
                "in_context": c.contexts is not None,
                "layers": [r.row() for r in rows],
            }
        )
        return
    _print_layers(rows, name, v.reading_layer)


def _print_layers(rows: Sequence[ReaderScore], name: str, reading: int) -> None:
    """One row per layer (top-1, top-3, macro AUROC, length-adjusted), then each emotion's AUROC at ``reading``."""
    import numpy as np
    import pandas as pd

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
    from steerlab.read.judged import judged_by_layer, load_judged

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
