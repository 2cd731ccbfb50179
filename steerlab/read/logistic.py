"""Multinomial logistic regression at every layer: the probes and the reply reader of a vector file.

Each layer is its own problem, scikit-learn's ``LogisticRegression(C=c)`` on standardised features:
mean cross-entropy + ||W||^2 / (2 c n), the intercept unpenalised, L-BFGS to max |gradient| <= 1e-4.
It runs layer by layer at one thread (:func:`fitting_threads`): measured on a busy 2-core machine
(``eval/benchmarks/fitting.py``), the whole fitting took 1.7x as long with one batched L-BFGS over
every layer in torch at one thread, and one fold's probes 53x as long with scikit-learn at two threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

FIT_THREADS = 1  # threads while fitting (see fitting_threads)


@contextmanager
def fitting_threads(threads: int = FIT_THREADS) -> Iterator[None]:
    """Inside the block torch and the BLAS under numpy, scipy and scikit-learn use ``threads`` threads.

    Fitting is many small solves: on a busy 2-core machine the default two threads made scikit-learn's
    probes 53x slower than one thread, as threads wait at barriers for cores that other processes hold
    (the likely cause of the ~20 minutes an extraction once spent after its forward pass)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Fit:
    weight: np.ndarray  # (layers, classes, hidden) in raw units: logits = x @ weight.T + bias
    bias: np.ndarray  # (layers, classes)


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, c: float, n_classes: int | None = None, tol: float = 1e-4
) -> Fit:
    """One multinomial logistic regression per layer of ``features`` (layers, texts, hidden), all on
    ``labels`` (texts,) in 0..classes-1. Every class gets a row (two for two classes: the two-way
    softmax of the binary fit); a class absent from ``labels`` gets weight 0 and a bias far below."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels)
    k = int(n_classes if n_classes is not None else y.max() + 1)
    layers, _, d = np.shape(features)
    weight, bias = np.zeros((layers, k, d)), np.zeros((layers, k))
    for layer in range(layers):
        x = np.asarray(features[layer], dtype=np.float64)
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
        clf = LogisticRegression(C=c, tol=tol, max_iter=2000).fit((x - mu) / sd, y)
        w, b = clf.coef_ / sd, clf.intercept_
        if len(clf.classes_) == 2:  # one row for two classes: as a two-way softmax
            w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
        bias[layer] = b.min() - 50.0  # for classes the labels lack
        weight[layer, clf.classes_], bias[layer, clf.classes_] = w, b - w @ mu
    return Fit(weight, bias)
