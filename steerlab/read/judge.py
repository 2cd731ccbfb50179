"""The judge reader: the blind judge's 1-5 ratings (hopeful, desperate, calm) predicted from a reply's
activations, by ridge regression fitted on the model's own judged replies.

The classifiers (``probe``, ``reply``) score how likely a reply's *label* is an emotion; the judged sets
also rate every reply on three scales, which carries the ordinal information a label throws away (a
reply rated hopeful 2 is not "not hopeful"). A ridge head per scale and layer reads that directly: its
score is a predicted rating, so a suite's effect is "points on the judge's 1-5 scale".

Fitting is :func:`.ridge.fit_ridge`: closed form, the penalty chosen per scale and layer by
cross-validation grouped by user message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from steerlab.read.judged_set import SCALES, Judged, judged_figures
from steerlab.read.readers import INCOHERENT
from steerlab.read.ridge import RidgeFit, fit_ridge

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors

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


def fit_judged_rows(judged: Judged, feats: np.ndarray, rows: np.ndarray) -> RidgeFit:
    """The judge reader fitted on ``rows`` of the judged replies, those judged incoherent left out (they are
    never read)."""
    keep = rows & (np.array(judged.labels) != INCOHERENT)
    ratings = np.stack([judged.scales[s][keep] for s in SCALES], axis=1).astype(float)
    return fit_ridge(feats[keep], ratings, [judged.users[i] for i in np.flatnonzero(keep)])


def judge_per_layer(
    judge: RidgeFit,
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
