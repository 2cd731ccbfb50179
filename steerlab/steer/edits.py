"""Edits as plain data, and the one place where names, alphas and ablation modes become edits.

An :class:`Edit` is one operation on one unit direction at one layer; :mod:`.interventions` applies
edits through pyvene. Units: ``add`` takes a scale-free alpha (alpha * alpha_unit[layer] * d);
``clamp`` sets the projection to center . d + value * alpha_unit; ablation sets it to its corpus mean
(``mean``), to 0 (``zero``), or mean-ablates the steering layer's direction at every layer
(``directional``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from steerlab.core.checks import finite
from steerlab.core.checks import parse_ablation as parse_ablation  # re-exported: its home is checks
from steerlab.core.errors import InterventionError
from steerlab.core.names import Ablation, Positions
from steerlab.core.vectors import EmotionVectors
from steerlab.model.sites import check_layers

Kind = Literal["add", "ablate", "clamp"]


@dataclass(frozen=True)
class TokenRule:
    """A per-position switch (a running gate): edit a position only where ``read`` of its residual at the
    edit's layer, before any edit there, is above ``threshold`` (see :mod:`steerlab.read.gate`)."""

    threshold: float
    read: Callable[[torch.Tensor], torch.Tensor]  # (..., hidden) -> (...) the gate emotion's reading
    label: str = ""  # the emotion read


@dataclass(frozen=True)
class Edit:
    """One operation on one unit direction at one layer."""

    kind: Kind
    layer: int
    direction: torch.Tensor  # (hidden,) unit norm
    value: float = 0.0  # add: absolute norm added; clamp and ablate: the absolute projection set
    label: str = ""  # emotion name or control name, for reports and displacement records
    rows: tuple[int, ...] | None = None  # rows (prompts of a generate call) to edit; None = every row
    positions: Positions | None = None  # where this edit applies; None = the steering call's positions
    when: TokenRule | None = None  # edit only the positions this running gate lets through; None = all


# No edit may move a token further than this many mean token norms of its layer: far past where
# replies break (alpha 8 is ~0.1 token norm on gemma-3-270m), well short of float overflow.
MAX_SHIFT = 100.0


def alpha_limit(vectors: EmotionVectors, layer: int) -> float:
    """The largest |alpha| at ``layer``: one that moves tokens by ``MAX_SHIFT`` mean token norms."""
    return MAX_SHIFT * float(vectors.token_norm[layer]) / float(vectors.alpha_unit[layer])


def scaled(vectors: EmotionVectors, layer: int, alpha: float, what: str = "alpha") -> float:
    """The one place where a scale-free alpha becomes an absolute norm: alpha * alpha_unit[layer],
    refused when not finite or beyond :func:`alpha_limit`."""
    unit, token = float(vectors.alpha_unit[layer]), float(vectors.token_norm[layer])
    value = finite(alpha, what) * unit
    if not abs(value) <= MAX_SHIFT * token:
        limit = alpha_limit(vectors, layer)
        raise InterventionError(
            f"{what} {alpha:g} at layer {layer} would move tokens by {abs(value):.3g}, more than {MAX_SHIFT:g}x "
            f"their mean norm ({token:.0f}): use |{what}| <= {math.floor(limit)}"  # rounded down: that one passes
        )
    return value


def add_edit(vectors: EmotionVectors, layer: int, direction: torch.Tensor, alpha: float, label: str) -> Edit:
    """Add ``alpha`` (scale-free, see :func:`scaled`) along ``direction``: alpha * alpha_unit[layer] * d."""
    return Edit("add", layer, direction, scaled(vectors, layer, alpha), label)


def ablate_edit(vectors: EmotionVectors, layer: int, direction: torch.Tensor, mode: Ablation, label: str) -> Edit:
    """Set the projection on ``direction`` to its corpus mean (``mean``) or to 0 (``zero``)."""
    target = 0.0 if mode == "zero" else vectors.mean_projection(direction, layer)
    return Edit("ablate", layer, direction, target, label)


def ablation_edits(
    vectors: EmotionVectors, emotion: str, layers: Sequence[int], mode: Ablation, label: str = ""
) -> list[Edit]:
    """Edits that ablate ``emotion`` (see the module doc for the modes); ``label`` names the records."""
    if mode == "directional":
        d = vectors.direction(emotion, vectors.check_layer(layers[0]))
        return [ablate_edit(vectors, layer, d, "mean", label or emotion) for layer in range(vectors.n_layers)]
    return [
        ablate_edit(vectors, layer, vectors.direction(emotion, vectors.check_layer(layer)), mode, label or emotion)
        for layer in layers
    ]


def build_edits(
    vectors: EmotionVectors,
    layers: Sequence[int],
    add: Mapping[str, float] | None = None,
    ablate: Sequence[str] = (),
    clamp: Mapping[str, float] | None = None,
    label: str = "",
) -> list[Edit]:
    """Edits for named emotions at ``layers``, in the vector file's scale-free units.

    ``ablate`` entries are ``EMOTION`` (mean-ablation) or ``EMOTION:zero|mean|directional``;
    ``clamp`` sets the projection to ``center . d + value * alpha_unit``. ``label`` names every edit
    (default: the emotion).
    """
    check_layers(list(layers), vectors.n_layers)
    edits = []
    for spec in ablate:
        emotion, mode = parse_ablation(spec)
        edits += ablation_edits(vectors, emotion, layers, mode, label or spec)
    for layer in layers:
        for emotion, value in (clamp or {}).items():
            d = vectors.direction(emotion, layer)
            target = vectors.mean_projection(d, layer) + scaled(vectors, layer, value, "clamp")
            edits.append(Edit("clamp", layer, d, target, label or emotion))
        for emotion, alpha in (add or {}).items():
            edits.append(add_edit(vectors, layer, vectors.direction(emotion, layer), alpha, label or emotion))
    return edits


def random_direction(hidden: int, seed: int) -> torch.Tensor:
    """A seeded unit direction, uniform on the sphere (for norm-matched controls)."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(hidden, generator=gen)
    return d / d.norm()
