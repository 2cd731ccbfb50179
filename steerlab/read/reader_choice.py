"""Readers judged on labelled data, and the choice of the default reader.

:func:`evaluate_reader` scores a reader at every layer on labelled texts or replies (top-1/top-3,
one-vs-rest AUROC raw and with length regressed out); :func:`choose_reader` fits the reply reader
and picks the default reader under ``READER_RULE`` when a vector file is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from steerlab.core.errors import SteerlabError
from steerlab.read.readers import INCOHERENT, READERS, get_reader, pooled_features
from steerlab.read.ridge import RidgeFit, fit_ridge

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel


@dataclass(frozen=True)
class ReaderScore:
    """How well one reader reads a labelled corpus at one layer (``None``: a reader without layers)."""

    layer: int | None
    top1: float  # argmax over the corpus's emotions, on rows labelled with one of them
    top3: float
    n: int  # rows labelled with one of the vectors' emotions
    auroc: dict[str, float]  # one-vs-rest per emotion present as a label; every other row is a negative
    auroc_length_adjusted: dict[str, float]  # the same after regressing the scores on log word count
    macro_auroc: float  # mean of ``auroc``

    def row(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "top1": self.top1,
            "top3": self.top3,
            "n": self.n,
            "auroc": self.auroc,
            "auroc_length_adjusted": self.auroc_length_adjusted,
            "macro_auroc": self.macro_auroc,
        }


def word_count(text: str) -> int:
    return len(text.split())


def score_readings(
    scores: np.ndarray, labels: Sequence[str], emotions: Sequence[str], texts: Sequence[str], layer: int | None
) -> ReaderScore:
    """Top-1/top-3 and per-emotion AUROC, raw and with length regressed out of every score column."""
    from steerlab.read.probes import auroc as roc_auc

    present = [e for e in emotions if e in set(labels)]
    cols = [emotions.index(e) for e in present if np.isfinite(scores[:, emotions.index(e)]).all()]
    y = np.array(labels)
    length = np.log1p([word_count(t) for t in texts])
    design = np.stack([np.ones_like(length), length], axis=1)
    auroc, adjusted = {}, {}
    for c in cols:
        positive = y == emotions[c]
        if positive.all() or not positive.any():
            continue
        column = scores[:, c]
        residual = column - design @ np.linalg.lstsq(design, column, rcond=None)[0]
        auroc[emotions[c]] = roc_auc(positive, column)
        adjusted[emotions[c]] = roc_auc(positive, residual)
    labelled = np.array([lab in present for lab in labels])
    top1 = top3 = float("nan")
    if labelled.any() and cols:
        sub = scores[labelled][:, cols]
        truth = np.array(
            [cols.index(emotions.index(lab)) if emotions.index(lab) in cols else -1 for lab in y[labelled]]
        )
        order = np.argsort(-sub, axis=1)
        top1 = float(np.mean(order[:, 0] == truth))
        top3 = float(np.mean((order[:, :3] == truth[:, None]).any(axis=1)))
    macro = float(np.mean(list(auroc.values()))) if auroc else float("nan")
    return ReaderScore(layer, top1, top3, int(labelled.sum()), auroc, adjusted, macro)


def evaluate_reader(
    lm: LoadedModel | None,
    vectors: EmotionVectors,
    texts: Sequence[str],
    labels: Sequence[str],
    reader: str,
    contexts: Sequence[str] | None = None,
    batch_size: int = 16,
    features: np.ndarray | None = None,
) -> list[ReaderScore]:
    """One :class:`ReaderScore` per layer (one in all for a reader without layers).

    Labels that are not emotions of the vectors (``neutral``, say) are negatives for every emotion.
    """
    chosen = get_reader(reader)
    emotions = list(vectors.emotions)
    if not chosen.layered:
        return [score_readings(chosen.score(vectors, None, texts, 0), labels, emotions, texts, None)]
    if features is None:
        if lm is None:
            raise SteerlabError("a layered reader needs the model or precomputed features")
        features = pooled_features(lm, texts, contexts, batch_size, vectors.skip_tokens)
    feats = features
    return [
        score_readings(chosen.score(vectors, feats[:, layer], texts, layer), labels, emotions, texts, layer)
        for layer in range(vectors.n_layers)
    ]


# --- the reply reader and the default reader ---------------------------------------------------

READER_RULE = (
    "default reader = the reader with the highest macro one-vs-rest AUROC at the file's reading layer on "
    "half of the labelled replies' messages; the reply reader is fitted on the other half for that choice, "
    "then refitted on all replies"
)


REPLY_TARGETS = (
    "per reply and label, 1 if the reply carries that label and 0 otherwise; for a scale the judge rated "
    "(hopeful, desperate, calm) the judged 1-5 rating mapped onto 0-1"
)


def reply_targets(
    labels: Sequence[str], ratings: Mapping[str, np.ndarray] | None = None
) -> tuple[np.ndarray, list[str]]:
    """What the reply reader predicts (``REPLY_TARGETS``): (replies, classes) and its classes (sorted).
    ``ratings`` maps a judged scale to (replies,) 1-5 ratings, nan for a reply nobody rated (a written one)."""
    rated = dict(ratings or {})
    classes = sorted(set(labels) | set(rated))
    targets = np.zeros((len(labels), len(classes)))
    targets[np.arange(len(labels)), [classes.index(lab) for lab in labels]] = 1.0
    for scale, values in rated.items():
        known = np.isfinite(values)
        targets[known, classes.index(scale)] = (values[known] - 1.0) / 4.0
    return targets, classes


def fit_reply_reader(
    features: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str],
    ratings: Mapping[str, np.ndarray] | None = None,
    weights: np.ndarray | None = None,
) -> tuple[RidgeFit, list[str]]:
    """The reply reader at every layer (weights (layers, classes, hidden)) and its classes: ridge heads
    that predict ``reply_targets`` from the replies' pooled activations ``features`` (replies, layers,
    hidden), penalties chosen by cross-validation grouped by user message (``groups``); ``weights``
    (replies,): how much each reply counts (default: each once)."""
    targets, classes = reply_targets(labels, ratings)
    return fit_ridge(features, targets, groups, weights), classes


def reply_predictions(
    weight: np.ndarray, bias: np.ndarray, classes: Sequence[str], feats: np.ndarray, emotions: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The reply reader at one layer: (scores (texts, emotions), nan for emotions it was not fitted on;
    predicted ``incoherent`` (texts,), zeros when it has no such class)."""
    predicted = feats.astype(np.float64) @ np.asarray(weight, dtype=np.float64).T + np.asarray(bias, dtype=np.float64)
    out = np.full((len(feats), len(emotions)), np.nan)
    for j, label in enumerate(classes):
        if label in emotions:
            out[:, list(emotions).index(label)] = predicted[:, j]
    broken = predicted[:, list(classes).index(INCOHERENT)] if INCOHERENT in classes else np.zeros(len(feats))
    return out, broken


def reply_readings(v: EmotionVectors, feats: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """The reply reader's (scores (texts, emotions), predicted incoherent (texts,)) at ``layer``."""
    meta = v.meta.get("reply_reader") or {}
    if v.reply_weight is None or v.reply_bias is None:
        raise SteerlabError("this vector file has no reply reader: re-run `steerlab extract`, or use --reader vector")
    if "predicts" not in meta:  # a classifier's log-odds read as intensities would mislead, not fail
        raise SteerlabError(
            "this vector file's reply reader is the classifier of an older steerlab: run `steerlab fit-reader` "
            "or `steerlab extract` again, or use --reader vector"
        )
    weight, bias = v.reply_weight[layer].numpy(), v.reply_bias[layer].numpy()
    return reply_predictions(weight, bias, meta["labels"], feats, v.emotions)


def with_reply_reader(
    vectors: EmotionVectors,
    features: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str],
    provenance: dict[str, object],
    ratings: Mapping[str, np.ndarray] | None = None,
    weights: np.ndarray | None = None,
) -> EmotionVectors:
    """``vectors`` with the reply reader fitted on ``features`` (texts, layers, hidden)."""
    from dataclasses import replace

    fit, classes = fit_reply_reader(features, labels, groups, ratings, weights)
    at = vectors.reading_layer
    meta = {
        **vectors.meta,
        "reply_reader": {
            **provenance,
            "labels": classes,
            "predicts": REPLY_TARGETS,
            "penalty_at_reading_layer": dict(zip(classes, fit.penalty[at].tolist(), strict=True)),
        },
    }
    weight, bias = torch.from_numpy(fit.weight.astype(np.float32)), torch.from_numpy(fit.bias.astype(np.float32))
    return replace(vectors, reply_weight=weight, reply_bias=bias, meta=meta)


def choose_reader(
    vectors: EmotionVectors,
    features: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    contexts: Sequence[str],
    seed: int,
    provenance: dict[str, object],
    step: Callable[[str, int, int], None] | None = None,
) -> EmotionVectors:
    """Fit the reply reader and choose the default reader at the reading layer under ``READER_RULE``.

    ``features`` are the replies' pooled activations in conversation (texts, layers, hidden);
    ``step("reader choice", done, total)`` follows the fits and the readers scored.
    """
    total = len(READERS) + 2
    say = step or (lambda *_: None)
    messages = sorted(set(contexts))
    rng = np.random.default_rng(seed)
    select = set(rng.permutation(messages)[: len(messages) // 2].tolist())
    is_sel = np.array([ctx in select for ctx in contexts])
    fit_rows, sel_rows = np.flatnonzero(~is_sel), np.flatnonzero(is_sel)
    half_labels = [labels[int(i)] for i in fit_rows]
    say("reader choice", 0, total)
    half = with_reply_reader(vectors, features[fit_rows], half_labels, [contexts[int(i)] for i in fit_rows], provenance)
    say("reader choice", 1, total)
    sel_texts, sel_labels = [texts[int(i)] for i in sel_rows], [labels[int(i)] for i in sel_rows]
    table: dict[str, dict[str, float]] = {}
    for name, spec in READERS.items():
        if not spec.installed or not spec.every_emotion:  # e.g. the lexicon reader without its extra
            continue
        rows = evaluate_reader(
            None, half, sel_texts, sel_labels, name, features=features[sel_rows] if spec.layered else None
        )
        table[name] = {str(r.layer if r.layer is not None else "-"): r.macro_auroc for r in rows}
        say("reader choice", len(table) + 1, total)
    layer = vectors.reading_layer
    at_layer = {n: scores.get(str(layer), scores.get("-", float("nan"))) for n, scores in table.items()}
    best_name = max(at_layer, key=lambda n: np.nan_to_num(at_layer[n], nan=-1.0))
    final = with_reply_reader(vectors, features, labels, contexts, provenance)
    say("reader choice", total, total)
    reading = {
        "reader": best_name,
        "layer": int(layer),
        "rule": READER_RULE,
        "selection_macro_auroc": table,
        "n_fit_messages": len(messages) - len(select),
        "n_select_messages": len(select),
    }
    return _with_meta(final, reading=reading)


def _with_meta(vectors: EmotionVectors, **items: object) -> EmotionVectors:
    from dataclasses import replace

    return replace(vectors, meta={**vectors.meta, **items})
