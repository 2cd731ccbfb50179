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
A user's message is read as the user's turn of a conversation awaiting the reply
(:func:`user_turn_features`: the mean over the message's own tokens, or the token before the reply);
gates (:mod:`.gate`) decide on it. Which reader and layer are the default is decided once, on
labelled replies, when the vector file is built (:func:`reader_choice.choose_reader`), and stored in
its metadata (``EmotionVectors.default_reader`` and ``reading_layer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from .errors import SteerlabError

if TYPE_CHECKING:
    from .models import LoadedModel
    from .validate.coherence import DegenerationLimits
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

INCOHERENT = "incoherent"  # the judged label of a reply too broken to carry an emotion
INCOHERENT_P = 0.5  # the reply reader's probability of ``incoherent`` above which a reply is not read

Score = Callable[["EmotionVectors", "np.ndarray | None", Sequence[str], int], np.ndarray]


@dataclass(frozen=True)
class Reader:
    name: str
    layered: bool  # reads the residual stream at a layer (False: reads the words only)
    score: Score  # (vectors, pooled features (texts, hidden) or None, texts, layer) -> (texts, emotions)
    about: str
    extra: str | None = None  # the optional dependency it needs (steerlab.extras), None: always there

    @property
    def installed(self) -> bool:
        from .extras import has

        return self.extra is None or has(self.extra)


READERS: dict[str, Reader] = {}
"""Every reader by name (``vector``, ``probe``, ``reply``, ``lexicon``): how a text or reply is scored."""


def reader(name: str, layered: bool, about: str, extra: str | None = None) -> Callable[[Score], Score]:
    def register(fn: Score) -> Score:
        READERS[name] = Reader(name, layered, fn, about, extra)
        return fn

    return register


def strongest(
    emotions: Sequence[str], scores: Sequence[float | None] | np.ndarray | None, k: int = 3
) -> list[tuple[str, float]]:
    """The ``k`` highest-scoring emotions, strongest first; emotions a reader does not read (NaN, None)
    are left out. The one ranking every display uses (steer, scope, the report, the live view)."""
    if scores is None:
        return []
    pairs = [(float(s), e) for e, s in zip(emotions, scores, strict=True) if s is not None and np.isfinite(s)]
    return [(e, s) for s, e in sorted(pairs, key=lambda p: -p[0])[:k]]


def strongest_text(emotions: Sequence[str], scores: Sequence[float | None] | np.ndarray | None, k: int = 3) -> str:
    """:func:`strongest` as text: ``"hopeful +0.412, calm +0.101"``."""
    return ", ".join(f"{e} {s:+.3f}" for e, s in strongest(emotions, scores, k))


def get_reader(name: str) -> Reader:
    if name not in READERS:
        raise SteerlabError(f"unknown reader {name!r}: use one of {', '.join(READERS)}")
    spec = READERS[name]
    if spec.extra is not None:
        from .extras import require

        require(spec.extra, f"the {name} reader")
    return spec


def readable(v: EmotionVectors, name: str) -> tuple[str, ...]:
    """The emotions reader ``name`` scores with ``v`` (the reply reader knows only its training labels)."""
    if name == "reply":
        return tuple(e for e in (v.meta.get("reply_reader") or {}).get("labels", ()) if e in v.emotions)
    if name not in READERS:
        get_reader(name)  # the one "unknown reader" error
    return v.emotions


def check_covers(v: EmotionVectors, name: str, labels: Sequence[str]) -> None:
    """Refuse to judge reader ``name`` on labels it cannot score, naming the readers that can."""
    wanted = sorted({lab for lab in labels if lab in v.emotions})
    missing = [lab for lab in wanted if lab not in readable(v, name)]
    if missing:
        able = [r for r, spec in READERS.items() if spec.installed and set(wanted) <= set(readable(v, r))]
        raise SteerlabError(
            f"reader {name!r} does not score {len(missing)} of the corpus's {len(wanted)} emotions "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): use --reader {' or '.join(able)}"
        )


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


@reader("lexicon", False, "VADER valence x the emotion's valence + share of NRC words of its category", "lexicon")
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

    from .extras import require

    require("lexicon", "the lexicon reader")
    from importlib.resources import files

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    nrc = json.loads(files("nrclex").joinpath("data", "nrc_en.json").read_text(encoding="utf-8"))
    return SentimentIntensityAnalyzer(), nrc


def pooled_features(
    lm: LoadedModel,
    texts: Sequence[str],
    contexts: Sequence[str] | None = None,
    batch_size: int = 16,
    skip_tokens: int = 0,
    tick: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(texts, layers, hidden) mean activations of each text past its first ``skip_tokens`` (the vector
    file's pooling), or of all its reply tokens when in context (the reply reader is fitted that way).
    ``tick(texts, tokens)`` follows the batches."""
    from .activations import PoolingConfig, pooled_activations

    config = PoolingConfig(batch_size=batch_size, skip_tokens=0 if contexts is not None else skip_tokens)
    return pooled_activations(lm, texts, config, tick, contexts=contexts).features


class ReplyReadings(NamedTuple):
    scores: np.ndarray  # (replies, emotions); nan for an empty or incoherent reply
    incoherent: np.ndarray  # (replies,) bool: judged broken, so given no emotion score


def incoherent(
    vectors: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], limits: DegenerationLimits | None = None
) -> np.ndarray:
    """Which replies are too broken to read: the model-free loop/markup detector (at ``limits``, a
    suite's), or the reply reader's ``incoherent`` class (fitted on blind judgements of the model's own
    replies) at the reading layer (``feats``: their pooled activations there) above :data:`INCOHERENT_P`."""
    from .validate.coherence import DegenerationLimits, degenerate_reasons

    broken = np.array([bool(degenerate_reasons(t, limits or DegenerationLimits())) for t in texts], dtype=bool)
    labels = list((vectors.meta.get("reply_reader") or {}).get("labels", ()))
    weight, bias = vectors.reply_weight, vectors.reply_bias
    if feats is not None and INCOHERENT in labels and weight is not None and bias is not None:
        at = vectors.reading_layer
        logits = torch.from_numpy(feats) @ weight[at].T + bias[at]
        broken |= torch.softmax(logits, dim=-1)[:, labels.index(INCOHERENT)].numpy() >= INCOHERENT_P
    return broken


def _read(
    lm: LoadedModel,
    vectors: EmotionVectors,
    texts: Sequence[str],
    layer: int | None,
    reader: str | None,
    contexts: Sequence[str] | None,
    batch_size: int,
    limits: DegenerationLimits | None = None,
    known: np.ndarray | None = None,
) -> ReplyReadings:
    chosen = get_reader(reader or vectors.default_reader)
    at = vectors.check_layer(vectors.layer_for_reading(layer), "reader layer")
    if contexts is not None and len(contexts) != len(texts):
        raise SteerlabError(f"{len(texts)} texts but {len(contexts)} contexts: give one user message per text")
    out = np.full((len(texts), len(vectors.emotions)), np.nan)
    broken = np.zeros(len(texts), dtype=bool)
    # An empty reply has nothing to read: it stays nan (reported as empty), never a score of the template.
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        kept = [texts[i] for i in keep]
        ctx = [contexts[i] for i in keep] if contexts is not None else None
        judge = contexts is not None and known is None  # coherence still to be judged (a pass of its own)
        feats = pooled_features(lm, kept, ctx, batch_size, vectors.skip_tokens) if chosen.layered or judge else None
        out[keep] = chosen.score(vectors, None if feats is None else feats[:, at], kept, at)
        if judge:  # a broken reply is counted as incoherent, never read as an emotion
            broken[keep] = incoherent(vectors, None if feats is None else feats[:, vectors.reading_layer], kept, limits)
        elif known is not None:
            broken = known.copy()
        out[broken] = np.nan
    return ReplyReadings(out, broken)


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
    message per text) reads each text as the model's reply to it, and a reply judged incoherent
    (:func:`incoherent`) reads as nan, like an empty one.
    """
    return _read(lm, vectors, texts, layer, reader, contexts, batch_size).scores


def read_replies(
    lm: LoadedModel,
    vectors: EmotionVectors,
    replies: Sequence[str],
    prompts: Sequence[str],
    chat: bool,
    reader: str | None = None,
    layer: int | None = None,
    limits: DegenerationLimits | None = None,
    known: np.ndarray | None = None,
) -> ReplyReadings:
    """Scores (replies, emotions) from the clean model and which replies are incoherent: a chat reply is
    read as the model's turn after its prompt, a continuation alone (coherence is then the detector's
    alone); each distinct (reply, prompt) is read once; an empty or incoherent reply scores nan.
    ``limits`` are the loop detector's (a suite's; default: the detector's own); ``known`` (replies,) is
    an incoherence verdict already made for these replies (a second reader of a suite), not judged again."""
    keys = [(r, p if chat else "") for r, p in zip(replies, prompts, strict=True)]
    unique = sorted(set(keys))
    texts = [r for r, _ in unique]
    index = {key: i for i, key in enumerate(unique)}
    given = None
    if known is not None:
        given = np.zeros(len(unique), dtype=bool)
        given[[index[k] for k in keys]] = known
    if chat:
        read = _read(lm, vectors, texts, layer, reader, [c for _, c in unique], 16, limits, given)
    else:
        scores = _read(lm, vectors, texts, layer, reader, None, 16).scores
        broken = (
            given
            if given is not None
            else incoherent(vectors, None, texts, limits) & np.array([bool(t.strip()) for t in texts], dtype=bool)
        )
        scores[broken] = np.nan
        read = ReplyReadings(scores, broken)
    where = np.array([index[k] for k in keys], dtype=int)
    return ReplyReadings(read.scores[where], read.incoherent[where]) if keys else read


# --- the user's turn ----------------------------------------------------------------------------

TURN_READOUTS = ("turn", "prep")  # the user's message tokens (mean), or the token before the reply


def user_turn_tokens(lm: LoadedModel, messages: Sequence[str]) -> tuple[list[list[int]], list[list[bool]]]:
    """Token ids of each message as the user's turn awaiting the reply, and which tokens are the message's."""
    from .activations import check_lengths
    from .chat import format_chat, token_roles

    ids, keep = [], []
    for text in messages:
        chat = format_chat(lm.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True)
        enc = lm.tokenizer(chat.text, return_offsets_mapping=True, add_special_tokens=True)
        ids.append(list(enc["input_ids"]))
        keep.append([role == "user" for role in token_roles(chat, [tuple(o) for o in enc["offset_mapping"]])])
    check_lengths(ids, lm.context_length, "message")
    return ids, keep


def user_turn_features(
    lm: LoadedModel, messages: Sequence[str], layers: Sequence[int], skip_tokens: int = 0, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """How the model reads each message as the user's turn of a conversation awaiting its reply (the
    prompt ``generate --chat`` starts from, without a frame): readout -> (messages, layers, hidden),
    ``turn`` the mean over the message's own tokens past its first ``skip_tokens``, ``prep`` the last
    prompt token, where the reply is about to begin."""
    from .activations import capture, content_mask, pad_batch, run_backbone

    ids, keep = user_turn_tokens(lm, messages)
    out = {name: np.zeros((len(messages), len(layers), lm.hidden_size), dtype=np.float32) for name in TURN_READOUTS}
    state: dict[str, torch.Tensor] = {}

    def pool(layer: int, h: torch.Tensor) -> None:
        k = list(layers).index(layer)
        m = state["turn"]
        state["out_turn"][:, k] = (h.float() * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        state["out_prep"][:, k] = h[:, -1].float()  # left padding: the last column is every row's last token

    with torch.inference_mode(), capture(lm, layers, pool):
        for lo in range(0, len(ids), batch_size):
            enc = pad_batch(lm, ids[lo : lo + batch_size], keep[lo : lo + batch_size])
            state["turn"] = content_mask(enc, skip_tokens).float().to(lm.device)
            n = len(enc["input_ids"])
            state["out_turn"] = torch.zeros((n, len(layers), lm.hidden_size), device=lm.device)
            state["out_prep"] = torch.zeros((n, len(layers), lm.hidden_size), device=lm.device)
            run_backbone(lm, enc["input_ids"], enc["attention_mask"])
            out["turn"][lo : lo + n] = state["out_turn"].cpu().numpy()
            out["prep"][lo : lo + n] = state["out_prep"].cpu().numpy()
    return out
