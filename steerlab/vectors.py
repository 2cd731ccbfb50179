"""Emotion vectors as plain data, the extraction-method registry, and safetensors save/load."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.linear_model import LogisticRegression

from .errors import InterventionError, VectorsError

FORMAT_VERSION = 2
TENSORS = ("directions", "raw_norms", "center", "alpha_unit", "token_norm", "probe_weight", "probe_bias")
OPTIONAL_TENSORS = ("reply_weight", "reply_bias")


@dataclass(frozen=True)
class EmotionVectors:
    """One unit direction per emotion at every layer, plus what is needed to read and to steer."""

    emotions: tuple[str, ...]
    directions: torch.Tensor  # (layers, emotions, hidden) unit norm, float32
    raw_norms: torch.Tensor  # (layers, emotions) norm of the direction before normalisation
    center: torch.Tensor  # (layers, hidden) grand mean of training activations; readings centre on it
    alpha_unit: torch.Tensor  # (layers,) absolute residual-norm added per alpha = 1
    token_norm: torch.Tensor  # (layers,) mean norm of content-token activations (BOS excluded)
    probe_weight: torch.Tensor  # (layers, emotions, hidden) logistic probe, standardisation folded in
    probe_bias: torch.Tensor  # (layers, emotions)
    reply_weight: torch.Tensor | None = None  # (layers, reply labels, hidden) reader trained on replies
    reply_bias: torch.Tensor | None = None  # (layers, reply labels); labels in meta["reply_reader"]
    meta: dict[str, Any] = field(default_factory=dict)  # provenance; JSON-serialisable

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[2])

    @property
    def chosen_layer(self) -> int:
        return int(self.meta["chosen_layer"])

    @property
    def steering_layer(self) -> int:
        """Where edits go by default (the layer rule of the sweep, ``meta["layer_rule"]``)."""
        return self.chosen_layer

    @property
    def default_reader(self) -> str:
        """The reader validated on labelled replies when the file was built (``meta["reading"]``)."""
        return str(self.meta.get("reading", {}).get("reader", "vector"))

    @property
    def reading_layer(self) -> int:
        """Where readers read by default: the layer chosen on labelled replies, else the sweep's best."""
        reading = self.meta.get("reading", {})
        return int(reading.get("layer", self.meta.get("best_layer", self.chosen_layer)))

    def check_layer(self, layer: int, what: str = "layer") -> int:
        if not 0 <= layer < self.n_layers:
            raise InterventionError(f"{what} {layer} is out of range: use 0-{self.n_layers - 1}")
        return layer

    def mean_projection(self, direction: torch.Tensor, layer: int) -> float:
        """Mean projection of the extraction corpus's activations on ``direction`` at ``layer``: the
        value a mean-ablation sets the projection to (``center`` is that corpus's mean activation)."""
        return float(self.center[layer] @ direction)

    def index(self, emotion: str) -> int:
        """Position of ``emotion``; unknown names get the list and the nearest match."""
        name = emotion.strip().lower()
        if name in self.emotions:
            return self.emotions.index(name)
        near = difflib.get_close_matches(name, self.emotions, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InterventionError(
            f"unknown emotion {emotion!r}{hint}: available are {', '.join(self.emotions)}"
        )

    def direction(self, emotion: str, layer: int) -> torch.Tensor:
        return self.directions[layer, self.index(emotion)]

    def read(self, activations: torch.Tensor, layer: int) -> torch.Tensor:
        """Cosine of centred activations (..., hidden) with every direction: (..., emotions).

        Cosine makes scores comparable across texts and positions of different norm.
        """
        x = activations.float() - self.center[layer]
        x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        return x @ self.directions[layer].T

    def probe_logits(self, activations: torch.Tensor, layer: int) -> torch.Tensor:
        return activations.float() @ self.probe_weight[layer].T + self.probe_bias[layer]

    def check_compatible(self, model_id: str, hidden_size: int, n_layers: int) -> None:
        """Refuse vectors built for another model: mixing models is an error, not a warning."""
        mine = self.meta.get("model_id")
        if hidden_size != self.hidden_size or n_layers != self.n_layers or mine != model_id:
            raise VectorsError(
                f"vectors were built for {mine!r} (hidden {self.hidden_size}, {self.n_layers} layers) "
                f"but the model is {model_id!r} (hidden {hidden_size}, {n_layers} layers): "
                "pass matching --vectors and --model, or re-run `steerlab extract --model ...`"
            )


# --- extraction methods ----------------------------------------------------------------------


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


def method(name: str, **defaults: float) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name] = fn
        DEFAULT_PARAMS[name] = dict(defaults)
        return fn

    return register


def class_means(features: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    return np.stack([features[labels == e].mean(axis=0) for e in range(n)])


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


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
    return _unit(cleaned), np.linalg.norm(raw, axis=1)


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
    return _unit(np.stack(dirs)), np.array(norms)


def fit_probe(features: np.ndarray, labels: np.ndarray, seed: int, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic probe on standardised features; returns (weights, bias) in raw units."""
    mu = features.mean(axis=0)
    sd = features.std(axis=0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit((features - mu) / sd, labels)
    weight = clf.coef_ / sd
    bias = clf.intercept_ - weight @ mu
    return weight, bias


@method("probe", c=1.0)
def probe(inp: MethodInput) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-regression weights as directions (they read well but steer poorly)."""
    weight, _ = fit_probe(inp.features, inp.labels, inp.seed, inp.params["c"])
    return _unit(weight), np.linalg.norm(weight, axis=1)


# --- files -------------------------------------------------------------------------------------


def save_vectors(vectors: EmotionVectors, path: str | Path) -> Path:
    """Write ``path`` (.safetensors with the metadata inside) and a readable ``.json`` beside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise VectorsError(f"vector file {str(path)!r} must end in .safetensors")
    meta = {**vectors.meta, "emotions": list(vectors.emotions), "format_version": FORMAT_VERSION}
    text = json.dumps(meta, sort_keys=True, indent=1)
    tensors = {name: getattr(vectors, name).float().contiguous() for name in TENSORS}
    tensors |= {name: getattr(vectors, name).float().contiguous() for name in OPTIONAL_TENSORS
                if getattr(vectors, name) is not None}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"steerlab": text}))
        _atomic(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text + "\n"))
    except OSError as err:
        raise VectorsError(
            f"cannot write vectors to {str(path)!r} ({err.strerror or err}): choose a writable --out"
        ) from None
    return path


def _atomic(path: Path, write: Callable[[str], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_vectors(path: str | Path) -> EmotionVectors:
    path = Path(path)
    if not path.is_file():
        raise VectorsError(f"vector file {str(path)!r} not found: run `steerlab extract` or pass --vectors")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            present = set(f.keys())
            tensors = {name: f.get_tensor(name) for name in TENSORS + OPTIONAL_TENSORS if name in present}
    except Exception as err:  # noqa: BLE001  (safetensors raises its own error types for corrupt files)
        raise VectorsError(f"cannot read vector file {str(path)!r} ({err}): re-run `steerlab extract`") from None
    missing = [name for name in TENSORS if name not in tensors]
    if "steerlab" not in header or missing:
        raise VectorsError(f"{str(path)!r} has no steerlab metadata: it was not written by steerlab")
    meta = json.loads(header["steerlab"])
    if meta.get("format_version") != FORMAT_VERSION:
        raise VectorsError(
            f"{str(path)!r} has format version {meta.get('format_version')}, this steerlab reads "
            f"{FORMAT_VERSION}: re-run `steerlab extract`"
        )
    emotions = tuple(meta.pop("emotions"))
    return EmotionVectors(emotions=emotions, meta=meta, **tensors)
