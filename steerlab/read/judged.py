"""Readers against blind judgements of the model's *own* replies, and the reply reader refitted on them.

A judged set is JSONL, one reply per line, as ``eval/labels/`` writes it::

    {"user": ..., "reply": ..., "label": EMOTION | "neutral" | "incoherent",
     "hopeful": 1-5, "desperate": 1-5, "calm": 1-5, "coherence": 1-5}

:func:`fit_on_judged` splits the judged replies by user message into seeded halves; fits the reply
reader (its targets: each label's indicator, and the judged ratings of hopeful, desperate and calm) on
written replies alone, on the judged half alone and on both; scores every reader and two
model-free baselines (a bag of words, reply length) on the other half (:func:`judged_figures`);
chooses the default reader there (``JUDGED_RULE``); refits the reply reader on everything; and records
all of it in the file's metadata (``meta["judged_validation"]``), which the suites report beside every
verdict and require before they give one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab.core.corpus import Corpus
from steerlab.core.errors import SteerlabError
from steerlab.read.coherence import degenerate_reasons, incoherence_threshold
from steerlab.read.judge import fit_judged_rows, judge_per_layer, judge_scores, with_judge
from steerlab.read.judged_set import (
    SCALES,
    Judged,
    bag_of_words,
    incoherence_figures,
    judged_figures,
    source_weights,
    subset,
    tie_ceiling,
)
from steerlab.read.judged_set import load_judged as load_judged  # re-exported: fit-reader reads judged sets from here
from steerlab.read.readers import INCOHERENT, INCOHERENT_P, READERS, pooled_features
from steerlab.read.ridge import FOLDS, RidgeFit, grouped_folds

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel

JUDGED_RULE = (
    "default reader = the reader with the highest macro one-vs-rest AUROC over the judged labels, at the "
    "file's reading layer, on the judged replies of half of the user messages (the reply reader fitted on "
    "written replies and the other half); the reply reader is then refitted on all written and judged replies"
)


Fit = tuple[RidgeFit, list[str]]  # the reply reader fitted (at one layer or at every layer) and its classes


def _training(
    feats: np.ndarray, written: Corpus, judged: Judged, rows: np.ndarray, with_written: bool = True
) -> tuple[np.ndarray, list[str], list[str], dict[str, np.ndarray], np.ndarray]:
    """(features, labels, user messages, judged ratings (nan for written replies), ``source_weights``) of the
    written replies (``with_written``; ``feats`` holds them first) and the judged ``rows`` after them."""
    n = len(written.texts)
    pick = np.flatnonzero(rows)
    x = np.concatenate([feats[:n]] * with_written + [feats[n:][pick]])
    labels = list(written.labels) * with_written + [judged.labels[i] for i in pick]
    users = list(written.contexts or ()) * with_written + [judged.users[i] for i in pick]
    ratings = {s: np.concatenate([np.full(n * with_written, np.nan), judged.scales[s][pick]]) for s in SCALES}
    return x, labels, users, ratings, source_weights(n * with_written, len(pick))


def _at(fit: Fit, layer: int, feats: np.ndarray, emotions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(scores (texts, emotions), predicted incoherent (texts,)) of a fitted reply reader at ``layer``."""
    from steerlab.read.reader_choice import reply_predictions

    ridge, classes = fit
    return reply_predictions(ridge.weight[layer], ridge.bias[layer], classes, feats, emotions)


def _incoherent_at(
    feats: np.ndarray, written: Corpus, judged: Judged, rows: np.ndarray, detector: np.ndarray, layer: int
) -> float:
    """The reply reader's incoherence cut (:func:`.coherence.incoherence_threshold`) on out-of-fold predictions
    for the judged ``rows``: folds by user message, the written replies always in the fit; the default
    :data:`.readers.INCOHERENT_P` when no reply there is judged incoherent."""
    from steerlab.read.reader_choice import fit_reply_reader

    pick, at_layer = np.flatnonzero(rows), feats[:, layer : layer + 1]
    predicted = np.zeros(len(pick))
    for held in grouped_folds(np.array([judged.users[i] for i in pick]), FOLDS):
        train = np.isin(np.arange(len(judged.replies)), pick[~held])
        fit = fit_reply_reader(*_training(at_layer, written, judged, train))
        predicted[held] = _at(fit, 0, at_layer[len(written.texts) :][pick[held], 0], [])[1]
    cut = incoherence_threshold(predicted, detector[pick], np.array(judged.labels)[pick] == INCOHERENT)
    return INCOHERENT_P if cut is None else cut


def fit_on_judged(
    lm: LoadedModel,
    vectors: EmotionVectors,
    written: Corpus,
    judged: Judged,
    *,
    seed: int = 0,
    heldout: Corpus | None = None,
    note: Any = None,
) -> tuple[EmotionVectors, dict[str, Any]]:
    """Validate readers on the judged replies, choose the default, refit the reply reader on everything.

    Returns the new vectors and the validation record (also stored as ``meta["judged_validation"]``).
    """
    from steerlab.core.extras import require
    from steerlab.read.reader_choice import with_reply_reader

    require("lexicon", "fit-reader (it compares every reader, the lexicon included)")
    say = note or (lambda _: None)
    if written.contexts is None:
        raise SteerlabError(f"{written.source}: written replies need 'context' fields (the user's message)")
    keep = np.array([bool(r.strip()) for r in judged.replies])  # an empty reply is never read
    judged = subset(judged, keep)
    say(f"reading {len(written.texts)} written and {len(judged.replies)} judged replies in their conversation")
    w_feats = pooled_features(lm, written.texts, written.contexts)
    j_feats = pooled_features(lm, judged.replies, judged.users)
    feats = np.concatenate([w_feats, j_feats])
    detector = np.array([bool(degenerate_reasons(t)) for t in judged.replies])
    record = _validate(lm, vectors, written, judged, feats, detector, seed, say)

    say("refitting the reply reader on every written and judged reply, at every layer")
    everything = np.ones(len(judged.replies), dtype=bool)
    x, labels, users, ratings, weights = _training(feats, written, judged, everything)
    cut = _incoherent_at(feats, written, judged, everything, detector, vectors.reading_layer)
    provenance = {**_provenance(written, judged, record["n_messages"]), "incoherent_at": cut}
    final = with_reply_reader(vectors, x, labels, users, provenance, ratings, weights)
    say("refitting the judge reader on every judged reply, at every layer")
    final = with_judge(final, judged, j_feats, record)
    if heldout is not None:
        record["written_heldout"] = _written_heldout(lm, final, heldout, record["layer"])
    reading = {**(vectors.meta.get("reading") or {}), "reader": record["chosen"], "rule": JUDGED_RULE}
    final = replace(final, meta={**final.meta, "reading": reading, "judged_validation": record})
    return final, record


def _validate(
    lm: LoadedModel,
    vectors: EmotionVectors,
    written: Corpus,
    judged: Judged,
    feats: np.ndarray,
    detector: np.ndarray,
    seed: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The validation record: every reader and baseline fitted without, and scored on, the judged replies
    to a seeded half of the user messages, at the reading layer; the default reader chosen there.
    ``feats`` (written + judged replies, layers, hidden), the written ones first; ``detector`` (judged
    replies,): the loop detector's verdicts."""
    from steerlab.read.reader_choice import fit_reply_reader

    emotions = list(vectors.emotions)
    layer = vectors.reading_layer
    messages, test_messages, test = _split_by_message(judged, seed)
    fit_rows = ~test
    j_feats = feats[len(written.texts) :]
    say(f"fitting the reply reader at every layer on half of {len(messages)} user messages")
    every = fit_reply_reader(*_training(feats, written, judged, fit_rows))
    nothing = np.zeros(len(judged.replies), dtype=bool)
    written_only = _training(feats[:, layer : layer + 1], written, judged, nothing)
    judged_only = _training(feats[:, layer : layer + 1], written, judged, fit_rows, with_written=False)
    fits = {
        "reply (written)": (fit_reply_reader(*written_only), 0),
        "reply (judged)": (fit_reply_reader(*judged_only), 0),
        "reply (written + judged)": (every, layer),
    }
    scores = {name: _at(fit, at, j_feats[:, layer], emotions)[0] for name, (fit, at) in fits.items()}
    cut = _incoherent_at(feats, written, judged, fit_rows, detector, layer)
    broken = _at(every, layer, j_feats[:, layer], emotions)[1] >= cut
    flagged = detector | broken  # the rule of readers.incoherent
    scores.update(_baselines(vectors, j_feats[:, layer], written, judged, fit_rows, seed))
    say(f"fitting the judge reader (ridge on the judged ratings) on half of {len(messages)} user messages")
    judge = fit_judged_rows(judged, j_feats, fit_rows)
    scores["judge"] = judge_scores(judge.weight[layer], judge.bias[layer], j_feats[:, layer], emotions)
    figures = {name: judged_figures(s, flagged, judged, test, emotions) for name, s in scores.items()}
    per_layer = _reply_per_layer(vectors, every, j_feats, flagged, judged, test)
    defaults = [name for name, spec in READERS.items() if spec.every_emotion]  # the judge reads three scales only
    macro = {name: figures["reply (written + judged)" if name == "reply" else name]["macro_auroc"] for name in defaults}
    return {
        "model": lm.model_id,
        "source": judged.source,
        "sha256": judged.sha256,
        "n": len(judged.replies),
        "n_messages": len(messages),
        "test_messages": len(test_messages),
        "test_replies": int(test.sum()),
        "layer": layer,
        "rule": JUDGED_RULE,
        "chosen": max(macro, key=lambda n: -1.0 if macro[n] is None else float(macro[n])),
        "incoherence": {**incoherence_figures(flagged, detector, judged, test), "cut_fitted_on_half": cut},
        "readers": figures,
        "tie_ceiling": tie_ceiling(judged, test & ~flagged),  # on the replies read
        "reply_per_layer": per_layer,
        "judge_per_layer": judge_per_layer(judge, vectors, j_feats, flagged, judged, test),
    }


def _split_by_message(judged: Judged, seed: int) -> tuple[list[str], set[str], np.ndarray]:
    """(the user messages, the seeded half held out, (replies,) bool: the replies to that half)."""
    messages = sorted(set(judged.users))
    rng = np.random.default_rng(seed)
    test_messages = set(rng.permutation(messages)[: len(messages) // 2].tolist())
    return messages, test_messages, np.array([u in test_messages for u in judged.users])


def _baselines(
    vectors: EmotionVectors,
    feats: np.ndarray,
    written: Corpus,
    judged: Judged,
    fit_rows: np.ndarray,
    seed: int,
) -> dict[str, np.ndarray]:
    """Scores (judged replies, emotions) at the reading layer (``feats``) of the file's readers that are not
    fitted on replies, and of the model-free baselines (a bag of words, reply length)."""
    emotions = list(vectors.emotions)
    layer = vectors.reading_layer
    scores: dict[str, np.ndarray] = {}
    for name, spec in READERS.items():
        if spec.fitted is None:  # a fitted reader is scored from its fit on the fitting half
            scores[name] = spec.score(vectors, feats if spec.layered else None, judged.replies, layer)
    fit_labels = [judged.labels[i] for i in np.flatnonzero(fit_rows)]
    train_texts = list(written.texts) + [judged.replies[i] for i in np.flatnonzero(fit_rows)]
    scores["bag of words"] = bag_of_words(
        train_texts, list(written.labels) + fit_labels, judged.replies, emotions, seed
    )
    length = np.array([len(r.split()) for r in judged.replies], dtype=float)
    scores["length"] = np.repeat(length[:, None], len(emotions), axis=1)
    return scores


def _reply_per_layer(
    vectors: EmotionVectors,
    every: Fit,
    j_feats: np.ndarray,
    flagged: np.ndarray,
    judged: Judged,
    test: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """The reply reader fitted at every layer (``every``), scored on the held-out half."""
    emotions = list(vectors.emotions)
    per_layer = {}
    for at in range(vectors.n_layers):
        s, _ = _at(every, at, j_feats[:, at], emotions)
        f = judged_figures(s, flagged, judged, test, emotions)
        per_layer[str(at)] = {k: f[k] for k in ("macro_auroc", "spearman_hopeful", "spearman_desperate")}
    return per_layer


def _provenance(written: Corpus, judged: Judged, n_messages: int) -> dict[str, Any]:
    """Where the refitted reply reader's replies came from (``meta["reply_reader"]``)."""
    return {
        "source": f"{written.source} + {judged.source}",
        "sha256": {"written": written.sha256, "judged": judged.sha256},
        "n_replies": len(written.texts) + len(judged.replies),
        "n_messages": len(set(written.contexts or ())) + n_messages,
        "fit": "ridge regression of each target on standardised mean activations of the reply's tokens, each reply "
        "read as the model's turn after its user message; written and judged replies, each source weighing the same",
    }


def _written_heldout(lm: LoadedModel, vectors: EmotionVectors, heldout: Corpus, layer: int) -> dict[str, Any]:
    """Each reader's one-vs-rest AUROC per emotion on written replies to messages no fit saw."""
    from steerlab.read.reader_choice import evaluate_reader

    feats = pooled_features(lm, heldout.texts, heldout.contexts)
    out: dict[str, Any] = {"source": heldout.source, "n": len(heldout.texts)}
    for name, spec in READERS.items():
        rows = evaluate_reader(
            None, vectors, heldout.texts, heldout.labels, name, features=feats if spec.layered else None
        )
        row = next((r for r in rows if r.layer == layer), rows[0])
        out[name] = {"auroc": row.auroc, "macro_auroc": row.macro_auroc, "top1": row.top1}
    return out


def judged_by_layer(
    lm: LoadedModel, vectors: EmotionVectors, judged: Judged, reader: str, batch_size: int = 16
) -> list[dict[str, Any]]:
    """:func:`judged_figures` of ``reader`` at every layer (one row for a reader without layers), with the
    file's incoherence rule deciding which replies are read."""
    from steerlab.read.readers import get_reader, incoherent

    spec = get_reader(reader)
    judged = subset(judged, np.array([bool(r.strip()) for r in judged.replies]))
    feats = pooled_features(lm, judged.replies, judged.users, batch_size)
    flagged = incoherent(vectors, feats[:, vectors.reading_layer], judged.replies)
    everything = np.ones(len(judged.replies), dtype=bool)
    out = []
    for layer in range(vectors.n_layers) if spec.layered else [None]:
        at = 0 if layer is None else layer
        scores = spec.score(vectors, feats[:, at] if spec.layered else None, judged.replies, at)
        out.append({"layer": layer, **judged_figures(scores, flagged, judged, everything, vectors.emotions)})
    return out
