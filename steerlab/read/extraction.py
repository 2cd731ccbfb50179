"""The extract stage: corpus -> pooled activations at every layer -> vectors + held-out layer sweep."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from steerlab import __version__
from steerlab.core.corpus import BUILTIN_REPLIES, NEUTRAL, Corpus, emotion_info, load_corpus
from steerlab.core.errors import SteerlabError
from steerlab.core.names import DEFAULT_METHOD, MethodName
from steerlab.core.vectors import EmotionVectors
from steerlab.model.activations import Pooled, PoolingConfig, Tick, pooled_activations
from steerlab.model.models import LoadedModel
from steerlab.model.sites import CONVENTION, SITE
from steerlab.read.folds import (
    Fold,
    Step,
    fit_layer,
    fold_probes,
    in_style_split,
    label_indices,
    out_of_style,
    style_folds,
)
from steerlab.read.gate import default_gates
from steerlab.read.logistic import fitting_threads
from steerlab.read.methods import DEFAULT_PARAMS, METHODS, class_means
from steerlab.read.probes import LAYER_RULE, LayerScore, choose_layer, score_layer
from steerlab.read.reader_choice import choose_reader
from steerlab.read.readers import pooled_features


@dataclass(frozen=True)
class ExtractConfig:
    """What :func:`extract` builds: the method, the held-out share for the layer sweep, the seed, the pooling."""

    method: MethodName = DEFAULT_METHOD  # a key of methods.METHODS
    test_fraction: float = 0.25  # share of each emotion's texts held out for the layer sweep
    seed: int = 0  # split, bootstrap, probes and pairing
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    params: dict[str, float] = field(default_factory=dict)  # overrides of the method's defaults
    replies: str | None = BUILTIN_REPLIES  # labelled replies for the reply reader and reader choice; None: none


@dataclass(frozen=True)
class ExtractResult:
    vectors: EmotionVectors
    sweep: list[LayerScore]
    pooled: Pooled
    timing: dict[str, float]  # wall seconds per phase (forward, directions, probes, reply_forward, reader_choice)


def extract(
    lm: LoadedModel,
    corpus: Corpus,
    config: ExtractConfig = ExtractConfig(),
    tick: Tick | None = None,
    step: Step | None = None,
) -> ExtractResult:
    """Pool, fit every layer, sweep, attach the reply reader, calibrate the gates. ``tick(texts, tokens)``
    follows the corpus's pooling pass; ``step(phase, done, total)`` every later phase (``directions``,
    ``probes``, ``reply forward``, ``reader choice``). The same inputs give the same vectors, byte for byte;
    each phase's wall time is returned beside them (``forward``: the corpus's pooling pass)."""
    if config.method not in METHODS:
        raise SteerlabError(f"unknown method {config.method!r}: use one of {', '.join(METHODS)}")
    if not 0 < config.test_fraction < 1:
        raise SteerlabError(f"test fraction {config.test_fraction} must be between 0 and 1")
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[name] = round(timing.get(name, 0.0) + now - clock, 2)
        clock = now

    pooled = pooled_activations(lm, corpus.texts, config.pooling, tick)
    lap("forward")
    with fitting_threads():
        vectors, sweep = build_vectors(pooled, corpus, config, lm.provenance(), _timed(step, lap))
    lap("probes")
    if config.replies is not None:
        vectors = attach_reply_reader(lm, vectors, config, _timed(step, lap))
        lap("reader_choice")
    vectors = default_gates(lm, vectors)  # the default threshold of `steer --when` (steerlab.read.gate)
    lap("gate")
    return ExtractResult(vectors, sweep, pooled, timing)


def _timed(step: Step | None, lap: Callable[[str], None]) -> Step:
    """``step``, and the clock charged to the previous phase whenever a new phase starts."""
    current: list[str] = []

    def follow(phase: str, done: int, total: int) -> None:
        if current and current[0] != phase:
            lap(current[0].replace(" ", "_"))
        if not current or current[0] != phase:
            current[:] = [phase]
        if step:
            step(phase, done, total)

    return follow


def build_vectors(
    pooled: Pooled,
    corpus: Corpus,
    config: ExtractConfig,
    model: dict[str, object],
    step: Step | None = None,
) -> tuple[EmotionVectors, list[LayerScore]]:
    """Directions at every layer from pooled activations, the in-style and out-of-style sweep, the layers.
    ``step(phase, done, total)`` follows the two fitting phases: ``directions`` (layer by layer) and
    ``probes`` (every layer at once, in-style then one fit per style)."""
    params = {**DEFAULT_PARAMS[config.method], **config.params}
    emotions = corpus.emotions
    split = in_style_split(corpus, config.test_fraction, config.seed)
    folds, no_folds = style_folds(corpus)
    y = label_indices(corpus)
    info = emotion_info()
    valence = np.array([info[e].valence if e in info else 0.0 for e in emotions])
    fitted = _fit_layers(pooled, y, len(emotions), split, folds, valence, config, params, step)
    probe, in_style, oos_probe = fold_probes(pooled.features, y, split, folds, len(emotions), step)
    sweep = [
        replace(row, probe_top1=float(in_style[i]), oos_probe_top1=float(oos_probe[i]))
        for i, row in enumerate(fitted.sweep)
    ]
    chosen, best_in_style = choose_layer(sweep)
    reading = best_in_style
    if folds:
        chosen, reading = choose_layer(sweep, out_of_style=True)
    layers = {"chosen_layer": chosen, "best_layer": best_in_style, "reading_layer": reading}
    selection = "out-of-style" if folds else f"in-style ({no_folds})"
    meta = _meta(pooled, corpus, config, model, params, split, layers, selection, sweep, fitted.per_style, valence)
    vectors = EmotionVectors(
        emotions=tuple(emotions),
        directions=torch.from_numpy(fitted.directions),
        raw_norms=torch.from_numpy(fitted.raw_norms),
        center=torch.from_numpy(fitted.center),
        alpha_unit=torch.from_numpy(fitted.alpha_unit),
        token_norm=torch.from_numpy(pooled.token_norm.astype(np.float32)),
        probe_weight=torch.from_numpy(probe.weight.astype(np.float32)),
        probe_bias=torch.from_numpy(probe.bias.astype(np.float32)),
        meta=meta,
    )
    return vectors, sweep


@dataclass(frozen=True)
class _Fitted:
    """What :func:`_fit_layers` gives: the file's arrays and each layer's held-out scores."""

    directions: np.ndarray  # (layers, emotions, hidden) unit directions
    raw_norms: np.ndarray  # (layers, emotions)
    center: np.ndarray  # (layers, hidden)
    alpha_unit: np.ndarray  # (layers,)
    sweep: list[LayerScore]  # in-style scores, plus out-of-style ones when the corpus has styles
    per_style: list[Any]  # per layer: out-of-style top-1 of each style (empty without styles)


def _fit_layers(
    pooled: Pooled,
    y: np.ndarray,
    n_emotions: int,
    split: Fold,
    folds: Sequence[Fold],
    valence: np.ndarray,
    config: ExtractConfig,
    params: dict[str, float],
    step: Step | None,
) -> _Fitted:
    """Fit the method at every layer on ``split.fit`` and score it on ``split.test`` and on every style fold."""
    n_layers, hidden = pooled.features.shape[1], pooled.features.shape[2]
    directions = np.zeros((n_layers, n_emotions, hidden), dtype=np.float32)
    raw_norms = np.zeros((n_layers, n_emotions), dtype=np.float32)
    center = np.zeros((n_layers, hidden), dtype=np.float32)
    alpha_unit = np.zeros(n_layers, dtype=np.float32)
    sweep, per_style = [], []
    fit, test = split.fit, split.test
    if step:
        step("directions", 0, n_layers)
    for layer in range(n_layers):
        feats = pooled.features[:, layer].astype(np.float64)
        center[layer], directions[layer], raw_norms[layer] = fit_layer(
            feats, y, split, n_emotions, config.method, params, config.seed
        )
        means = class_means(feats[fit], y[fit], n_emotions)
        alpha_unit[layer] = np.linalg.norm(means - center[layer], axis=1).mean()
        row = score_layer(layer, feats[test], y[test], center[layer], directions[layer], valence, config.seed)
        if folds:
            oos = out_of_style(feats, y, folds, n_emotions, config.method, params, config.seed + layer)
            per_style.append(oos.pop("per_style"))
            row = replace(row, **oos)  # type: ignore[arg-type]
        sweep.append(row)
        if step:
            step("directions", layer + 1, n_layers)
    return _Fitted(directions, raw_norms, center, alpha_unit, sweep, per_style)


def _meta(
    pooled: Pooled,
    corpus: Corpus,
    config: ExtractConfig,
    model: dict[str, object],
    params: dict[str, float],
    split: Fold,
    layers: dict[str, int],
    selection: str,
    sweep: list[LayerScore],
    per_style: list[Any],
    valence: np.ndarray,
) -> dict[str, object]:
    """The vector file's provenance: model, method, pooling, corpus, split, layers and sweep."""
    emotions, info = corpus.emotions, emotion_info()
    styles = Counter(s or "(none)" for s, lab in zip(corpus.styles, corpus.labels, strict=True) if lab != NEUTRAL)
    meta = {
        "steerlab_version": __version__,
        **model,
        "site": SITE,
        "layer_convention": CONVENTION,
        "method": config.method,
        "method_params": params,
        "pooling": config.pooling.describe(),
        "corpus_source": corpus.source,
        "corpus_sha256": corpus.sha256,
        "n_train": len(split.fit),
        "n_test": len(split.test),
        "n_neutral": len(split.neutral),
        "test_fraction": config.test_fraction,
        "seed": config.seed,
        **layers,
        "layer_rule": LAYER_RULE,
        "selection": selection,
        "styles": dict(styles),
        "oos_top1_per_style": per_style,
        "reader": "cosine of (activation - center[layer]) with each unit direction",
        "alpha_unit": "alpha = 1 adds alpha_unit[layer]: the mean norm of (emotion mean - grand mean) at that layer",
        "sweep": [row.row() for row in sweep],
        "valence": {e: float(v) for e, v in zip(emotions, valence, strict=True)},
        "arousal": {e: (info[e].arousal if e in info else 0.0) for e in emotions},
    }
    if len(pooled.texts_per_rank) > 1:  # under torchrun: the same file, plus how the work was shared
        meta |= {"world_size": len(pooled.texts_per_rank), "texts_per_rank": list(pooled.texts_per_rank)}
    return meta


def attach_reply_reader(
    lm: LoadedModel, vectors: EmotionVectors, config: ExtractConfig, step: Step | None = None
) -> EmotionVectors:
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
    say = step or (lambda *_: None)
    done = [0]

    def tick(texts: int, _tokens: int) -> None:
        done[0] += texts
        say("reply forward", done[0], len(replies.texts))

    say("reply forward", 0, len(replies.texts))
    feats = pooled_features(lm, replies.texts, contexts, config.pooling.batch_size, tick=tick)
    provenance = {
        "source": replies.source,
        "sha256": replies.sha256,
        "n_replies": len(replies.records),
        "n_messages": len(set(contexts)),
        "fit": "ridge regression of each label's indicator on standardised mean activations of the reply's "
        "tokens, each reply read as the model's turn after its user message",
    }
    with fitting_threads():
        return choose_reader(
            vectors, feats, replies.texts, replies.labels, contexts, config.seed, provenance, step
        )
