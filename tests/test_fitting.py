"""The logistic fits of every layer and the rank AUROC against scikit-learn's, on planted data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from steerlab.read.logistic import fit_logistic, fitting_threads
from steerlab.read.probes import auroc


def planted(layers: int = 3, n: int = 240, d: int = 24, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    means = rng.normal(size=(layers, k, d)) * 0.6
    return (rng.normal(size=(layers, n, d)) * 2.0 + 3.0 + means[:, y]).astype(np.float32), y


def objective(x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray, c: float) -> float:
    """scikit-learn's: mean cross-entropy + ||W||^2 / (2 c n) in standardised units."""
    sd = x.std(axis=0) + 1e-6
    logits = x @ weight.T + bias
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return float(-logp[np.arange(len(y)), y].mean() + ((weight * sd) ** 2).sum() / (2 * c * len(y)))


@pytest.mark.parametrize("c", [1.0, 0.05])
def test_every_layer_reaches_sklearns_optimum(c: float) -> None:
    x, y = planted()
    before = x.copy()
    fit = fit_logistic(x, y, c)
    assert np.array_equal(x, before)  # the caller's features are left alone
    for layer in range(x.shape[0]):
        xl = x[layer].astype(np.float64)
        mu, sd = xl.mean(axis=0), xl.std(axis=0) + 1e-6
        ref = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit((xl - mu) / sd, y)
        w_ref = ref.coef_ / sd
        b_ref = ref.intercept_ - w_ref @ mu
        ours = objective(xl, y, fit.weight[layer], fit.bias[layer], c)
        assert ours <= objective(xl, y, w_ref, b_ref, c) + 1e-6
        same = np.argmax(xl @ fit.weight[layer].T + fit.bias[layer], 1) == np.argmax(xl @ w_ref.T + b_ref, 1)
        assert same.mean() > 0.99


def test_layers_are_independent_and_an_absent_class_is_never_predicted() -> None:
    x, y = planted()
    together = fit_logistic(x, y, 1.0)
    alone = fit_logistic(x[1:2], y, 1.0)
    np.testing.assert_array_equal(together.weight[1], alone.weight[0])
    wider = fit_logistic(x, y, 1.0, n_classes=6)  # classes 4 and 5 have no rows
    assert wider.weight.shape == (3, 6, 24) and not wider.weight[:, 4:].any()
    np.testing.assert_allclose(wider.weight[:, :4], together.weight)
    assert (np.einsum("lnd,lkd->lnk", x, wider.weight) + wider.bias[:, None]).argmax(axis=2).max() < 4


def test_two_classes_give_a_two_way_softmax() -> None:
    x, y = planted(k=2)
    fit = fit_logistic(x, y, 1.0)
    assert fit.weight.shape == (3, 2, 24)
    np.testing.assert_allclose(fit.weight[:, 0], -fit.weight[:, 1], atol=1e-6)


def test_fitting_threads_restores_torch() -> None:
    import torch

    before = torch.get_num_threads()
    with fitting_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_auroc_is_sklearns_with_ties() -> None:
    rng = np.random.default_rng(1)
    positive = rng.random(200) < 0.3
    scores = np.round(rng.normal(size=200) + positive, 1)  # rounded: many ties
    assert auroc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert auroc(positive, -scores) == pytest.approx(1 - roc_auc_score(positive, scores), abs=1e-12)
