"""Readers: how a text becomes one score per emotion. Every causal verdict rests on one of them.

All readers share one interface and one registry (``READERS``), so suites, ``steer``, ``scope`` and
``evaluate`` choose a reader by name and ask :func:`read_texts` for scores:

* ``vector``  cosine of the centred mean activation with each diff-of-means direction;
* ``probe``   log-probability of the logistic probe fitted on the extraction corpus;
* ``reply``   ridge heads fitted on labelled *replies in their conversation*, one per label: a predicted
              0-1 intensity (1: the reply carries the label; judged scales: the judge's rating on 0-1;
              shipped in the vector file; emotions it was not fitted on read as nan);
* ``judge``   the blind judge's 1-5 rating of hopeful, desperate and calm, predicted by ridge heads fitted
              on the model's own judged replies (:mod:`.judge`; other emotions read as nan);
* ``lexicon`` no model: VADER's compound valence times the emotion's valence, plus the share of NRC
              emotion words of its NRC category (a baseline any model reader must beat; :mod:`.lexicon`).

A reply is read in its conversation: the user's message, then the reply as the model's own turn in
the model's chat format, with only the reply's tokens pooled (:func:`activations.tokenize_replies`).
A user's message is read as the user's turn of a conversation awaiting the reply
(:func:`.user_turn.user_turn_features`: the mean over the message's own tokens, or the token before the reply);
gates (:mod:`.gate`) decide on it. Which reader and layer are the default is decided once, on
labelled replies, when the vector file is built (:func:`reader_choice.choose_reader`), and stored in
its metadata (``EmotionVectors.default_reader`` and ``reading_layer``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from steerlab.core.errors import SteerlabError
from steerlab.read.lexicon import lexicon_scores
from steerlab.read.user_turn import TURN_READOUTS as TURN_READOUTS  # re-exported: gates and benchmarks import them here
from steerlab.read.user_turn import user_turn_features as user_turn_features
from steerlab.read.user_turn import user_turn_tokens as user_turn_tokens

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel
    from steerlab.read.coherence import DegenerationLimits

INCOHERENT = "incoherent"  # the judged label of a reply too broken to carry an emotion
INCOHERENT_P = 0.5  # the reply reader's predicted ``incoherent`` at or above which a reply is not read, unless
# fit-reader chose the cut on judged replies (``meta["reply_reader"]["incoherent_at"]``)

Score = Callable[["EmotionVectors", "np.ndarray | None", Sequence[str], int], np.ndarray]


@dataclass(frozen=True)
class Reader:
    name: str
    layered: bool  # reads the residual stream at a layer (False: reads the words only)
    score: Score  # (vectors, pooled features (texts, hidden) or None, texts, layer) -> (texts, emotions)
    about: str
    extra: str | None = None  # the optional dependency it needs (steerlab.core.extras), None: always there
    every_emotion: bool = True  # scores every emotion (False: a few judged scales), so it may be the default
    fitted: tuple[str, str] | None = None  # fitted on labelled replies: (meta key, its field naming what it reads)

    @property
    def installed(self) -> bool:
        from steerlab.core.extras import has

        return self.extra is None or has(self.extra)


READERS: dict[str, Reader] = {}
"""Every reader by name (``vector``, ``probe``, ``reply``, ``judge``, ``lexicon``): how a text or reply is scored."""


def reader(
    name: str,
    layered: bool,
    about: str,
    extra: str | None = None,
    every: bool = True,
    fitted: tuple[str, str] | None = None,
) -> Callable[[Score], Score]:
    def register(fn: Score) -> Score:
        READERS[name] = Reader(name, layered, fn, about, extra, every, fitted)
        return fn

    return register


def get_reader(name: str) -> Reader:
    if name not in READERS:
        raise SteerlabError(f"unknown reader {name!r}: use one of {', '.join(READERS)}")
    spec = READERS[name]
    if spec.extra is not None:
        from steerlab.core.extras import require

        require(spec.extra, f"the {name} reader")
    return spec


def readable(v: EmotionVectors, name: str) -> tuple[str, ...]:
    """The emotions reader ``name`` scores with ``v`` (a fitted reader knows only what it was fitted on)."""
    if name not in READERS:
        get_reader(name)  # the one "unknown reader" error
    fitted = READERS[name].fitted
    if fitted is None:
        return v.emotions
    key, field = fitted
    return tuple(e for e in (v.meta.get(key) or {}).get(field, ()) if e in v.emotions)


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


@reader(
    "reply",
    True,
    "predicted 0-1 intensity, ridge heads fitted on labelled replies in their conversation",
    fitted=("reply_reader", "labels"),
)
def _reply(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    assert feats is not None
    from steerlab.read.reader_choice import reply_readings

    return reply_readings(v, feats, layer)[0]


@reader(
    "judge",
    True,
    "the judge's 1-5 ratings of hopeful, desperate, calm, predicted",
    every=False,
    fitted=("judge_reader", "scales"),
)
def _judge(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    from steerlab.read.judge import judge_scores

    assert feats is not None
    if v.judge_weight is None or v.judge_bias is None:
        raise SteerlabError("this vector file has no judge reader: run `steerlab fit-reader`, or use --reader reply")
    scales = v.meta["judge_reader"]["scales"]
    return judge_scores(v.judge_weight[layer].numpy(), v.judge_bias[layer].numpy(), feats, v.emotions, scales)


@reader("lexicon", False, "VADER valence x the emotion's valence + share of NRC words of its category", "lexicon")
def _lexicon(v: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], layer: int) -> np.ndarray:
    return lexicon_scores(v.emotions, v.meta.get("valence", {}), texts)


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
    from steerlab.model.activations import PoolingConfig, pooled_activations

    config = PoolingConfig(batch_size=batch_size, skip_tokens=0 if contexts is not None else skip_tokens)
    return pooled_activations(lm, texts, config, tick, contexts=contexts).features


class ReplyReadings(NamedTuple):
    scores: np.ndarray  # (replies, emotions); nan for an empty or incoherent reply
    incoherent: np.ndarray  # (replies,) bool: judged broken, so given no emotion score


def incoherent(
    vectors: EmotionVectors, feats: np.ndarray | None, texts: Sequence[str], limits: DegenerationLimits | None = None
) -> np.ndarray:
    """Which replies are too broken to read: the model-free loop/markup detector (at ``limits``, a
    suite's), or the reply reader's ``incoherent`` head (fitted on blind judgements of the model's own
    replies) at the reading layer (``feats``: their pooled activations there) at its cut or above (the one
    ``fit-reader`` chose by cross-validation on judged replies, else :data:`INCOHERENT_P`)."""
    from steerlab.read.coherence import DegenerationLimits, degenerate_reasons

    broken = np.array([bool(degenerate_reasons(t, limits or DegenerationLimits())) for t in texts], dtype=bool)
    labels = (vectors.meta.get("reply_reader") or {}).get("labels", ())
    if feats is not None and INCOHERENT in labels and vectors.reply_weight is not None:
        from steerlab.read.reader_choice import reply_readings

        cut = (vectors.meta.get("reply_reader") or {}).get("incoherent_at") or INCOHERENT_P
        broken |= reply_readings(vectors, feats, vectors.reading_layer)[1] >= cut
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
