"""Ridge regression at every layer, the penalty chosen per target by cross-validation grouped by user
message: the judge reader's heads and the reply reader's.

Fitting is closed form: features are standardised, one eigendecomposition per layer and fold serves
every penalty, a message's replies never sit on both sides of a fold, and the standardisation is folded
into the stored weights, as for the probes (predictions = x @ weight.T + bias in raw activation units).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

PENALTIES = tuple(float(a) for a in np.logspace(-1, 4, 11))  # ridge penalties, in units of the standardised Gram
FOLDS = 5


class RidgeFit(NamedTuple):
    weight: np.ndarray  # (layers, targets, hidden) in raw activation units
    bias: np.ndarray  # (layers, targets)
    penalty: np.ndarray  # (layers, targets): the cross-validated choice
    cv_mse: np.ndarray  # (layers, targets): its grouped cross-validated mean squared error


def _ridge_path(z: np.ndarray, y: np.ndarray, penalties: Sequence[float]) -> np.ndarray:
    """Ridge weights (penalties, hidden, targets) on centred ``z`` (n, hidden) and ``y`` (n, targets), one
    eigendecomposition for every penalty."""
    values, vectors = np.linalg.eigh(z.T @ z)
    projected = vectors.T @ (z.T @ y)  # (hidden, targets)
    return np.stack([vectors @ (projected / (values + a)[:, None]) for a in penalties])


def grouped_folds(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """``k`` held-out masks that keep each group (user message) on one side, groups dealt round-robin
    in order of first appearance (deterministic); replies to a single message are dealt one by one."""
    if len(set(groups.tolist())) < 2:
        groups = np.arange(len(groups))
    order = list(dict.fromkeys(groups.tolist()))
    k = max(2, min(k, len(order)))
    fold_of = {g: i % k for i, g in enumerate(order)}
    assigned = np.array([fold_of[g] for g in groups.tolist()])
    return [assigned == i for i in range(k)]


def fit_ridge(
    features: np.ndarray, targets: np.ndarray, groups: Sequence[str], weights: np.ndarray | None = None
) -> RidgeFit:
    """Ridge heads at every layer: ``features`` (texts, layers, hidden), ``targets`` (texts, targets),
    ``groups`` the user message of each text (the cross-validation unit), ``weights`` (texts,) how much each
    text counts in the fit and in the cross-validated error (default: each once)."""
    n, n_layers, hidden = features.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64) * n / np.sum(weights)
    folds = grouped_folds(np.asarray(groups), FOLDS)
    weight = np.zeros((n_layers, targets.shape[1], hidden))
    bias = np.zeros((n_layers, targets.shape[1]))
    penalty = np.zeros_like(bias)
    cv_mse = np.zeros_like(bias)
    for layer in range(n_layers):
        x = features[:, layer].astype(np.float64)
        errors = np.zeros((len(PENALTIES), targets.shape[1]))
        for held in folds:
            mu, sd, y_mean, path = _weighted_path(x[~held], targets[~held], w[~held])
            pred = np.einsum("nh,phs->pns", (x[held] - mu) / sd, path) + y_mean
            errors += (w[held, None] * (pred - targets[held]) ** 2).sum(1)
        best = errors.argmin(0)
        penalty[layer], cv_mse[layer] = np.array(PENALTIES)[best], errors[best, range(len(best))] / n
        mu, sd, y_mean, path = _weighted_path(x, targets, w)
        w_best = np.stack([path[b, :, s] for s, b in enumerate(best)])  # (targets, hidden), standardised units
        weight[layer] = w_best / sd
        bias[layer] = y_mean - weight[layer] @ mu
    return RidgeFit(weight, bias, penalty, cv_mse)


def _weighted_path(
    x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sd, target mean, ridge path over ``PENALTIES``) of rows ``x`` weighted by ``w``."""
    share = w / w.sum()
    mu = share @ x
    sd = np.sqrt(share @ (x - mu) ** 2) + 1e-6
    y_mean = share @ y
    root = np.sqrt(w)[:, None]
    path = _ridge_path(root * (x - mu) / sd, root * (y - y_mean), [a * w.sum() for a in PENALTIES])
    return mu, sd, y_mean, path
