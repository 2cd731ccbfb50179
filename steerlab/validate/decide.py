"""From readings to verdicts: metrics per prompt, claims as oriented paired differences, the corrected
decision of :mod:`.rule`, premise gates, secondary readers and random-weight refusal.

A claim whose premise did not PASS is NOT-TESTABLE (with the reason), never PASS or FAIL. Degenerate
controls are excluded from comparisons and listed. A claim judged by secondary readers reports their
verdicts, and says so when they disagree with the primary reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from steerlab.core.errors import SuiteError
from steerlab.validate.conditions import Condition
from steerlab.validate.judgement import ClaimData, Judgement
from steerlab.validate.prompts import Prompt
from steerlab.validate.rule import judge
from steerlab.validate.spec import LABEL, NONE, TARGET, ClaimSpec, MetricSpec, Suite

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Readings:
    """One reader's scores of every reply and prompt."""

    reader: str
    layer: int | None  # None for a reader without layers
    replies: np.ndarray  # (conditions, prompts, samples, emotions); nan for empty and incoherent replies
    prompts: np.ndarray  # (prompts, emotions)
    incoherent: np.ndarray  # (conditions, prompts, samples) bool: not read (readers.incoherent)


def metric_values(
    readings: Readings,
    metric: MetricSpec,
    cond: int,
    target: str | None,
    prompts: Sequence[Prompt],
    emotions: Sequence[str],
) -> np.ndarray:
    """Per-prompt metric of one condition (mean over samples); ``target`` resolves "target"."""
    idx = []
    for p in prompts:
        name: str | None = metric.emotion
        if name == TARGET:
            name = target if target != LABEL else p.label
        if name == LABEL:
            name = p.label
        if name is None or name not in emotions:
            raise SuiteError(
                f"metric {metric.name!r}: emotion {metric.emotion!r} resolves to {name!r}, which is not "
                f"an emotion of the vectors (a 'target' metric needs a condition that edits one "
                f"emotion; 'label' needs labelled prompts)"
            )
        idx.append(emotions.index(name))
    e = np.array(idx)
    rows = np.arange(len(prompts))
    r = readings.replies[cond]  # (prompts, samples, emotions)
    own = r[rows, :, e]  # (prompts, samples)
    if metric.kind == "shift":
        own = own - readings.prompts[rows, e][:, None]
    elif metric.kind == "specificity":
        others = np.stack([r[:, :, emotions.index(a)] for a in metric.against], axis=-1)  # (P, S, k)
        mask = np.array([[a == emotions[i] for a in metric.against] for i in e])  # skip the emotion itself
        others = np.where(mask[:, None, :], np.nan, others)
        with np.errstate(all="ignore"):
            own = own - np.nanmean(others, axis=-1)
    with np.errstate(all="ignore"):
        return np.nanmean(own, axis=1) if np.isfinite(own).any() else np.full(len(rows), np.nan)


def members(conditions: Sequence[Condition], name: str) -> list[int]:
    return [i for i, c in enumerate(conditions) if c.name == name or c.group == name]


@dataclass(frozen=True)
class PlannedClaim:
    spec: ClaimSpec
    name: str
    cond: int
    ref: int | None  # None: one-sample
    controls: dict[str, int]  # fixed controls
    populations: dict[str, list[int]]  # control populations: family -> its non-degenerate directions
    excluded: tuple[str, ...]  # degenerate controls left out
    families: tuple[tuple[str, int, int], ...]  # per control family: (name, directions, non-degenerate)


def plan_claims(suite: Suite, conditions: Sequence[Condition], degenerate: set[str]) -> list[PlannedClaim]:
    """Which condition each claim tests, against what, with which (non-degenerate) controls."""
    out = []
    for claim in suite.claims:
        targets = [
            i for i in members(conditions, claim.condition) if claim.alpha is None or conditions[i].alpha == claim.alpha
        ]
        if not targets:
            raise SuiteError(
                f"{suite.path}: claim {claim.name!r} selects no condition (alpha {claim.alpha}): "
                f"check 'alpha' against the alphas of {claim.condition!r}"
            )
        for ci in targets:
            cond = conditions[ci]
            ref = None
            if claim.compare_to != NONE:
                refs = [i for i in members(conditions, claim.compare_to) if i != ci]
                if len(refs) != 1:
                    refs = [i for i in refs if conditions[i].alpha in (None, cond.alpha)][:1]
                ref = refs[0]
            controls: dict[str, int] = {}
            populations: dict[str, list[int]] = {}
            excluded = []
            families = []
            for control in claim.controls:
                group = [i for i in members(conditions, control) if i != ci]
                if cond.alpha is not None and any(conditions[i].alpha is not None for i in group):
                    group = [i for i in group if conditions[i].alpha == cond.alpha]
                excluded += [conditions[i].name for i in group if conditions[i].name in degenerate]
                fine = [i for i in group if conditions[i].name not in degenerate]
                if any(conditions[i].population for i in group):
                    populations[control] = fine
                else:
                    controls |= {conditions[i].name: i for i in fine}
                families.append((control, len(group), len(fine)))
            name = claim.name if len(targets) == 1 else f"{claim.name}[{cond.name}]"
            out.append(PlannedClaim(claim, name, ci, ref, controls, populations, tuple(excluded), tuple(families)))
    return out


def _outside(spec: ClaimSpec, prompts: Sequence[Prompt]) -> np.ndarray:
    """(prompts,) bool: the prompts a claim does not read (its ``prompts`` label selects the others)."""
    if not spec.prompts:
        return np.zeros(len(prompts), dtype=bool)
    outside = np.array([p.label != spec.prompts for p in prompts])
    if outside.all():
        labels = sorted({p.label for p in prompts if p.label})
        raise SuiteError(
            f"claim {spec.name!r}: no prompt has the label {spec.prompts!r}; the prompts' labels are "
            f"{', '.join(labels) or 'none (use a labelled JSONL prompt file)'}"
        )
    return outside


def min_effect(suite: Suite, spec: ClaimSpec, main: np.ndarray) -> float:
    """The minimum effect of interest in metric units: the claim's, else the suite's, else
    ``min_effect_dz`` standard deviations of the paired differences."""
    if spec.min_effect is not None:
        return spec.min_effect
    if suite.statistics.min_effect > 0:
        return suite.statistics.min_effect
    return _dz_units(suite, main)


def _dz_units(suite: Suite, values: np.ndarray | None) -> float:
    """``min_effect_dz`` standard deviations of the finite ``values`` (nan with fewer than two)."""
    finite = np.array([]) if values is None else values[np.isfinite(values)]
    return suite.statistics.min_effect_dz * float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def equivalence_margin(suite: Suite, spec: ClaimSpec, reference: np.ndarray | None) -> float:
    """An equivalence claim's margin in metric units: the claim's own, else ``min_effect_dz`` times the
    compare-to condition's spread between the claim's prompts. Never the spread of the paired changes
    under test: a condition identical to its reference would get a margin of 0 and could never pass."""
    return spec.margin if spec.margin is not None else _dz_units(suite, reference)


def judge_claims(
    suite: Suite,
    conditions: Sequence[Condition],
    prompts: Sequence[Prompt],
    emotions: Sequence[str],
    readings: Readings,
    degenerate: set[str],
    seed: int,
) -> tuple[list[tuple[PlannedClaim, Judgement]], list[ClaimData]]:
    metrics = {m.name: m for m in suite.metrics}
    plans = plan_claims(suite, conditions, degenerate)
    cache: dict[tuple[str, str | None], list[np.ndarray]] = {}
    data = []
    for plan in plans:
        metric, target = metrics[plan.spec.metric], conditions[plan.cond].emotion
        sign = -1.0 if plan.spec.direction == "decrease" else 1.0
        key = (metric.name, target)
        if key not in cache:  # claims on one metric and emotion share every condition's values
            cache[key] = [metric_values(readings, metric, i, target, prompts, emotions) for i in range(len(conditions))]
        values = cache[key]
        outside = _outside(plan.spec, prompts)
        mine = np.where(outside, np.nan, values[plan.cond])  # prompts outside the claim's subset drop out
        main = sign * (mine - values[plan.ref]) if plan.ref is not None else sign * mine
        controls = {name: sign * (mine - values[i]) for name, i in plan.controls.items()}
        # a family whose every direction is degenerate is left out: "uncontrolled" below
        populations = {
            name: np.stack([sign * (mine - values[i]) for i in group])
            for name, group in plan.populations.items()
            if group
        }
        least = min_effect(suite, plan.spec, main)
        reference = None if plan.ref is None else np.where(outside, np.nan, values[plan.ref])
        margin = equivalence_margin(suite, plan.spec, reference) if plan.spec.direction == "unchanged" else None
        involved = [conditions[i].name for i in (plan.cond, plan.ref) if i is not None]
        data.append(
            ClaimData(
                plan.name,
                main,
                controls,
                populations,
                plan.spec.threshold,
                least,
                tuple(n for n in involved if n in degenerate),
                margin,
            )
        )
    verdicts = judge(data, suite.statistics.correction, suite.statistics.alpha, seed)
    return list(zip(plans, verdicts, strict=True)), data
