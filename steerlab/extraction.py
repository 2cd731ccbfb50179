"""The extract stage: corpus -> pooled activations at every layer -> vectors + held-out layer sweep."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from . import __version__
from .activations import Pooled, PoolingConfig, Tick, pooled_activations
from .corpus import BUILTIN_REPLIES, NEUTRAL, Corpus, emotion_info, heldout_mask, load_corpus
from .errors import SteerlabError
from .methods import DEFAULT_PARAMS, METHODS, MethodInput, class_means
from .models import LoadedModel
from .probes import LAYER_RULE, LayerScore, choose_layer, probe_accuracy, score_layer
from .reader_choice import choose_reader
from .readers import pooled_features
from .sites import CONVENTION, SITE
from .vectors import EmotionVectors

MethodName = Literal["diffmean", "pca", "probe"]


@dataclass(frozen=True)
class ExtractConfig:
    method: MethodName = "diffmean"  # a key of methods.METHODS
    test_fraction: float = 0.25  # share of each emotion's texts held out for the layer sweep
    seed: int = 0  # split, bootstrap, probes and pairing
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    params: dict[str, float] = field(default_factory=dict)  # overrides of the method's defaults
    replies: str | None = BUILTIN_REPLIES  # labelled replies for the reply reader and reader choice; None: none
    reply_c: float = 0.05  # inverse L2 strength of the reply reader (few replies, many dimensions)


@dataclass(frozen=True)
class ExtractResult:
    vectors: EmotionVectors
    sweep: list[LayerScore]
    pooled: Pooled


def extract(
    lm: LoadedModel, corpus: Corpus, config: ExtractConfig = ExtractConfig(), tick: Tick | None = None
) -> ExtractResult:
    if config.method not in METHODS:
        raise SteerlabError(f"unknown method {config.method!r}: use one of {', '.join(METHODS)}")
    if not 0 < config.test_fraction < 1:
        raise SteerlabError(f"test fraction {config.test_fraction} must be between 0 and 1")
    params = {**DEFAULT_PARAMS[config.method], **config.params}
    pooled = pooled_activations(lm, corpus.texts, config.pooling, tick)
    emotions = corpus.emotions
    labels = np.array(corpus.labels)
    is_emotion = labels != NEUTRAL
    held = heldout_mask(corpus, config.test_fraction, config.seed)
    train, test = is_emotion & ~held, is_emotion & held
    index = {e: i for i, e in enumerate(emotions)}
    y = np.array([index.get(lab, -1) for lab in labels])
    info = emotion_info()
    valence = np.array([info[e].valence if e in info else 0.0 for e in emotions])

    n_layers, hidden = lm.n_layers, lm.hidden_size
    directions = np.zeros((n_layers, len(emotions), hidden), dtype=np.float32)
    raw_norms = np.zeros((n_layers, len(emotions)), dtype=np.float32)
    center = np.zeros((n_layers, hidden), dtype=np.float32)
    alpha_unit = np.zeros(n_layers, dtype=np.float32)
    probe_w = np.zeros_like(directions)
    probe_b = np.zeros_like(raw_norms)
    sweep = []
    for layer in range(n_layers):
        feats = pooled.features[:, layer].astype(np.float64)
        means = class_means(feats[train], y[train], len(emotions))
        center[layer] = means.mean(axis=0)
        alpha_unit[layer] = np.linalg.norm(means - center[layer], axis=1).mean()
        inp = MethodInput(feats[train], y[train], len(emotions), feats[labels == NEUTRAL], config.seed, params)
        d, r = METHODS[config.method](inp)
        directions[layer], raw_norms[layer] = d, r
        acc, probe_w[layer], probe_b[layer] = probe_accuracy(feats[train], y[train], feats[test], y[test], config.seed)
        sweep.append(score_layer(layer, feats[test], y[test], center[layer], d, valence, config.seed, acc))
    chosen, best = choose_layer(sweep)
    meta = {
        "steerlab_version": __version__,
        "model_spec": lm.spec,
        "model_id": lm.model_id,
        "revision": lm.revision,
        "is_random": lm.is_random,
        "hidden_size": hidden,
        "n_layers": n_layers,
        "site": SITE,
        "layer_convention": CONVENTION,
        "method": config.method,
        "method_params": params,
        "pooling": {
            "reduce": "mean over content tokens (BOS, padding, template markers excluded)",
            "skip_tokens": config.pooling.skip_tokens,
            "max_length": config.pooling.max_length,
        },
        "corpus_source": corpus.source,
        "corpus_sha256": corpus.sha256,
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "n_neutral": int((labels == NEUTRAL).sum()),
        "test_fraction": config.test_fraction,
        "seed": config.seed,
        "chosen_layer": chosen,
        "best_layer": best,
        "layer_rule": LAYER_RULE,
        "reader": "cosine of (activation - center[layer]) with each unit direction",
        "alpha_unit": "alpha = 1 adds alpha_unit[layer]: the mean norm of (emotion mean - grand mean) at that layer",
        "sweep": [row.row() for row in sweep],
        "valence": {e: float(v) for e, v in zip(emotions, valence, strict=True)},
        "arousal": {e: (info[e].arousal if e in info else 0.0) for e in emotions},
    }
    if len(pooled.texts_per_rank) > 1:  # under torchrun: the same file, plus how the work was shared
        meta |= {"world_size": len(pooled.texts_per_rank), "texts_per_rank": list(pooled.texts_per_rank)}
    vectors = EmotionVectors(
        emotions=tuple(emotions),
        directions=torch.from_numpy(directions),
        raw_norms=torch.from_numpy(raw_norms),
        center=torch.from_numpy(center),
        alpha_unit=torch.from_numpy(alpha_unit),
        token_norm=torch.from_numpy(pooled.token_norm.astype(np.float32)),
        probe_weight=torch.from_numpy(probe_w),
        probe_bias=torch.from_numpy(probe_b),
        meta=meta,
    )
    if config.replies is not None:
        vectors = attach_reply_reader(lm, vectors, config)
    return ExtractResult(vectors, sweep, pooled)


def attach_reply_reader(lm: LoadedModel, vectors: EmotionVectors, config: ExtractConfig) -> EmotionVectors:
    """Fit the reader of replies on labelled replies in conversation and choose the default reader."""
    replies = load_corpus(
        None if config.replies == BUILTIN_REPLIES else config.replies, min_per_emotion=1, builtin=BUILTIN_REPLIES
    )
    contexts = replies.contexts
    shared = [e for e in replies.emotions if e in vectors.emotions]
    if contexts is None or len(shared) < 2:
        note = (
            f"no reply reader: {replies.source} shares {len(shared)} emotion(s) with the vectors"
            if contexts is not None
            else f"no reply reader: {replies.source} has no 'context' fields"
        )
        return replace(vectors, meta={**vectors.meta, "reply_reader": None, "reading_note": note})
    feats = pooled_features(lm, replies.texts, contexts, config.pooling.batch_size)
    provenance = {
        "source": replies.source,
        "sha256": replies.sha256,
        "n_replies": len(replies.records),
        "n_messages": len(set(contexts)),
        "fit": "multinomial logistic regression on standardised mean activations of the reply's "
        "tokens, each reply read as the model's turn after its user message",
    }
    return choose_reader(
        vectors, feats, replies.texts, replies.labels, contexts, config.seed, config.reply_c, provenance
    )
