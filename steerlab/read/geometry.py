"""Geometry of the emotion directions: PCA oriented to labelled valence/arousal, cosine matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors, unit_rows
from steerlab.read.probes import Correlation, correlate


@dataclass(frozen=True)
class Geometry:
    """PCA of one layer's emotion directions and their cosine matrix sorted by valence."""

    layer: int
    emotions: tuple[str, ...]
    valence: np.ndarray  # (E,) labelled valence (nan where unknown)
    arousal: np.ndarray  # (E,)
    coords: np.ndarray  # (E, 2) PC1, PC2 scores; signs oriented so PC1 ~ +valence, PC2 ~ +arousal
    explained: np.ndarray  # (2,) share of variance of PC1 and PC2
    r: dict[str, Correlation]  # "pc1_valence", "pc1_arousal", "pc2_valence", "pc2_arousal"
    order: tuple[int, ...]  # emotion indices sorted by valence (descending)
    cosine: np.ndarray  # (E, E) cosine matrix in ``order``


def geometry(
    directions: np.ndarray, emotions: Sequence[str], valence: Sequence[float], arousal: Sequence[float], layer: int = 0
) -> Geometry:
    """PCA of ``directions`` (E, hidden); PC signs are arbitrary, so they are oriented to the labels."""
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != len(emotions) or d.shape[0] < 3:
        raise SteerlabError(
            f"geometry needs (>= 3 emotions, hidden) directions, got shape {d.shape} for {len(emotions)} emotions"
        )
    val, aro = np.asarray(valence, float), np.asarray(arousal, float)
    centred = d - d.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    for k, ref in ((0, val), (1, aro)):
        rk = correlate(coords[:, k], ref).r
        if np.isfinite(rk) and rk < 0:
            coords[:, k] *= -1
    r = {
        f"pc{k + 1}_{name}": correlate(coords[:, k], ref)
        for k in range(2)
        for name, ref in (("valence", val), ("arousal", aro))
    }
    order = tuple(int(i) for i in np.argsort(-np.nan_to_num(val, nan=0.0), kind="stable"))
    u = unit_rows(d)
    cos = (u @ u.T)[np.ix_(order, order)]
    return Geometry(layer, tuple(emotions), val, aro, coords, (s[:2] ** 2) / np.sum(s**2), r, order, cos)


def vector_geometry(vectors: EmotionVectors, layer: int | None = None) -> Geometry:
    """Geometry of the vectors at ``layer`` (default: the reading layer)."""
    layer = vectors.check_layer(vectors.layer_for_reading(layer), "layer")
    val, aro = vectors.affect("valence"), vectors.affect("arousal")
    return geometry(
        vectors.directions[layer].numpy(),
        vectors.emotions,
        [val.get(e, np.nan) for e in vectors.emotions],
        [aro.get(e, np.nan) for e in vectors.emotions],
        layer,
    )


def geometry_sweep(vectors: EmotionVectors) -> list[Geometry]:
    return [vector_geometry(vectors, layer) for layer in range(vectors.n_layers)]
