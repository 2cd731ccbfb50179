"""Held-out scoring of extracted directions: the in-style split, one fold per style (fit on the other
styles, score this one), and the logistic probe fitted for every fold at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from steerlab.core.corpus import NEUTRAL, Corpus, heldout_mask
from steerlab.core.vectors import cosine
from steerlab.read.logistic import Fit
from steerlab.read.methods import METHODS, MethodInput, class_means
from steerlab.read.probes import bootstrap_ci, probe_accuracy, topk_hits

Step = Callable[[str, int, int], None]  # (phase, done, total): how far a fitting phase has come


@dataclass(frozen=True)
class Fold:
    """Rows to fit on and rows to score, by index into the corpus."""

    name: str
    fit: np.ndarray  # labelled emotion rows the directions are fitted on
    neutral: np.ndarray  # neutral rows the method may use (denoising)
    test: np.ndarray  # labelled emotion rows scored


def label_indices(corpus: Corpus) -> np.ndarray:
    """(texts,) each text's index in ``corpus.emotions``; -1 for neutral text."""
    index = {e: i for i, e in enumerate(corpus.emotions)}
    return np.array([index.get(lab, -1) for lab in corpus.labels])


def in_style_split(corpus: Corpus, test_fraction: float, seed: int) -> Fold:
    """Each emotion's texts split into fitted and held-out rows (``test_fraction`` held out); every neutral
    text may be used by the method."""
    is_emotion = np.array(corpus.labels) != NEUTRAL
    held = heldout_mask(corpus, test_fraction, seed)
    return Fold(
        "in-style", np.flatnonzero(is_emotion & ~held), np.flatnonzero(~is_emotion), np.flatnonzero(is_emotion & held)
    )


def style_folds(corpus: Corpus) -> tuple[list[Fold], str | None]:
    """One fold per style: fit on every other style's texts, score this style's. ([], why) when impossible."""
    labels, styles = np.array(corpus.labels), np.array([s or "" for s in corpus.styles])
    is_emotion = labels != NEUTRAL
    names = sorted(set(styles[is_emotion]) - {""})
    if len(names) < 2 or (styles[is_emotion] == "").any():
        return [], "the corpus does not give every text one of at least two styles ('style' field)"
    for emotion in corpus.emotions:
        if len(set(styles[labels == emotion])) < 2:
            return [], f"emotion {emotion!r} is written in one style only"
    folds = [
        Fold(
            name,
            np.flatnonzero(is_emotion & (styles != name)),
            np.flatnonzero(~is_emotion & (styles != name)),
            np.flatnonzero(is_emotion & (styles == name)),
        )
        for name in names
    ]
    return folds, None


def fit_layer(
    feats: np.ndarray, y: np.ndarray, fold: Fold, n_emotions: int, method: str, params: dict[str, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(center, unit directions, raw norms) of one layer fitted on ``fold.fit``."""
    center = class_means(feats[fold.fit], y[fold.fit], n_emotions).mean(axis=0)
    inp = MethodInput(feats[fold.fit], y[fold.fit], n_emotions, feats[fold.neutral], seed, params)
    directions, raw = METHODS[method](inp)
    return center, directions, raw


def out_of_style(
    feats: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    n_emotions: int,
    method: str,
    params: dict[str, float],
    seed: int,
) -> dict[str, float | dict[str, float]]:
    """One layer's out-of-style scores of the directions: fit on all styles but one, read the left-out
    style, average (the probe's out-of-style figure is fitted for every layer at once: :func:`fold_probes`)."""
    top1, top3, group = [], [], []
    for g, fold in enumerate(folds):
        center, directions, _ = fit_layer(feats, y, fold, n_emotions, method, params, seed)
        scores = cosine(*(torch.from_numpy(np.asarray(a)) for a in (feats[fold.test], center, directions))).numpy()
        top1.append(topk_hits(scores, y[fold.test], 1))
        top3.append(topk_hits(scores, y[fold.test], min(3, n_emotions)))
        group.append(np.full(len(fold.test), g))
    hits, groups = np.concatenate(top1).astype(float), np.concatenate(group)
    lo, hi = bootstrap_ci(hits, seed, groups=groups)
    per_style = {f.name: float(h.mean()) for f, h in zip(folds, top1, strict=True)}
    return {
        "oos_top1": float(np.mean(list(per_style.values()))),
        "oos_top1_lo": lo,
        "oos_top1_hi": hi,
        "oos_top3": float(np.mean([h.mean() for h in top3])),
        "per_style": per_style,
    }


def fold_probes(
    features: np.ndarray, y: np.ndarray, split: Fold, folds: Sequence[Fold], n_emotions: int, step: Step | None = None
) -> tuple[Fit, np.ndarray, np.ndarray]:
    """The logistic probe at every layer at once: (the in-style fit, its held-out top-1 per layer, the
    out-of-style top-1 per layer averaged over styles; nan without styles). Each style's fit starts from
    zero: a start from the in-style fit, which saw the left-out style, would carry it into a solution
    stopped at a tolerance (measured: out-of-style top-1 up to 0.05 higher)."""
    total = 1 + len(folds)
    if step:
        step("probes", 0, total)
    base = probe_accuracy(features, y, split.fit, split.test, n_emotions)
    if step:
        step("probes", 1, total)
    per_fold = []
    for i, fold in enumerate(folds):
        per_fold.append(probe_accuracy(features, y, fold.fit, fold.test, n_emotions)[0])
        if step:
            step("probes", i + 2, total)
    oos = np.mean(per_fold, axis=0) if per_fold else np.full(features.shape[1], np.nan)
    return base[1], base[0], oos
