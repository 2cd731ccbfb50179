"""Extraction methods: how pooled activations of labelled texts become one direction per emotion.

Every method is registered by name (``METHODS``) with its default parameters; ``extract`` runs the
one named in its config at every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steerlab.core.names import MethodName
from steerlab.core.vectors import unit_rows
from steerlab.read.logistic import fit_logistic


@dataclass(frozen=True)
class MethodInput:
    features: np.ndarray  # (texts, hidden) pooled training activations at one layer
    labels: np.ndarray  # (texts,) emotion index per text
    n_emotions: int
    neutral: np.ndarray  # (neutral texts, hidden); may have zero rows
    seed: int
    params: dict[str, float]


Method = Callable[[MethodInput], tuple[np.ndarray, np.ndarray]]  # -> (directions (E, d), raw norms (E,))
METHODS: dict[str, Method] = {}
DEFAULT_PARAMS: dict[str, dict[str, float]] = {}


def method(name: MethodName, **defaults: float) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name] = fn
        DEFAULT_PARAMS[name] = dict(defaults)
        return fn

    return register


def class_means(features: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    return np.stack([features[labels == e].mean(axis=0) for e in range(n)])


def neutral_components(neutral: np.ndarray, variance: float) -> np.ndarray:
    """Orthonormal top principal components of neutral text covering ``variance`` of its variance."""
    if variance <= 0 or len(neutral) < 2:
        return np.zeros((0, neutral.shape[-1]))
    centred = neutral - neutral.mean(axis=0)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(share, variance) + 1)
    return vt[:k]


@method("diffmean", neutral_variance=0.5)
def diffmean(inp: MethodInput) -> tuple[np.ndarray, np.ndarray]:
    """Class mean minus the grand mean of class means, neutral-text PCs projected out, unit norm."""
    means = class_means(inp.features, inp.labels, inp.n_emotions).astype(np.float64)
    raw = means - means.mean(axis=0)
    pcs = neutral_components(inp.neutral, inp.params["neutral_variance"])
    cleaned = raw - (raw @ pcs.T) @ pcs
    return unit_rows(cleaned), np.linalg.norm(raw, axis=1)


@method("pca", pairs=64, neutral_variance=0.5)
def pca(inp: MethodInput) -> tuple[np.ndarray, np.ndarray]:
    """RepE-style: first PC of sign-randomised (emotion text - other text) differences, after the
    neutral-text PCs are projected out; the sign is fixed by a projection vote."""
    rng = np.random.default_rng(inp.seed)
    pcs = neutral_components(inp.neutral, inp.params["neutral_variance"])
    feats = inp.features - (inp.features @ pcs.T) @ pcs
    dirs, norms = [], []
    for e in range(inp.n_emotions):
        own = feats[inp.labels == e]
        other = feats[inp.labels != e]
        n = int(inp.params["pairs"])
        diffs = own[rng.integers(len(own), size=n)] - other[rng.integers(len(other), size=n)]
        # Random signs make the consistent difference the axis of largest variance (RepE).
        flipped = diffs * rng.choice([-1.0, 1.0], size=(n, 1))
        _, _, vt = np.linalg.svd(flipped.astype(np.float64), full_matrices=False)
        d = vt[0]
        if np.mean(own @ d > other.mean(axis=0) @ d) < 0.5:
            d = -d
        dirs.append(d)
        norms.append(float(np.abs(diffs @ d).mean()))
    return unit_rows(np.stack(dirs)), np.array(norms)


def fit_probe(features: np.ndarray, labels: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic probe on standardised features (texts, hidden); returns (weights (classes,
    hidden), bias (classes,)) in raw units, one row per class (two for two classes)."""
    fit = fit_logistic(features[None], labels, c)
    return fit.weight[0], fit.bias[0]


@method("probe", c=1.0)
def probe(inp: MethodInput) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-regression weights as directions (they read well but steer poorly)."""
    weight, _ = fit_probe(inp.features, inp.labels, inp.params["c"])
    return unit_rows(weight), np.linalg.norm(weight, axis=1)
