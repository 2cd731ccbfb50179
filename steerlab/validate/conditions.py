"""Suite conditions: expansion into concrete conditions, displacement calibration, and per-row edits.

Controls are matched on what they do to activations, not on alpha. An addition moves every edited
token by exactly alpha * alpha_unit, so a random addition of the same alpha is matched by
construction. An ablation moves a token by |projection - its mean|, which depends on how much the
residual stream varies along the direction; emotion directions carry far more of that variance than a
random direction does. So a ``random_ablate`` control with ``match: <ablation>`` removes a random
*subspace* whose size k is calibrated, on the clean activations of the suite's own prompts, to cause
the same mean displacement as that ablation; ``ablate_similar`` picks the same-valence emotion whose
calibrated displacement is closest. The displacement each condition actually causes while generating
is recorded and reported beside it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..activations import content_mask, pad_batch, token_activations, tokenize
from ..edits import (
    Ablation,
    Edit,
    ablate_edit,
    ablation_edits,
    add_edit,
    build_edits,
    random_direction,
    random_directions,
)
from ..errors import SuiteError
from ..models import LoadedModel
from ..vectors import EmotionVectors
from .prompts import Prompt
from .schema import LABEL, ConditionSpec, Suite

MAX_SUBSPACE = 256  # largest random subspace a matched ablation control may remove
CALIBRATION_PROMPTS = 32  # prompts whose clean activations calibrate displacement


@dataclass(frozen=True)
class Condition:
    """One concrete condition after expansion."""

    name: str
    group: str  # the spec's name
    op: str
    emotion: str | None = None  # the emotion edited ("label" = each prompt's own); None for controls
    alpha: float | None = None  # add / random_add strength; clamp value
    seed: int | None = None  # random direction seed
    instruction: str = ""
    layers: tuple[int, ...] = ()
    mode: Ablation = "mean"  # ablations: how the projection is removed
    k: int = 1  # random_ablate: dimension of the random subspace removed
    expected_displacement: float = float("nan")  # calibrated mean displacement per token (ablations)


class Calibration:
    """Clean content-token activations of the prompts at each layer, to predict ablation displacement."""

    def __init__(self, lm: LoadedModel, vectors: EmotionVectors, texts: Sequence[str]) -> None:
        self.lm, self.vectors, self.texts = lm, vectors, list(texts)[:CALIBRATION_PROMPTS]
        self._tokens: dict[int, torch.Tensor] = {}

    def tokens(self, layer: int) -> torch.Tensor:
        if layer not in self._tokens:
            enc = pad_batch(self.lm, tokenize(self.lm, self.texts, 512))
            acts = token_activations(self.lm, enc, [layer])[layer]
            self._tokens[layer] = acts[content_mask(enc)]
        return self._tokens[layer]

    def _offsets(self, layer: int, mode: Ablation) -> torch.Tensor:
        x = self.tokens(layer)
        return x - self.vectors.center[layer] if mode != "zero" else x

    def ablation(self, emotion: str, layers: Sequence[int], mode: Ablation) -> float:
        """Mean |projection - target| per token and layer for ablating ``emotion``."""
        if mode == "directional":
            d = self.vectors.direction(emotion, layers[0])
            return float(np.mean([(self._offsets(la, "mean") @ d).abs().mean() for la in range(self.vectors.n_layers)]))
        return float(
            np.mean([(self._offsets(la, mode) @ self.vectors.direction(emotion, la)).abs().mean() for la in layers])
        )

    def subspace_size(self, target: float, layers: Sequence[int], mode: Ablation, seed: int) -> tuple[int, float]:
        """The k whose random k-dimensional ablation displaces tokens closest to ``target``, and that
        displacement."""
        k_max = min(MAX_SUBSPACE, self.vectors.hidden_size)
        curves = []
        for layer in layers:
            q = random_directions(self.vectors.hidden_size, k_max, seed)
            proj = self._offsets(layer, mode) @ q.T  # (tokens, k_max)
            curves.append(proj.pow(2).cumsum(dim=1).sqrt().mean(dim=0).numpy())
        curve = np.mean(curves, axis=0)
        k = int(np.argmin(np.abs(curve - target))) + 1
        return k, float(curve[k - 1])


def expand_conditions(
    suite: Suite, vectors: EmotionVectors, prompts: Sequence[Prompt], calibration: Calibration | None = None
) -> list[Condition]:
    """Concrete conditions: one per emotion x alpha for add / clamp, one per seed (x alpha) for random
    controls; ablation controls are matched on calibrated displacement (see the module doc)."""
    out: list[Condition] = []
    for i, spec in enumerate(suite.conditions):
        layers = spec.layers if spec.layers is not None else (vectors.steering_layer,)
        for layer in layers:
            vectors.check_layer(layer, f"{suite.path}: field 'conditions[{i}].layers' has layer")
        emotions = _emotions(spec, vectors, suite.path, i)
        base = Condition(
            spec.name, spec.name, spec.op, instruction=spec.instruction, layers=tuple(layers), mode=spec.mode
        )
        if spec.op in ("baseline", "prompt"):
            items = [base]
        elif spec.op == "ablate":
            items = [replace(base, name=_join(spec.name, e, len(emotions)), emotion=e) for e in emotions]
        elif spec.op in ("add", "clamp"):
            items = [
                replace(
                    base, name=_join(_join(spec.name, e, len(emotions)), f"{a:g}", len(spec.alphas)), emotion=e, alpha=a
                )
                for e in emotions
                for a in spec.alphas
            ]
        elif spec.op == "ablate_similar":
            cal = _need(calibration, spec)
            items = [replace(base, emotion=similar_emotion(vectors, spec.like, layers, spec.mode, cal))]
        elif spec.op == "random_add":
            items = [
                replace(base, name=_join(_join(spec.name, f"{a:g}", len(spec.alphas)), f"s{s}", 2), seed=s, alpha=a)
                for a in spec.alphas
                for s in range(spec.seed, spec.seed + spec.seeds)
            ]
        else:
            items = [replace(base, name=f"{spec.name}:s{s}", seed=s) for s in range(spec.seed, spec.seed + spec.seeds)]
            if spec.match:
                items = _match_random(items, spec, out, prompts, _need(calibration, spec))
        out += items
    for i, cond in enumerate(out):
        if cond.op in ("ablate", "ablate_similar") and calibration is not None and cond.emotion is not None:
            out[i] = replace(cond, expected_displacement=_ablation_target(cond, prompts, calibration))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SuiteError(f"{suite.path}: two conditions expand to the name {dup!r}: rename one")
    return out


def needs_calibration(suite: Suite) -> bool:
    return any(s.op == "ablate_similar" or (s.op == "random_ablate" and s.match) for s in suite.conditions)


def _need(calibration: Calibration | None, spec: ConditionSpec) -> Calibration:
    if calibration is None:
        raise SuiteError(f"condition {spec.name!r} needs a displacement calibration (pass the model)")
    return calibration


def _ablation_target(cond: Condition, prompts: Sequence[Prompt], cal: Calibration) -> float:
    """Calibrated displacement of an ablation; "label" averages over the prompts' own emotions."""
    emotions = [p.label for p in prompts] if cond.emotion == LABEL else [cond.emotion]
    values = [cal.ablation(e, cond.layers, cond.mode) for e in emotions if e is not None]
    return float(np.mean(values)) if values else float("nan")


def _match_random(
    items: list[Condition], spec: ConditionSpec, done: Sequence[Condition], prompts: Sequence[Prompt], cal: Calibration
) -> list[Condition]:
    matched = [c for c in done if c.group == spec.match or c.name == spec.match]
    ablations = [c for c in matched if c.op in ("ablate", "ablate_similar") and c.emotion is not None]
    if not ablations:
        raise SuiteError(f"condition {spec.name!r}: 'match: {spec.match}' must name an ablation listed before it")
    target = float(np.mean([_ablation_target(c, prompts, cal) for c in ablations]))
    out = []
    for cond in items:
        k, expected = cal.subspace_size(target, cond.layers, cond.mode, int(cond.seed or 0))
        out.append(replace(cond, k=k, expected_displacement=expected))
    return out


def _emotions(spec: ConditionSpec, vectors: EmotionVectors, source: str, i: int) -> list[str]:
    if spec.emotions == ("all",):
        return list(vectors.emotions)
    out = []
    for e in spec.emotions:
        if e != LABEL and e not in vectors.emotions:
            near = difflib.get_close_matches(e, vectors.emotions, n=1)
            raise SuiteError(
                f"{source}: field 'conditions[{i}].emotions' has unknown emotion {e!r}"
                f"{f' (did you mean {near[0]!r}?)' if near else ''}: the vectors have {', '.join(vectors.emotions)}"
            )
        out.append(e)
    if spec.op == "ablate_similar" and spec.like not in vectors.emotions:
        raise SuiteError(
            f"{source}: field 'conditions[{i}].like' is {spec.like!r}: use one of {', '.join(vectors.emotions)}"
        )
    return out


def _join(name: str, part: str, count: int) -> str:
    return f"{name}:{part}" if count > 1 else name


def similar_emotion(
    vectors: EmotionVectors, like: str, layers: Sequence[int], mode: Ablation, calibration: Calibration
) -> str:
    """The emotion of the same valence sign as ``like`` whose ablation displaces the prompts' tokens
    most like ``like``'s does (all other emotions when the file carries no valence)."""
    valence = vectors.meta.get("valence") or {}
    sign = np.sign(valence.get(like, 0.0))
    pool = [e for e in vectors.emotions if e != like and (sign == 0 or np.sign(valence.get(e, 0.0)) == sign)]
    pool = pool or [e for e in vectors.emotions if e != like]
    if not pool:
        raise SuiteError(f"ablate_similar: the vectors have no emotion other than {like!r}")
    ref = calibration.ablation(like, layers, mode)
    return min(pool, key=lambda e: abs(calibration.ablation(e, layers, mode) - ref))


def condition_edits(cond: Condition, vectors: EmotionVectors, label: str | None) -> list[Edit]:
    """The edits one row of ``cond`` gets, all labelled with the condition's name; ``label`` resolves
    the emotion "label"."""
    if cond.op in ("baseline", "prompt"):
        return []
    if cond.op == "random_add":
        d = random_direction(vectors.hidden_size, int(cond.seed or 0))
        return [add_edit(vectors, layer, d, float(cond.alpha or 0.0), cond.name) for layer in cond.layers]
    if cond.op == "random_ablate":
        q = random_directions(vectors.hidden_size, cond.k, int(cond.seed or 0))
        return [ablate_edit(vectors, layer, d, cond.mode, cond.name) for layer in cond.layers for d in q]
    emotion = label if cond.emotion == LABEL else cond.emotion
    if emotion is None:
        raise SuiteError(
            f"condition {cond.name!r} uses emotion 'label' but a prompt has no 'emotion' field: "
            "use a labelled JSONL prompt file"
        )
    if cond.op == "add":
        return build_edits(vectors, cond.layers, add={emotion: float(cond.alpha or 0.0)}, label=cond.name)
    if cond.op == "clamp":
        return build_edits(vectors, cond.layers, clamp={emotion: float(cond.alpha or 0.0)}, label=cond.name)
    return ablation_edits(vectors, emotion, cond.layers, cond.mode, cond.name)
