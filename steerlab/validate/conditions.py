"""Suite conditions: expansion into concrete conditions, displacement calibration, and per-row edits.

Controls are populations of directions *on the data manifold*, matched on what they do to
activations, not on alpha. Each ``random_add`` / ``random_ablate`` direction is the normalised
difference of two of the suite's prompts' mean activations at the edited layer (how emotion directions
are made, from a random pair of texts instead of two classes), so it points where the model's own
activations vary, and adding it keeps text as fluent as adding an emotion does; an isotropic random
direction of the same norm does not. An addition moves every edited token by exactly
alpha * alpha_unit, so an addition of the same alpha is matched by construction. An ablation moves a
token by |projection - its mean|: a ``random_ablate`` population with ``match: <ablation>`` keeps,
from five times as many candidate pairs, the directions whose calibrated displacement is closest to
that ablation's; ``ablate_similar`` picks the same-valence emotion whose calibrated displacement is
closest. The displacement each condition actually causes while generating is recorded and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from steerlab.core.checks import did_you_mean
from steerlab.core.errors import SuiteError
from steerlab.core.names import Positions
from steerlab.core.vectors import EmotionVectors
from steerlab.steer.edits import (
    Ablation,
    Edit,
    ablate_edit,
    ablation_edits,
    add_edit,
    build_edits,
)
from steerlab.validate.calibration import Calibration
from steerlab.validate.prompts import Prompt
from steerlab.validate.spec import LABEL, ConditionSpec, Suite

CANDIDATES = 5  # a matched random_ablate population is chosen from this many times its size


@dataclass(frozen=True)
class Condition:
    """One concrete condition after expansion."""

    name: str
    group: str  # the spec's name
    op: str
    emotion: str | None = None  # the emotion edited ("label" = each prompt's own); None for controls
    alpha: float | None = None  # add / random_add strength; clamp value
    pair: tuple[int, int] | None = None  # random_*: the two prompts whose activation difference is the direction
    instruction: str = ""
    layers: tuple[int, ...] = ()
    mode: Ablation = "mean"  # ablations: how the projection is removed
    positions: Positions = "all"  # where the edits apply
    prompts: tuple[int, ...] | None = None  # the prompts this condition runs on (None: every prompt)
    samples: int | None = None  # replies per prompt (None: the suite's generation.samples)
    when: str = ""  # a gate: the edit applies only to prompts whose user turn reads it (gate.py)
    expected_displacement: float = float("nan")  # calibrated mean displacement per token (ablations)
    targets: dict[int, float] = field(default_factory=dict, compare=False)  # mean-ablation: projection set, per layer
    direction: dict[int, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)  # random_*: per layer

    @property
    def population(self) -> bool:
        """One direction of a control population (judged against the population, not alone)."""
        return self.op in ("random_add", "random_ablate")


def expand_conditions(
    suite: Suite,
    vectors: EmotionVectors,
    prompts: Sequence[Prompt],
    calibration: Calibration | None = None,
) -> list[Condition]:
    """Concrete conditions: one per emotion x alpha for add / clamp, one per seed (x alpha) for random
    controls; ablation controls are matched on calibrated displacement (see the module doc)."""
    out: list[Condition] = []
    for i, spec in enumerate(suite.conditions):
        layers = vectors.layers_for_steering(spec.layers)
        for layer in layers:
            vectors.check_layer(layer, f"{suite.path}: field 'conditions[{i}].layers' has layer")
        emotions = _emotions(spec, vectors, suite.path, i)
        base = Condition(
            spec.name,
            spec.name,
            spec.op,
            instruction=spec.instruction,
            layers=tuple(layers),
            mode=spec.mode,
            positions=spec.positions,
            samples=spec.samples,
            when=spec.when,
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
            like = similar_emotion(vectors, spec.like, layers, spec.mode, cal, spec.positions == "user")
            items = [replace(base, emotion=like)]
        else:
            items = _assign(_population(base, spec, _need(calibration, spec), out, prompts), spec, len(prompts))
        out += items
    for i, cond in enumerate(out):
        if cond.op in ("ablate", "ablate_similar") and calibration is not None and cond.emotion is not None:
            out[i] = replace(cond, expected_displacement=_ablation_target(cond, prompts, calibration))
    if calibration is not None and calibration.reference is not None:
        out = [_with_targets(c, vectors, calibration.reference) for c in out]
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SuiteError(f"{suite.path}: two conditions expand to the name {dup!r}: rename one")
    return out


def _with_targets(cond: Condition, vectors: EmotionVectors, reference: Calibration) -> Condition:
    """A mean-ablation's targets from held-out messages: the mean projection of the kind of tokens it
    edits (the user's message, or all message text), instead of the extraction corpus's class means.
    ("label" ablations and the directional mode keep the corpus mean.)"""
    if cond.mode != "mean" or cond.op not in ("ablate", "ablate_similar", "random_ablate") or cond.emotion == LABEL:
        return cond
    user = cond.positions == "user"
    dirs = cond.direction or {la: vectors.direction(str(cond.emotion), la) for la in cond.layers}
    return replace(cond, targets={la: reference.mean_projection(d, la, user) for la, d in dirs.items()})


def needs_calibration(suite: Suite) -> bool:
    populations = any(s.op in ("ablate_similar", "random_add", "random_ablate") for s in suite.conditions)
    return populations or suite.generation.ablation_mean is not None


def _need(calibration: Calibration | None, spec: ConditionSpec) -> Calibration:
    if calibration is None:
        raise SuiteError(f"condition {spec.name!r} needs a displacement calibration (pass the model)")
    return calibration


def _ablation_target(cond: Condition, prompts: Sequence[Prompt], cal: Calibration) -> float:
    """Calibrated displacement of an ablation; "label" averages over the prompts' own emotions."""
    emotions = [p.label for p in prompts] if cond.emotion == LABEL else [cond.emotion]
    values = [cal.ablation(e, cond.layers, cond.mode, cond.positions == "user") for e in emotions if e is not None]
    return float(np.mean(values)) if values else float("nan")


def _population(
    base: Condition, spec: ConditionSpec, cal: Calibration, done: Sequence[Condition], prompts: Sequence[Prompt]
) -> list[Condition]:
    """A control population: one condition per direction (x alpha for additions), see the module doc."""
    if len(cal.texts) < 3:
        raise SuiteError(f"condition {spec.name!r}: a control population needs at least 3 prompts")
    width = len(str(spec.directions - 1))
    user = base.positions == "user"
    if spec.op == "random_add":
        pairs = cal.pairs(spec.directions, spec.seed)
        dirs = [{la: cal.direction(p, la, user) for la in base.layers} for p in pairs]
        return [
            replace(
                base,
                name=_join(f"{spec.name}:d{j:0{width}d}", f"{a:g}", len(spec.alphas)),
                pair=p,
                alpha=a,
                direction=d,
            )
            for a in spec.alphas
            for j, (p, d) in enumerate(zip(pairs, dirs, strict=True))
        ]
    pairs = cal.pairs(spec.directions * (CANDIDATES if spec.match else 1), spec.seed)
    dirs = [{la: cal.direction(p, la, user) for la in base.layers} for p in pairs]
    moved = [cal.displacement(d, spec.mode, user) for d in dirs]
    order = list(range(len(pairs)))
    if spec.match:
        matched = [c for c in done if (c.group == spec.match or c.name == spec.match) and c.emotion is not None]
        if not matched or any(c.op not in ("ablate", "ablate_similar") for c in matched):
            raise SuiteError(f"condition {spec.name!r}: 'match: {spec.match}' must name an ablation listed before it")
        target = float(np.mean([_ablation_target(c, prompts, cal) for c in matched]))
        order = sorted(order, key=lambda i: abs(moved[i] - target))[: spec.directions]
    return [
        replace(
            base, name=f"{spec.name}:d{j:0{width}d}", pair=pairs[i], direction=dirs[i], expected_displacement=moved[i]
        )
        for j, i in enumerate(order)
    ]


def _assign(items: list[Condition], spec: ConditionSpec, n_prompts: int) -> list[Condition]:
    """With ``per_prompt: k``, prompt i gets k of the population's directions, in rotation (i k, i k + 1, ...
    modulo the population's size), so every direction runs on about n k / directions prompts; each
    alpha of an addition population is rotated alike."""
    if spec.per_prompt is None:
        return items
    size = len(items) // max(len(spec.alphas), 1) if spec.op == "random_add" else len(items)
    k = spec.per_prompt
    given = [{(i * k + r) % size for r in range(k)} for i in range(n_prompts)]  # each prompt's directions
    return [replace(c, prompts=tuple(i for i in range(n_prompts) if j % size in given[i])) for j, c in enumerate(items)]


def _emotions(spec: ConditionSpec, vectors: EmotionVectors, source: str, i: int) -> list[str]:
    if spec.emotions == ("all",):
        return list(vectors.emotions)
    out = []
    for e in spec.emotions:
        if e != LABEL and e not in vectors.emotions:
            raise SuiteError(
                f"{source}: field 'conditions[{i}].emotions' has unknown emotion {e!r}"
                f"{did_you_mean(e, vectors.emotions)}: the vectors have {', '.join(vectors.emotions)}"
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
    vectors: EmotionVectors, like: str, layers: Sequence[int], mode: Ablation, calibration: Calibration, user: bool
) -> str:
    """The emotion of the same valence sign as ``like`` whose ablation displaces the prompts' tokens
    most like ``like``'s does (all other emotions when the file carries no valence)."""
    valence = vectors.meta.get("valence") or {}
    sign = np.sign(valence.get(like, 0.0))
    pool = [e for e in vectors.emotions if e != like and (sign == 0 or np.sign(valence.get(e, 0.0)) == sign)]
    pool = pool or [e for e in vectors.emotions if e != like]
    if not pool:
        raise SuiteError(f"ablate_similar: the vectors have no emotion other than {like!r}")
    ref = calibration.ablation(like, layers, mode, user)
    return min(pool, key=lambda e: abs(calibration.ablation(e, layers, mode, user) - ref))


def condition_edits(cond: Condition, vectors: EmotionVectors, label: str | None) -> list[Edit]:
    """The edits one row of ``cond`` gets, all labelled with the condition's name and applied at its
    positions; ``label`` resolves the emotion "label"."""
    edits = [replace(e, positions=cond.positions) for e in _edits(cond, vectors, label)]
    return [replace(e, value=cond.targets[e.layer]) if e.kind == "ablate" and cond.targets else e for e in edits]


def _edits(cond: Condition, vectors: EmotionVectors, label: str | None) -> list[Edit]:
    if cond.op in ("baseline", "prompt"):
        return []
    if cond.op == "random_add":
        return [add_edit(vectors, la, d, float(cond.alpha or 0.0), cond.name) for la, d in cond.direction.items()]
    if cond.op == "random_ablate":
        return [ablate_edit(vectors, la, d, cond.mode, cond.name) for la, d in cond.direction.items()]
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
