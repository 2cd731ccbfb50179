"""The judge reader: ridge heads that predict the blind judge's 1-5 ratings from a reply's activations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors, load_vectors, save_vectors
from steerlab.read.judge import SCALES, judge_scores
from steerlab.read.judged_set import source_weights
from steerlab.read.readers import READERS, readable
from steerlab.read.ridge import fit_ridge, grouped_folds


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, 2 layers, 12): layer 1 carries the ratings linearly, layer 0 is noise."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 2, 12)) * 3 + 5
    signal = np.stack([feats[:, 1, 0] - feats[:, 1, 1], feats[:, 1, 2], -feats[:, 1, 3]], axis=1)
    ratings = np.clip(np.round(3 + signal / 3 + rng.normal(scale=0.3, size=signal.shape)), 1, 5)
    return feats, ratings, [f"message {i // 4}" for i in range(n)]


def test_ridge_heads_recover_a_planted_rating_at_the_layer_that_carries_it() -> None:
    feats, ratings, groups = _planted(240, 0)
    fit = fit_ridge(feats, ratings, groups)
    assert fit.weight.shape == (2, 3, 12) and fit.bias.shape == (2, 3)
    assert (fit.cv_mse[1] < fit.cv_mse[0]).all()  # cross-validation sees where the signal is
    new, truth, _ = _planted(200, 1)
    for layer, floor in ((1, 0.8), (0, None)):
        pred = new[:, layer] @ fit.weight[layer].T + fit.bias[layer]  # standardisation folded into the weights
        rho = [spearmanr(pred[:, s], truth[:, s]).statistic for s in range(3)]
        assert min(rho) > 0.8 if floor else max(abs(r) for r in rho) < 0.3, (layer, rho)


def test_a_weight_of_two_is_the_same_fit_as_the_reply_counted_twice() -> None:
    feats, ratings, groups = _planted(120, 3)
    weights = np.where(np.arange(120) % 3 == 0, 2.0, 1.0)
    twice = np.flatnonzero(weights == 2)
    rows = np.concatenate([np.arange(120), twice])
    duplicated = fit_ridge(feats[rows], ratings[rows], [groups[i] for i in rows])
    weighted = fit_ridge(feats, ratings, groups, weights)
    assert (weighted.penalty == duplicated.penalty).all()
    np.testing.assert_allclose(weighted.weight, duplicated.weight, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(weighted.bias, duplicated.bias, rtol=1e-6, atol=1e-9)
    unweighted = fit_ridge(feats, ratings, groups)
    np.testing.assert_allclose(fit_ridge(feats, ratings, groups, np.full(120, 0.3)).weight, unweighted.weight)
    assert not np.allclose(weighted.weight, unweighted.weight)


def test_written_and_judged_replies_weigh_the_same_in_total() -> None:
    weights = source_weights(528, 1930)
    assert weights.shape == (2458,) and weights[:528].sum() == pytest.approx(weights[528:].sum())
    assert (source_weights(0, 40) == 1).all() and (source_weights(30, 0) == 1).all()  # one source: each reply once


def test_folds_keep_each_message_on_one_side() -> None:
    groups = np.array([f"m{i % 7}" for i in range(50)])
    folds = grouped_folds(groups, 5)
    assert len(folds) == 5 and (np.sum([f.astype(int) for f in folds], axis=0) == 1).all()  # each row held out once
    for held in folds:
        assert not set(groups[held]) & set(groups[~held])


def _with_scales(v: EmotionVectors) -> EmotionVectors:
    """The tiny file with its first three emotions renamed to the judged scales, and judge heads."""
    names = (*SCALES, *v.emotions[len(SCALES) :])
    feats, ratings, groups = _planted(80, 2)
    hidden = v.directions.shape[-1]
    x = np.concatenate([feats, np.zeros((80, 2, hidden - 12))], axis=2)
    fit = fit_ridge(np.repeat(x[:, 1:], v.n_layers, axis=1), ratings, groups)
    return replace(
        v,
        emotions=names,
        judge_weight=torch.from_numpy(fit.weight.astype(np.float32)),
        judge_bias=torch.from_numpy(fit.bias.astype(np.float32)),
        meta={**v.meta, "judge_reader": {"scales": list(SCALES)}},
    )


def test_the_judge_reads_its_scales_only_and_survives_a_save(tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    v = _with_scales(tiny_vectors)
    assert readable(v, "judge") == SCALES and not READERS["judge"].every_emotion  # never the default reader
    feats = np.random.default_rng(3).normal(size=(4, v.directions.shape[-1])).astype(np.float32)
    scores = READERS["judge"].score(v, feats, ["a", "b", "c", "d"], 0)
    assert np.isfinite(scores[:, :3]).all() and np.isnan(scores[:, 3:]).all()
    back = load_vectors(save_vectors(v, tmp_path / "j.safetensors"))
    assert v.judge_weight is not None and v.judge_bias is not None and back.judge_weight is not None
    assert torch.equal(back.judge_weight, v.judge_weight)
    direct = judge_scores(v.judge_weight[0].numpy(), v.judge_bias[0].numpy(), feats, v.emotions)
    assert np.allclose(READERS["judge"].score(back, feats, ["a"] * 4, 0), direct, equal_nan=True)
    with pytest.raises(SteerlabError, match="no judge reader: run `steerlab fit-reader`"):
        READERS["judge"].score(tiny_vectors, feats, ["a"] * 4, 0)


def test_a_judge_head_of_the_wrong_shape_is_refused_at_load(tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    v = _with_scales(tiny_vectors)
    bad = replace(v, meta={**v.meta, "judge_reader": {"scales": ["hopeful"]}})
    with pytest.raises(Exception, match="judge_weight has shape"):
        load_vectors(save_vectors(bad, tmp_path / "bad.safetensors"))
