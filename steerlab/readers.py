"""Readers: how a text becomes one score per emotion. Every causal verdict rests on one of them.

All readers share one interface and one registry (``READERS``), so suites, ``steer``, ``scope`` and
``evaluate`` choose a reader by name and ask :func:`read_texts` for scores:

* ``vector``  cosine of the centred mean activation with each diff-of-means direction;
* ``probe``   log-probability of the logistic probe fitted on the extraction corpus;
* ``reply``   log-probability of a logistic reader fitted on labelled *replies in their conversation*
              (shipped in the vector file; emotions it was not trained on read as nan);
* ``lexicon`` no model: VADER's compound valence times the emotion's valence, plus the share of NRC
              emotion words of the emotion's NRC category (a baseline that any model reader must beat).

A reply is read in its conversation: the user's message, then the reply as the model's own turn in
the model's chat format, with only the reply's tokens pooled (:func:`activations.tokenize_replies`).
Which reader and layer are the default is decided once, on labelled replies, when the vector file is
built (:func:`choose_reader`), and stored in its metadata (``EmotionVectors.default_reader`` and
``reading_layer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import SteerlabError

if TYPE_CHECKING:
    from .models import LoadedModel
    from .vectors import EmotionVectors

# The NRC category an emotion's words belong to; emotions without a clear category get valence only.
NRC_CATEGORY = {
    "happy": "joy",
    "proud": "joy",
    "enthusiastic": "joy",
    "loving": "joy",
    "sad": "sadness",
    "gloomy": "sadness",
    "brooding": "sadness",
    "guilty": "sadness",
    "afraid": "fear",
    "nervous": "fear",
    "desperate": "fear",
    "angry": "anger",
    "frustrated": "anger",
    "hostile": "anger",
    "surprised": "surprise",
    "hopeful": "anticipation",
    "curious": "anticipation",
    "confident": "trust",
    "calm": "trust",
}

Score = Callable[["EmotionVectors", "np.ndarray | None", Sequence[str], int], np.ndarray]


@dataclass(frozen=True)
class Reader:
    name: str
    layered: bool  # reads the residual stream at a layer (False: reads the words only)
    score: Score  # (vectors, pooled features (texts, hidden) or None, texts, layer) -> (texts, emotions)
    about: str


READERS: dict[str, Reader] = {}


def reader(name: str, layered: bool, about: str) -> Callable[[Score], Score]:
    def register(fn: Score) -> Score:
        READERS[name] = Reader(name, layered, fn, about)
        return fn

    return register


def get_reader(name: str) -> Reader:
    if name not in READERS:
        raise SteerlabError(f"unknown reader {name!r}: use one of {', '.join(READERS)}")
    return READERS[name]


@reader("vector", True, "cosine of the centred mean activation with each diff-of-means direction")
def _vector(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    assert feats is not None
    return v.read(torch.from_numpy(feats), layer).numpy()


@reader("probe", True, "log-probability of the logistic probe fitted on the extraction corpus")
def _probe(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    assert feats is not None
    return torch.log_softmax(v.probe_logits(torch.from_numpy(feats), layer), dim=-1).numpy()


@reader("reply", True, "log-probability of the reader fitted on labelled replies in their conversation")
def _reply(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    assert feats is not None
    if v.reply_weight is None or v.reply_bias is None:
        raise SteerlabError("this vector file has no reply reader: re-run `steerlab extract`, or use --reader vector")
    labels = list(v.meta["reply_reader"]["labels"])
    logp = torch.log_softmax(torch.from_numpy(feats) @ v.reply_weight[layer].T + v.reply_bias[layer], dim=-1)
    out = np.full((len(feats), len(v.emotions)), np.nan)
    for j, label in enumerate(labels):
        if label in v.emotions:
            out[:, v.emotions.index(label)] = logp[:, j].numpy()
    return out


@reader("lexicon", False, "VADER valence x the emotion's valence + share of NRC words of its category")
def _lexicon(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    vader, nrc = _lexicons()
    valence = v.meta.get("valence", {})
    out = np.zeros((len(texts), len(v.emotions)))
    for i, text in enumerate(texts):
        compound = vader.polarity_scores(text)["compound"]
        words = re.findall(r"[a-z']+", text.lower())
        counts: dict[str, int] = {}
        for word in words:
            for category in nrc.get(word, ()):
                counts[category] = counts.get(category, 0) + 1
        for e, name in enumerate(v.emotions):
            share = counts.get(NRC_CATEGORY.get(name, ""), 0) / max(len(words), 1)
            out[i, e] = float(valence.get(name, 0.0)) * compound + share
    return out


@lru_cache(maxsize=1)
def _lexicons() -> tuple[Any, dict[str, list[str]]]:
    """VADER's analyser and NRC's word -> categories table, both shipped inside their wheels."""
    import json
    from importlib.resources import files

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    nrc = json.loads(files("nrclex").joinpath("data", "nrc_en.json").read_text(encoding="utf-8"))
    return SentimentIntensityAnalyzer(), nrc


def pooled_features(
    lm: LoadedModel, texts: Sequence[str], contexts: Sequence[str] | None = None, batch_size: int = 16
) -> np.ndarray:
    """(texts, layers, hidden) mean activations of each text (its reply tokens when in context)."""
    from .activations import PoolingConfig, pooled_activations

    return pooled_activations(lm, texts, PoolingConfig(batch_size=batch_size), contexts=contexts).features


def read_texts(
    lm: LoadedModel,
    vectors: EmotionVectors,
    texts: Sequence[str],
    layer: int | None = None,
    reader: str | None = None,
    contexts: Sequence[str] | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Emotion scores (texts, emotions), read in a fresh pass of the *clean* model.

    ``reader`` and ``layer`` default to the vector file's validated choice; ``contexts`` (one user
    message per text) reads each text as the model's reply to it. Empty texts read as nan.
    """
    chosen = get_reader(reader or vectors.default_reader)
    at = vectors.check_layer(vectors.reading_layer if layer is None else layer, "reader layer")
    if contexts is not None and len(contexts) != len(texts):
        raise SteerlabError(f"{len(texts)} texts but {len(contexts)} contexts: give one user message per text")
    out = np.full((len(texts), len(vectors.emotions)), np.nan)
    # An empty reply has nothing to read: it stays nan (reported as empty), never a score of the template.
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        kept = [texts[i] for i in keep]
        ctx = [contexts[i] for i in keep] if contexts is not None else None
        feats = pooled_features(lm, kept, ctx, batch_size)[:, at] if chosen.layered else None
        out[keep] = chosen.score(vectors, feats, kept, at)
    return out


def read_replies(
    lm: LoadedModel,
    vectors: EmotionVectors,
    replies: Sequence[str],
    prompts: Sequence[str],
    chat: bool,
    reader: str | None = None,
    layer: int | None = None,
) -> np.ndarray:
    """Scores (replies, emotions) from the clean model: a chat reply is read as the model's turn after
    its prompt, a continuation alone; each distinct (reply, prompt) is read once, an empty reply is nan."""
    keys = [(r, p if chat else "") for r, p in zip(replies, prompts, strict=True)]
    unique = sorted(set(keys))
    read = read_texts(lm, vectors, [r for r, _ in unique], layer, reader, [c for _, c in unique] if chat else None)
    where = {key: i for i, key in enumerate(unique)}
    return read[[where[k] for k in keys]] if keys else read


# --- validation on labelled texts ----------------------------------------------------------------


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
    from sklearn.metrics import roc_auc_score

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
        auroc[emotions[c]] = float(roc_auc_score(positive, column))
        adjusted[emotions[c]] = float(roc_auc_score(positive, residual))
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
        features = pooled_features(lm, texts, contexts, batch_size)
    feats = features
    return [
        score_readings(chosen.score(vectors, feats[:, layer], texts, layer), labels, emotions, texts, layer)
        for layer in range(vectors.n_layers)
    ]


# --- the reply reader and the default reader ---------------------------------------------------

READER_RULE = (
    "default reader and layer = the (reader, layer) with the highest macro one-vs-rest AUROC on half of "
    "the labelled replies' messages; the reply reader is fitted on the other half for that choice, "
    "then refitted on all replies"
)


def fit_reply_reader(
    features: np.ndarray, labels: Sequence[str], seed: int, c: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Multinomial logistic reader at every layer: (weights (layers, K, hidden), bias (layers, K), labels)."""
    from .methods import fit_probe

    classes = sorted(set(labels))
    y = np.array([classes.index(lab) for lab in labels])
    fits = [fit_probe(features[:, layer].astype(np.float64), y, seed, c) for layer in range(features.shape[1])]
    return (
        np.stack([w for w, _ in fits]).astype(np.float32),
        np.stack([b for _, b in fits]).astype(np.float32),
        classes,
    )


def with_reply_reader(
    vectors: EmotionVectors,
    features: np.ndarray,
    labels: Sequence[str],
    seed: int,
    c: float,
    provenance: dict[str, object],
) -> EmotionVectors:
    from dataclasses import replace

    weight, bias, classes = fit_reply_reader(features, labels, seed, c)
    meta = {**vectors.meta, "reply_reader": {**provenance, "labels": classes, "c": c}}
    return replace(vectors, reply_weight=torch.from_numpy(weight), reply_bias=torch.from_numpy(bias), meta=meta)


def choose_reader(
    vectors: EmotionVectors,
    features: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    contexts: Sequence[str],
    seed: int,
    c: float,
    provenance: dict[str, object],
) -> EmotionVectors:
    """Fit the reply reader and choose the default (reader, layer) under ``READER_RULE``.

    ``features`` are the replies' pooled activations in conversation (texts, layers, hidden).
    """
    messages = sorted(set(contexts))
    rng = np.random.default_rng(seed)
    select = set(rng.permutation(messages)[: len(messages) // 2].tolist())
    is_sel = np.array([ctx in select for ctx in contexts])
    fit_rows, sel_rows = np.flatnonzero(~is_sel), np.flatnonzero(is_sel)
    half = with_reply_reader(vectors, features[fit_rows], [labels[int(i)] for i in fit_rows], seed, c, provenance)
    sel_texts, sel_labels = [texts[int(i)] for i in sel_rows], [labels[int(i)] for i in sel_rows]
    table: dict[str, dict[str, float]] = {}
    for name, spec in READERS.items():
        rows = evaluate_reader(
            None, half, sel_texts, sel_labels, name, features=features[sel_rows] if spec.layered else None
        )
        table[name] = {str(r.layer if r.layer is not None else "-"): r.macro_auroc for r in rows}
    best_name, best_layer = max(
        ((n, k) for n, layers in table.items() for k in layers),
        key=lambda nk: np.nan_to_num(table[nk[0]][nk[1]], nan=-1.0),
    )
    final = with_reply_reader(vectors, features, labels, seed, c, provenance)
    layer = int(best_layer) if best_layer != "-" else vectors.meta.get("best_layer", vectors.steering_layer)
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
