"""The extract stage: corpus -> pooled activations at every layer -> vectors + held-out layer sweep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from . import __version__
from .activations import Pooled, PoolingConfig, Tick, pooled_activations
from .corpus import NEUTRAL, Corpus, emotion_info, heldout_mask
from .errors import SteerlabError
from .models import LoadedModel
from .probes import LAYER_RULE, LayerScore, choose_layer, probe_accuracy, score_layer
from .sites import CONVENTION, SITE
from .vectors import DEFAULT_PARAMS, METHODS, EmotionVectors, MethodInput, class_means

MethodName = Literal["diffmean", "pca", "probe"]


@dataclass(frozen=True)
class ExtractConfig:
    method: MethodName = "diffmean"  # a key of vectors.METHODS
    test_fraction: float = 0.25  # share of each emotion's texts held out for the layer sweep
    seed: int = 0  # split, bootstrap, probes and pairing
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    params: dict[str, float] = field(default_factory=dict)  # overrides of the method's defaults


@dataclass(frozen=True)
class ExtractResult:
    vectors: EmotionVectors
    sweep: list[LayerScore]
    pooled: Pooled


def extract(lm: LoadedModel, corpus: Corpus, config: ExtractConfig = ExtractConfig(), tick: Tick | None = None) -> ExtractResult:
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
        acc, probe_w[layer], probe_b[layer] = probe_accuracy(
            feats[train], y[train], feats[test], y[test], config.seed
        )
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
        "pooling": {"reduce": "mean over content tokens (BOS, padding, template markers excluded)",
                    "skip_tokens": config.pooling.skip_tokens, "max_length": config.pooling.max_length},
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
        "valence": {e: float(v) for e, v in zip(emotions, valence)},
        "arousal": {e: (info[e].arousal if e in info else 0.0) for e in emotions},
    }
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
    return ExtractResult(vectors, sweep, pooled)


def evaluate(lm: LoadedModel, vectors: EmotionVectors, corpus: Corpus, pooling: PoolingConfig | None = None, tick: Tick | None = None) -> tuple[list[LayerScore], list[str]]:
    """Score a labelled corpus with the vectors at every layer (emotions the two share)."""
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    shared = [e for e in vectors.emotions if e in set(corpus.emotions)]
    if len(shared) < 2:
        raise SteerlabError(
            f"corpus {corpus.source!r} shares {len(shared)} emotion(s) with the vectors: "
            f"label texts with the vectors' emotions ({', '.join(vectors.emotions)})"
        )
    rows = [i for i, lab in enumerate(corpus.labels) if lab in shared]
    texts = [corpus.texts[i] for i in rows]
    y = np.array([shared.index(corpus.labels[i]) for i in rows])
    cols = [vectors.index(e) for e in shared]
    valence = np.array([vectors.meta["valence"].get(e, 0.0) for e in shared])
    pooled = pooled_activations(lm, texts, pooling or PoolingConfig(), tick)
    seed = int(vectors.meta.get("seed", 0))
    scores = [
        score_layer(
            layer, pooled.features[:, layer], y, vectors.center[layer].numpy(),
            vectors.directions[layer, cols].numpy(), valence, seed,
        )
        for layer in range(vectors.n_layers)
    ]
    return scores, shared
