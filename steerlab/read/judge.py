"""The judge reader: the blind judge's 1-5 ratings (hopeful, desperate, calm) predicted from a reply's
activations, by ridge regression fitted on the model's own judged replies.

The classifiers (``probe``, ``reply``) score how likely a reply's *label* is an emotion; the judged sets
also rate every reply on three scales, which carries the ordinal information a label throws away (a
reply rated hopeful 2 is not "not hopeful"). A ridge head per scale and layer reads that directly: its
score is a predicted rating, so a suite's effect is "points on the judge's 1-5 scale".

Fitting is closed form: features are standardised, the penalty is chosen per scale and layer by
cross-validation grouped by user message (a message's replies never sit on both sides), and the
standardisation is folded into the stored weights, as for the probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from steerlab.read.judged_set import SCALES, Judged, judged_figures
from steerlab.read.readers import INCOHERENT

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors

PENALTIES = tuple(float(a) for a in np.logspace(-1, 4, 11))  # ridge penalties, in units of the standardised Gram
FOLDS = 5


class JudgeFit(NamedTuple):
    weight: np.ndarray  # (layers, scales, hidden) in raw activation units
    bias: np.ndarray  # (layers, scales)
    penalty: np.ndarray  # (layers, scales): the cross-validated choice
    cv_mse: np.ndarray  # (layers, scales): its grouped cross-validated mean squared error


def _ridge_path(z: np.ndarray, y: np.ndarray, penalties: Sequence[float]) -> np.ndarray:
    """Ridge weights (penalties, hidden, scales) on centred ``z`` (n, hidden) and ``y`` (n, scales), one
    eigendecomposition for every penalty."""
    values, vectors = np.linalg.eigh(z.T @ z)
    projected = vectors.T @ (z.T @ y)  # (hidden, scales)
    return np.stack([vectors @ (projected / (values + a)[:, None]) for a in penalties])


def _folds(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """``k`` held-out masks that keep each group (user message) on one side, groups dealt round-robin
    in order of first appearance (deterministic)."""
    order = list(dict.fromkeys(groups.tolist()))
    k = max(2, min(k, len(order)))
    fold_of = {g: i % k for i, g in enumerate(order)}
    assigned = np.array([fold_of[g] for g in groups.tolist()])
    return [assigned == i for i in range(k)]


def fit_judge(features: np.ndarray, ratings: np.ndarray, groups: Sequence[str]) -> JudgeFit:
    """Ridge heads at every layer: ``features`` (replies, layers, hidden), ``ratings`` (replies, scales)
    on the judge's 1-5 scales, ``groups`` the user message of each reply (the cross-validation unit)."""
    n, n_layers, hidden = features.shape
    folds = _folds(np.asarray(groups), FOLDS)
    weight = np.zeros((n_layers, ratings.shape[1], hidden))
    bias = np.zeros((n_layers, ratings.shape[1]))
    penalty = np.zeros_like(bias)
    cv_mse = np.zeros_like(bias)
    for layer in range(n_layers):
        x = features[:, layer].astype(np.float64)
        errors = np.zeros((len(PENALTIES), ratings.shape[1]))
        for held in folds:
            mu, sd = x[~held].mean(0), x[~held].std(0) + 1e-6
            z, y_mean = (x[~held] - mu) / sd, ratings[~held].mean(0)
            path = _ridge_path(z, ratings[~held] - y_mean, [a * len(z) for a in PENALTIES])
            pred = np.einsum("nh,phs->pns", (x[held] - mu) / sd, path) + y_mean
            errors += ((pred - ratings[held]) ** 2).sum(1)
        best = errors.argmin(0)
        penalty[layer], cv_mse[layer] = np.array(PENALTIES)[best], errors[best, range(len(best))] / n
        mu, sd = x.mean(0), x.std(0) + 1e-6
        z, y_mean = (x - mu) / sd, ratings.mean(0)
        path = _ridge_path(z, ratings - y_mean, [a * n for a in PENALTIES])
        w = np.stack([path[b, :, s] for s, b in enumerate(best)])  # (scales, hidden), standardised units
        weight[layer] = w / sd
        bias[layer] = y_mean - weight[layer] @ mu
    return JudgeFit(weight, bias, penalty, cv_mse)


def judge_scores(
    fit_weight: np.ndarray,
    fit_bias: np.ndarray,
    feats: np.ndarray,
    emotions: Sequence[str],
    scales: Sequence[str] = SCALES,
) -> np.ndarray:
    """(texts, emotions) predicted ratings at one layer (``fit_weight`` (scales, hidden)); emotions that
    are not judged scales read as nan."""
    out = np.full((len(feats), len(emotions)), np.nan)
    predicted = feats.astype(np.float64) @ fit_weight.T + fit_bias
    for j, scale in enumerate(scales):
        if scale in emotions:
            out[:, list(emotions).index(scale)] = predicted[:, j]
    return out


def fit_judged_rows(judged: Judged, feats: np.ndarray, rows: np.ndarray) -> JudgeFit:
    """The judge reader fitted on ``rows`` of the judged replies, those judged incoherent left out (they are
    never read)."""
    keep = rows & (np.array(judged.labels) != INCOHERENT)
    ratings = np.stack([judged.scales[s][keep] for s in SCALES], axis=1).astype(float)
    return fit_judge(feats[keep], ratings, [judged.users[i] for i in np.flatnonzero(keep)])


def judge_per_layer(
    judge: JudgeFit,
    vectors: EmotionVectors,
    feats: np.ndarray,
    flagged: np.ndarray,
    judged: Judged,
    test: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """The judge reader (fitted on the other half) at every layer, on the held-out half."""
    out = {}
    for at in range(vectors.n_layers):
        s = judge_scores(judge.weight[at], judge.bias[at], feats[:, at], vectors.emotions)
        f = judged_figures(s, flagged, judged, test, vectors.emotions)
        out[str(at)] = {k: f[k] for k in ("spearman_hopeful", "auroc_hopeful_3plus", "spearman_desperate")}
    return out


def with_judge(vectors: EmotionVectors, judged: Judged, feats: np.ndarray, record: dict[str, Any]) -> EmotionVectors:
    """``vectors`` with the judge reader fitted on every judged reply, its provenance and held-out figures."""
    rows = np.ones(len(judged.replies), dtype=bool)
    judge = fit_judged_rows(judged, feats, rows)
    at = vectors.reading_layer
    meta = {
        "scales": list(SCALES),
        "source": judged.source,
        "sha256": judged.sha256,
        "n_replies": int((rows & (np.array(judged.labels) != INCOHERENT)).sum()),
        "fit": "ridge regression of each judged 1-5 rating on standardised mean activations of the reply's tokens "
        "(read as the model's turn after its user message), penalty chosen per layer and scale by 5-fold "
        "cross-validation grouped by user message; replies judged incoherent left out",
        "penalty_at_reading_layer": dict(zip(SCALES, judge.penalty[at].tolist(), strict=True)),
        "heldout": {k: record["readers"]["judge"][k] for k in ("spearman_hopeful", "auroc_hopeful_3plus")},
    }
    return replace(
        vectors,
        judge_weight=torch.from_numpy(judge.weight.astype(np.float32)),
        judge_bias=torch.from_numpy(judge.bias.astype(np.float32)),
        meta={**vectors.meta, "judge_reader": meta},
    )
