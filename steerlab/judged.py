"""Readers against blind judgements of the model's *own* replies, and the reply reader refitted on them.

A judged set is JSONL, one reply per line, as ``eval/labels/`` writes it::

    {"user": ..., "reply": ..., "label": EMOTION | "neutral" | "incoherent",
     "hopeful": 1-5, "desperate": 1-5, "calm": 1-5, "coherence": 1-5}

:func:`fit_on_judged` splits the judged replies by user message into seeded halves; fits the reply
reader on written replies alone, on the judged half alone and on both; scores every reader and two
model-free baselines (a bag of words, reply length) on the other half (:func:`judged_figures`);
chooses the default reader there (``JUDGED_RULE``); refits the reply reader on everything; and records
all of it in the file's metadata (``meta["judged_validation"]``), which the suites report beside every
verdict and require before they give one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .corpus import NEUTRAL, Corpus
from .errors import SteerlabError
from .files import existing_file, jsonl_rows
from .readers import INCOHERENT, INCOHERENT_P, READERS, pooled_features

if TYPE_CHECKING:
    from .models import LoadedModel
    from .vectors import EmotionVectors

SCALES = ("hopeful", "desperate", "calm")
MIN_POSITIVES = 5  # an AUROC needs at least this many positives and negatives
JUDGED_RULE = (
    "default reader = the reader with the highest macro one-vs-rest AUROC over the judged labels, at the "
    "file's reading layer, on the judged replies of half of the user messages (the reply reader fitted on "
    "written replies and the other half); the reply reader is then refitted on all written and judged replies"
)


@dataclass(frozen=True)
class Judged:
    users: list[str]
    replies: list[str]
    labels: list[str]
    scales: dict[str, np.ndarray]  # scale -> (replies,) judged 1-5
    source: str
    sha256: str


def load_judged(paths: Sequence[str | Path], emotions: Sequence[str]) -> Judged:
    """Read judged sets (joined in order); every problem is one line naming the file, the line and the fix."""
    allowed = {*emotions, NEUTRAL, INCOHERENT}
    users: list[str] = []
    replies: list[str] = []
    labels: list[str] = []
    scales: dict[str, list[float]] = {s: [] for s in SCALES}
    digest = hashlib.sha256()
    sources = []
    for path in paths:
        where = existing_file(path, "judged replies file", "pass the JSONL that eval/labels/agreement.py writes")
        raw = where.read_bytes()
        digest.update(raw)
        sources.append(str(where))
        _parse(raw, where, allowed, users, replies, labels, scales)
    if len(set(users)) < 4:
        raise SteerlabError(
            f"{', '.join(sources)}: replies to {len(set(users))} user message(s): judged sets need at least 4"
        )
    arrays = {s: np.array(v) for s, v in scales.items()}
    return Judged(users, replies, labels, arrays, " + ".join(sources), digest.hexdigest())


def _parse(
    raw: bytes,
    where: Path,
    allowed: set[str],
    users: list[str],
    replies: list[str],
    labels: list[str],
    scales: dict[str, list[float]],
) -> None:
    for n, row in jsonl_rows(raw, str(where), SteerlabError):
        try:
            users.append(str(row["user"]))
            replies.append(str(row["reply"]))
            label = str(row["label"])
            for s in SCALES:
                value = float(row[s])
                if not 1 <= value <= 5:
                    raise ValueError(f"{s} {value:g} is not on the 1-5 scale")
                scales[s].append(value)
        except (ValueError, KeyError, TypeError) as err:
            raise SteerlabError(
                f"{where}:{n}: {err}: each line needs user, reply, label and hopeful/desperate/calm 1-5"
            ) from None
        if label not in allowed:
            raise SteerlabError(f"{where}:{n}: label {label!r} is not an emotion of the vectors, neutral or incoherent")
        labels.append(label)


def judged_figures(
    scores: np.ndarray, flagged: np.ndarray, judged: Judged, rows: np.ndarray, emotions: Sequence[str]
) -> dict[str, Any]:
    """How scores (replies, emotions) agree with the judge on ``rows``: replies judged incoherent and
    replies ``flagged`` as incoherent are not read; the rest give Spearman with each judged scale, AUROC
    for "judged >= 3" per scale and one-vs-rest per judged label (``MIN_POSITIVES`` or more)."""
    from scipy.stats import spearmanr

    from .probes import auroc as roc_auc

    labels = np.array(judged.labels)
    broken = labels == INCOHERENT
    read = rows & ~broken & ~flagged
    out: dict[str, Any] = {"n": int(read.sum()), "coverage": float(read.sum() / max((rows & ~broken).sum(), 1))}

    def auroc(positive: np.ndarray, column: np.ndarray) -> float | None:
        ok = np.isfinite(column)
        pos, neg = int((positive & ok).sum()), int((~positive & ok).sum())
        return roc_auc(positive[ok], column[ok]) if min(pos, neg) >= MIN_POSITIVES else None

    for s in SCALES:
        column = scores[read, list(emotions).index(s)] if s in emotions else np.full(int(read.sum()), np.nan)
        ok = np.isfinite(column)
        truth = judged.scales[s][read][ok]
        varied = ok.sum() > 2 and np.ptp(truth) > 0 and np.ptp(column[ok]) > 0  # else no correlation is defined
        rho = spearmanr(column[ok], truth).statistic if varied else float("nan")
        out[f"spearman_{s}"] = None if np.isnan(rho) else float(rho)
        out[f"auroc_{s}_3plus"] = auroc(judged.scales[s][read] >= 3, column)
        out[f"positives_{s}_3plus"] = int((judged.scales[s][read] >= 3).sum())
    per_label = {}
    for e in emotions:
        value = auroc(labels[read] == e, scores[read, list(emotions).index(e)])
        if value is not None:
            per_label[e] = {"auroc": value, "positives": int((labels[read] == e).sum())}
    out["auroc"] = per_label
    out["macro_auroc"] = float(np.mean([v["auroc"] for v in per_label.values()])) if per_label else None
    return out


def incoherence_figures(flagged: np.ndarray, detector: np.ndarray, judged: Judged, rows: np.ndarray) -> dict[str, Any]:
    broken = np.array(judged.labels) == INCOHERENT

    def pr(flag: np.ndarray) -> dict[str, float]:
        hit = (flag & broken & rows).sum()
        return {
            "precision": float(hit / max((flag & rows).sum(), 1)),
            "recall": float(hit / max((broken & rows).sum(), 1)),
        }

    return {"judged_incoherent": int((broken & rows).sum()), "rule": pr(flagged), "detector_alone": pr(detector)}


def _fit(features: np.ndarray, labels: Sequence[str], c: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A multinomial reader at one layer: (weights (K, hidden), bias (K,), labels)."""
    from .methods import fit_probe

    classes = sorted(set(labels))
    weight, bias = fit_probe(features, np.array([classes.index(x) for x in labels]), c)
    return weight, bias, classes


def _log_probs(
    fit: tuple[np.ndarray, np.ndarray, list[str]], feats: np.ndarray, emotions: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (texts, emotions) as log-probabilities, p(incoherent) (texts,) or zeros)."""
    weight, bias, classes = fit
    logits = feats @ weight.T + bias
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    out = np.full((len(feats), len(emotions)), np.nan)
    for j, label in enumerate(classes):
        if label in emotions:
            out[:, list(emotions).index(label)] = logp[:, j]
    p_broken = np.exp(logp[:, classes.index(INCOHERENT)]) if INCOHERENT in classes else np.zeros(len(feats))
    return out, p_broken


def _bag_of_words(
    train: Sequence[str], labels: Sequence[str], test: Sequence[str], emotions: Sequence[str], seed: int
) -> np.ndarray:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    words = CountVectorizer(ngram_range=(1, 2), min_df=2)
    clf = LogisticRegression(C=1.0, max_iter=3000, random_state=seed).fit(words.fit_transform(train), labels)
    decision = clf.decision_function(words.transform(test))
    out = np.full((len(test), len(emotions)), np.nan)
    for j, label in enumerate(clf.classes_):
        if label in emotions:
            out[:, list(emotions).index(label)] = decision[:, j] if decision.ndim == 2 else decision
    return out


def fit_on_judged(
    lm: LoadedModel,
    vectors: EmotionVectors,
    written: Corpus,
    judged: Judged,
    *,
    seed: int = 0,
    c: float | None = None,
    heldout: Corpus | None = None,
    note: Any = None,
) -> tuple[EmotionVectors, dict[str, Any]]:
    """Validate readers on the judged replies, choose the default, refit the reply reader on everything.

    Returns the new vectors and the validation record (also stored as ``meta["judged_validation"]``).
    """
    from .extras import require
    from .reader_choice import fit_reply_reader, with_reply_reader
    from .validate.coherence import degenerate_reasons

    require("lexicon", "fit-reader (it compares every reader, the lexicon included)")
    say = note or (lambda _: None)
    emotions = list(vectors.emotions)
    layer = vectors.reading_layer
    c = float(c if c is not None else (vectors.meta.get("reply_reader") or {}).get("c", 0.05))
    if written.contexts is None:
        raise SteerlabError(f"{written.source}: written replies need 'context' fields (the user's message)")
    keep = np.array([bool(r.strip()) for r in judged.replies])  # an empty reply is never read
    judged = _subset(judged, keep)
    say(f"reading {len(written.texts)} written and {len(judged.replies)} judged replies in their conversation")
    w_feats = pooled_features(lm, written.texts, written.contexts)
    j_feats = pooled_features(lm, judged.replies, judged.users)
    messages = sorted(set(judged.users))
    rng = np.random.default_rng(seed)
    test_messages = set(rng.permutation(messages)[: len(messages) // 2].tolist())
    test = np.array([u in test_messages for u in judged.users])
    fit_rows = ~test
    j_labels = list(judged.labels)
    fit_labels = [j_labels[i] for i in np.flatnonzero(fit_rows)]
    detector = np.array([bool(degenerate_reasons(t)) for t in judged.replies])

    variants = {
        "reply (written)": (w_feats[:, layer], list(written.labels)),
        "reply (judged)": (j_feats[fit_rows, layer], fit_labels),
        "reply (written + judged)": (
            np.concatenate([w_feats[:, layer], j_feats[fit_rows, layer]]),
            list(written.labels) + fit_labels,
        ),
    }
    say(f"fitting {len(variants)} reply readers at layer {layer} on half of {len(messages)} user messages")
    fits = {name: _fit(x, y, c) for name, (x, y) in variants.items()}
    _, p_broken = _log_probs(fits["reply (written + judged)"], j_feats[:, layer], emotions)
    flagged = detector | (p_broken >= INCOHERENT_P)  # the rule of readers.incoherent
    scores: dict[str, np.ndarray] = {
        name: _log_probs(fit, j_feats[:, layer], emotions)[0] for name, fit in fits.items()
    }
    for name, spec in READERS.items():
        if name != "reply":
            scores[name] = spec.score(vectors, j_feats[:, layer] if spec.layered else None, judged.replies, layer)
    train_texts = list(written.texts) + [judged.replies[i] for i in np.flatnonzero(fit_rows)]
    scores["bag of words"] = _bag_of_words(
        train_texts, list(written.labels) + fit_labels, judged.replies, emotions, seed
    )
    length = np.array([len(r.split()) for r in judged.replies], dtype=float)
    scores["length"] = np.repeat(length[:, None], len(emotions), axis=1)
    figures = {name: judged_figures(s, flagged, judged, test, emotions) for name, s in scores.items()}
    say("the reply reader (written + judged) at every layer")
    labels = variants["reply (written + judged)"][1]
    per_layer = {}
    every, classes = fit_reply_reader(np.concatenate([w_feats, j_feats[fit_rows]]), labels, c)
    for at in range(vectors.n_layers):
        s, _ = _log_probs((every.weight[at], every.bias[at], classes), j_feats[:, at], emotions)
        f = judged_figures(s, flagged, judged, test, emotions)
        per_layer[str(at)] = {k: f[k] for k in ("macro_auroc", "spearman_hopeful", "spearman_desperate")}
    macro = {name: figures["reply (written + judged)" if name == "reply" else name]["macro_auroc"] for name in READERS}
    chosen = max(macro, key=lambda n: -1.0 if macro[n] is None else float(macro[n]))

    say("refitting the reply reader on every written and judged reply, at every layer")
    all_feats = np.concatenate([w_feats, j_feats])
    provenance = {
        "source": f"{written.source} + {judged.source}",
        "sha256": {"written": written.sha256, "judged": judged.sha256},
        "n_replies": len(written.texts) + len(judged.replies),
        "n_messages": len(set(written.contexts)) + len(messages),
        "fit": "multinomial logistic regression on standardised mean activations of the reply's tokens, each "
        "reply read as the model's turn after its user message; written replies and the model's own judged replies",
    }
    final = with_reply_reader(vectors, all_feats, list(written.labels) + j_labels, c, provenance)
    record: dict[str, Any] = {
        "model": lm.model_id,
        "source": judged.source,
        "sha256": judged.sha256,
        "n": len(judged.replies),
        "n_messages": len(messages),
        "test_messages": len(test_messages),
        "test_replies": int(test.sum()),
        "layer": layer,
        "rule": JUDGED_RULE,
        "chosen": chosen,
        "incoherence": incoherence_figures(flagged, detector, judged, test),
        "readers": figures,
        "reply_per_layer": per_layer,
    }
    if heldout is not None:
        record["written_heldout"] = _written_heldout(lm, final, heldout, layer)
    reading = {**(vectors.meta.get("reading") or {}), "reader": chosen, "rule": JUDGED_RULE}
    final = replace(final, meta={**final.meta, "reading": reading, "judged_validation": record})
    return final, record


def _subset(judged: Judged, keep: np.ndarray) -> Judged:
    pick = np.flatnonzero(keep)
    return replace(
        judged,
        users=[judged.users[i] for i in pick],
        replies=[judged.replies[i] for i in pick],
        labels=[judged.labels[i] for i in pick],
        scales={s: v[pick] for s, v in judged.scales.items()},
    )


def _written_heldout(lm: LoadedModel, vectors: EmotionVectors, heldout: Corpus, layer: int) -> dict[str, Any]:
    """Each reader's one-vs-rest AUROC per emotion on written replies to messages no fit saw."""
    from .reader_choice import evaluate_reader

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
    from .readers import get_reader, incoherent

    spec = get_reader(reader)
    judged = _subset(judged, np.array([bool(r.strip()) for r in judged.replies]))
    feats = pooled_features(lm, judged.replies, judged.users, batch_size)
    flagged = incoherent(vectors, feats[:, vectors.reading_layer], judged.replies)
    everything = np.ones(len(judged.replies), dtype=bool)
    out = []
    for layer in range(vectors.n_layers) if spec.layered else [None]:
        at = 0 if layer is None else layer
        scores = spec.score(vectors, feats[:, at] if spec.layered else None, judged.replies, at)
        out.append({"layer": layer, **judged_figures(scores, flagged, judged, everything, vectors.emotions)})
    return out
