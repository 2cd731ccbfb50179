"""How far a suite's readers can be trusted: validity on the model's own judged replies
(``steerlab fit-reader``) and on written labelled replies, reported beside every verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steerlab.core.corpus import load_corpus
from steerlab.read.reader_choice import evaluate_reader
from steerlab.read.readers import get_reader
from steerlab.validate.prompts import resolve_path
from steerlab.validate.spec import Suite

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel


def reader_validation(
    lm: LoadedModel, vectors: EmotionVectors, suite: Suite, readers: list[str], layer: int
) -> dict[str, Any]:
    """Each reader's validity: on the model's own judged replies (``fit-reader``: held-out messages, at the
    file's reading layer) as ``model_replies``, and on written replies: the suite's labelled replies
    (``measurement.validate_on``, at the layer the suite reads), else the file's reader-selection figure."""
    out: dict[str, Any] = {
        name: {"model_replies": model_reply_validity(vectors, lm.model_id, name)} for name in readers
    }
    if suite.measurement.validate_on:
        path = resolve_path(suite.measurement.validate_on, suite.path)
        corpus = load_corpus(path, min_per_emotion=1)
        for name in readers:
            rows = evaluate_reader(lm, vectors, corpus.texts, corpus.labels, name, corpus.contexts)
            row = next((r for r in rows if r.layer == layer), rows[0])
            out[name] |= {
                "validated_on": str(suite.measurement.validate_on),
                "n": len(corpus.texts),
                "auroc": row.auroc,
                "auroc_length_adjusted": row.auroc_length_adjusted,
                "macro_auroc": row.macro_auroc,
            }
        return out
    selection = vectors.meta.get("reading", {}).get("selection_macro_auroc", {})
    for name in readers:
        table = selection.get(name, {})
        value = table.get(str(layer if get_reader(name).layered else "-"))
        out[name] |= {"validated_on": "the vector file's reader-selection replies", "macro_auroc": value}
    return out


MODEL_REPLY_KEYS = (
    "n",
    "coverage",
    "macro_auroc",
    "spearman_hopeful",
    "auroc_hopeful_3plus",
    "spearman_desperate",
    "auroc_desperate_3plus",
)


def model_reply_validity(vectors: EmotionVectors, model_id: str, reader: str) -> dict[str, Any] | None:
    """How ``reader`` agrees with blind judgements of this model's own replies (``steerlab fit-reader``),
    or None when that was never measured for this model."""
    record = vectors.meta.get("judged_validation") or {}
    if record.get("model") != model_id:
        return None
    figures = (record.get("readers") or {}).get("reply (written + judged)" if reader == "reply" else reader)
    if figures is None:
        return None
    return {
        **{k: figures.get(k) for k in MODEL_REPLY_KEYS},
        "test_messages": record.get("test_messages"),
        "incoherent_recall": record["incoherence"]["rule"]["recall"],
        "source": record.get("source"),
    }
