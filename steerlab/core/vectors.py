"""Emotion vectors as plain data, the extraction-method registry, and safetensors save/load."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from steerlab.core.checks import check_layers, emotion_index
from steerlab.core.errors import VectorsError
from steerlab.core.files import atomic_write
from steerlab.core.vectorfile import FORMAT_VERSION, read_meta, side_files
from steerlab.core.vectorfile import shipped_vectors as shipped_vectors  # re-exported: the public home
from steerlab.core.vectorfile import user_vectors as user_vectors

TENSORS = ("directions", "raw_norms", "center", "alpha_unit", "token_norm", "probe_weight", "probe_bias")
OPTIONAL_TENSORS = ("reply_weight", "reply_bias", "judge_weight", "judge_bias")


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
    judge_weight: torch.Tensor | None = None  # (layers, scales, hidden) judged ratings by ridge (read.judge)
    judge_bias: torch.Tensor | None = None  # (layers, scales); scales in meta["judge_reader"]
    meta: dict[str, Any] = field(default_factory=dict)  # provenance; JSON-serialisable

    @property
    def n_layers(self) -> int:
        return int(self.directions.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.directions.shape[2])

    @property
    def steering_layer(self) -> int:
        """Where edits go by default (the layer rule of the sweep, ``meta["layer_rule"]``); files store it as
        ``meta["chosen_layer"]``."""
        return int(self.meta["chosen_layer"])

    @property
    def default_reader(self) -> str:
        """The reader validated on labelled replies when the file was built (``meta["reading"]``)."""
        return str((self.meta.get("reading") or {}).get("reader", "vector"))

    @property
    def reading_layer(self) -> int:
        """Where readers read by default: the sweep's best layer (out-of-style when the corpus has styles).

        Files written before steerlab chose it there name the layer their reader was chosen at."""
        if "reading_layer" in self.meta:
            return int(self.meta["reading_layer"])
        reading = self.meta.get("reading") or {}
        return int(reading.get("layer", self.meta.get("best_layer", self.steering_layer)))

    def layer_for_reading(self, layer: int | None = None) -> int:
        """``layer``, or the file's reading layer when none is given: the one owner of that default."""
        return self.reading_layer if layer is None else layer

    def layers_for_steering(self, layers: Sequence[int] | None = None) -> list[int]:
        """``layers``, or the file's steering layer when none (or an empty list) is given: the one owner
        of that default."""
        return list(layers) if layers else [self.steering_layer]

    @property
    def skip_tokens(self) -> int:
        """Content tokens skipped at the start of each text when the file was built (read texts alike)."""
        return int((self.meta.get("pooling") or {}).get("skip_tokens", 0))

    def check_layer(self, layer: int, what: str = "layer") -> int:
        return check_layers([layer], self.n_layers, what)[0]

    def affect(self, key: str) -> dict[str, float]:
        """Valence or arousal per emotion: the file's own table, else the built-in one."""
        from steerlab.core.corpus import emotion_info

        table = {e: getattr(i, key) for e, i in emotion_info().items()}
        stored = self.meta.get(key) or {}
        return {e: float(stored[e]) if e in stored else table[e] for e in self.emotions if e in table}

    def mean_projection(self, direction: torch.Tensor, layer: int) -> float:
        """Mean projection of the extraction corpus's activations on ``direction`` at ``layer``: the
        value a mean-ablation sets the projection to (``center`` is that corpus's mean activation)."""
        return float(self.center[layer] @ direction)

    def index(self, emotion: str) -> int:
        """Position of ``emotion``; unknown names get the list and the nearest match."""
        return emotion_index(self.emotions, emotion)

    def name(self, emotion: str) -> str:
        """The file's spelling of ``emotion`` (``"Hopeful "`` -> ``"hopeful"``); unknown names raise."""
        return self.emotions[self.index(emotion)]

    def direction(self, emotion: str, layer: int) -> torch.Tensor:
        return self.directions[layer, self.index(emotion)]

    def read(self, activations: torch.Tensor, layer: int) -> torch.Tensor:
        """The vector reader: cosine of centred activations (..., hidden) with every direction."""
        return cosine(activations, self.center[layer], self.directions[layer])

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


def cosine(activations: torch.Tensor, center: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Cosine of ``activations - center`` (..., hidden) with unit ``directions`` (k, hidden): (..., k).

    The one scoring rule of directions. Cosine makes texts and positions of different norm comparable.
    """
    x = activations.float() - center.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    return x @ directions.float().T


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


# --- files -------------------------------------------------------------------------------------


def save_vectors(vectors: EmotionVectors, path: str | Path) -> Path:
    """Write ``path`` (.safetensors with the metadata inside) and a readable ``.json`` beside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise VectorsError(f"vector file {str(path)!r} must end in .safetensors")
    meta = {**vectors.meta, "emotions": list(vectors.emotions), "format_version": FORMAT_VERSION}
    text = json.dumps(meta, sort_keys=True, indent=1)
    tensors = {name: getattr(vectors, name).float().contiguous() for name in TENSORS}
    tensors |= {
        name: getattr(vectors, name).float().contiguous()
        for name in OPTIONAL_TENSORS
        if getattr(vectors, name) is not None
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"steerlab": text}))
        atomic_write(side_files(path)["json"], lambda tmp: Path(tmp).write_text(text + "\n"))
    except OSError as err:
        raise VectorsError(
            f"cannot write vectors to {str(path)!r} ({err.strerror or err}): choose a writable --out"
        ) from None
    return path


def load_vectors(path: str | Path) -> EmotionVectors:
    """Load a vector file written by :func:`save_vectors` and check it (shapes against the metadata,
    finite values, unit directions, layers in range); a bad file raises ``VectorsError`` naming the fix."""
    meta = read_meta(path, TENSORS)  # every header problem, before a tensor is read
    try:
        with safe_open(str(path), framework="pt") as f:
            present = set(f.keys())
            tensors = {name: f.get_tensor(name) for name in TENSORS + OPTIONAL_TENSORS if name in present}
    except Exception as err:
        raise VectorsError(f"cannot read vector file {str(path)!r} ({err}): re-run `steerlab extract`") from None
    emotions = meta.pop("emotions")
    vectors = EmotionVectors(emotions=tuple(emotions), meta=meta, **tensors)
    problem = consistency_problem(vectors)
    if problem:
        raise VectorsError(f"{str(path)!r} is inconsistent: {problem}: re-run `steerlab extract`")
    return vectors


# What a re-extraction reproduces. Same machine, same thread count: every byte. Elsewhere float sums
# run in another order: the statistics agree to 1e-4 (measured: 2e-6), the logistic fits, which stop
# at a convergence tolerance, to 1e-2 (measured: 2e-3); the metadata's choices are identical.
TOLERANCE = {
    "directions": 1e-4,
    "raw_norms": 1e-2,
    "center": 1e-2,
    "alpha_unit": 1e-2,
    "token_norm": 1e-2,
    "probe_weight": 1e-2,
    "probe_bias": 1e-2,
    "reply_weight": 1e-2,
    "reply_bias": 1e-2,
    "judge_weight": 1e-2,
    "judge_bias": 1e-2,
}
SAME_CHOICES = ("emotions", "chosen_layer", "best_layer", "reading", "corpus_sha256", "method", "model_id")


def differences(a: EmotionVectors, b: EmotionVectors) -> list[str]:
    """Where two extractions differ beyond :data:`TOLERANCE` (relative to each tensor's scale)."""
    out = []
    for name, tol in TOLERANCE.items():
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None or x.shape != y.shape:
            if x is not None or y is not None:
                out.append(f"{name}: missing in one file or shaped differently")
            continue
        gap = float((x.float() - y.float()).abs().max()) / max(float(y.float().abs().max()), 1e-12)
        if gap > tol:
            out.append(f"{name}: relative difference {gap:.2g} > {tol:g}")
    a_meta = {"emotions": list(a.emotions), **a.meta}
    b_meta = {"emotions": list(b.emotions), **b.meta}
    for key in SAME_CHOICES:
        ra, rb = a_meta.get(key), b_meta.get(key)
        if key == "reading" and isinstance(ra, dict) and isinstance(rb, dict):
            ra, rb = (ra.get("reader"), ra.get("layer")), (rb.get("reader"), rb.get("layer"))
        if ra != rb:
            out.append(f"metadata {key}: {ra!r} != {rb!r}")
    return out


def consistency_problem(v: EmotionVectors) -> str | None:
    """What is wrong with a loaded file (shapes against the metadata, non-finite values, layer
    indices out of range), so a bad file fails at load time and never gives silent numbers."""
    n_layers, n_emotions, hidden = v.directions.shape if v.directions.dim() == 3 else (0, 0, 0)
    if (n_layers, n_emotions) == (0, 0) or n_emotions != len(v.emotions):
        return f"directions have shape {tuple(v.directions.shape)} for {len(v.emotions)} emotions in the metadata"
    shapes = {
        "raw_norms": (n_layers, n_emotions),
        "center": (n_layers, hidden),
        "alpha_unit": (n_layers,),
        "token_norm": (n_layers,),
        "probe_weight": (n_layers, n_emotions, hidden),
        "probe_bias": (n_layers, n_emotions),
    }
    labels = len((v.meta.get("reply_reader") or {}).get("labels", []))
    if v.reply_weight is not None:
        shapes |= {"reply_weight": (n_layers, labels, hidden), "reply_bias": (n_layers, labels)}
    scales = len((v.meta.get("judge_reader") or {}).get("scales", []))
    if v.judge_weight is not None:
        shapes |= {"judge_weight": (n_layers, scales, hidden), "judge_bias": (n_layers, scales)}
    for name, shape in shapes.items():
        tensor = getattr(v, name)
        if tuple(tensor.shape) != shape:
            return f"{name} has shape {tuple(tensor.shape)}, expected {shape}"
    for name in ("directions", *shapes):
        if not bool(torch.isfinite(getattr(v, name)).all()):
            return f"{name} holds NaN or infinite values"
    norms = v.directions.float().norm(dim=-1)
    if not bool(((norms - 1).abs() < 1e-3).all()):
        worst = int((norms - 1).abs().argmax())
        at, emotion = divmod(worst, n_emotions)
        return (
            f"direction {v.emotions[emotion]!r} at layer {at} has norm {float(norms.flatten()[worst]):.4g}; "
            "directions are unit vectors"
        )
    for key in ("n_layers", "hidden_size"):
        if key in v.meta and v.meta[key] != {"n_layers": n_layers, "hidden_size": hidden}[key]:
            return f"metadata {key} = {v.meta[key]!r} but the tensors have {n_layers} layers, hidden size {hidden}"
    layers = {
        "chosen_layer": v.meta.get("chosen_layer"),
        "best_layer": v.meta.get("best_layer"),
        "reading layer": (v.meta.get("reading") or {}).get("layer"),
    }
    for what, layer in layers.items():
        if layer is not None and not (isinstance(layer, int) and 0 <= layer < n_layers):
            return f"{what} {layer!r} is out of range 0-{n_layers - 1}"
    if "chosen_layer" not in v.meta:
        return "metadata has no chosen_layer"
    return None
