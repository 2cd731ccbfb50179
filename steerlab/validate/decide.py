"""From readings to verdicts: metrics per prompt, claims as oriented paired differences, the corrected
decision of :mod:`.rule`, premise gates, secondary readers and random-weight refusal.

A claim whose premise did not PASS is NOT-TESTABLE (with the reason), never PASS or FAIL. Degenerate
controls are excluded from comparisons and listed. A claim judged by secondary readers reports their
verdicts, and says so when they disagree with the primary reader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SuiteError
from .conditions import Condition
from .prompts import Prompt
from .rule import ClaimData, ControlResult, Judgement, judge
from .spec import LABEL, NONE, TARGET, ClaimSpec, MetricSpec, Suite

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
class _Planned:
    spec: ClaimSpec
    name: str
    cond: int
    ref: int | None  # None: one-sample
    controls: dict[str, int]  # fixed controls
    populations: dict[str, list[int]]  # control populations: family -> its non-degenerate directions
    excluded: tuple[str, ...]  # degenerate controls left out
    families: tuple[tuple[str, int, int], ...]  # per control family: (name, directions, non-degenerate)


def plan_claims(suite: Suite, conditions: Sequence[Condition], degenerate: set[str]) -> list[_Planned]:
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
            out.append(_Planned(claim, name, ci, ref, controls, populations, tuple(excluded), tuple(families)))
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
    finite = main[np.isfinite(main)]
    return suite.statistics.min_effect_dz * float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def judge_claims(
    suite: Suite,
    conditions: Sequence[Condition],
    prompts: Sequence[Prompt],
    emotions: Sequence[str],
    readings: Readings,
    degenerate: set[str],
    seed: int,
) -> tuple[list[tuple[_Planned, Judgement]], list[ClaimData]]:
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
        margin = (
            (plan.spec.margin if plan.spec.margin is not None else least)
            if plan.spec.direction == "unchanged"
            else None
        )
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


def evaluate_claims(
    suite: Suite,
    conditions: Sequence[Condition],
    prompts: Sequence[Prompt],
    emotions: Sequence[str],
    primary: Readings,
    secondary: Sequence[Readings],
    degenerate: set[str],
    validation: Mapping[str, Any],
    claims_allowed: bool,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every claim's verdict and statistics, as plain JSON-ready dicts (see the module doc)."""
    judged, data = judge_claims(suite, conditions, prompts, emotions, primary, degenerate, seed)
    data_by_name = {d.name: d for d in data}
    others = {r.reader: judge_claims(suite, conditions, prompts, emotions, r, degenerate, seed)[0] for r in secondary}
    by_spec: dict[str, list[str]] = {}
    for plan, j in judged:
        by_spec.setdefault(plan.spec.name, []).append(j.verdict)
    out = []
    for k, (plan, j) in enumerate(judged):
        sign = -1.0 if plan.spec.direction == "decrease" else 1.0
        verdict: str = j.verdict
        reasons = list(j.reasons)
        premise = None
        if plan.spec.premise:
            held = by_spec.get(plan.spec.premise, [])
            premise = {"claim": plan.spec.premise, "verdicts": held}
            if not held or any(v != "pass" for v in held):
                verdict = "not-testable"
                why = (
                    f"premise {plan.spec.premise!r} did not pass ({', '.join(held) or 'not run'}): "
                    "there is no established effect for this claim to change"
                )
                reasons = [why, *reasons]
        second = {name: rows[k][1].verdict for name, rows in others.items()}
        if verdict in ("pass", "fail") and any(v != j.verdict for v in second.values()):
            reasons.append("readers disagree: " + ", ".join(f"{n} says {v}" for n, v in second.items()))
        if verdict == "pass" and plan.families and not (plan.controls or any(plan.populations.values())):
            verdict = "inconclusive"
            reasons = [
                f"uncontrolled: every control ({', '.join(plan.excluded)}) is degenerate, so the effect stands "
                "against the baseline only",
                *reasons,
            ]
        if not claims_allowed:
            verdict, reasons = "inconclusive", ["random weights: no claim is made", *reasons]
        elif validation and not (validation.get(primary.reader) or {}).get("model_replies"):
            reasons.append(f"reader {primary.reader} is not validated on this model's own replies")
        cond = conditions[plan.cond]
        lo, hi = sorted((sign * j.ci[0], sign * j.ci[1]))
        out.append(
            {
                "name": plan.name,
                "claim": plan.spec.name,
                "condition": cond.name,
                "compare_to": conditions[plan.ref].name if plan.ref is not None else NONE,
                "metric": plan.spec.metric,
                "direction": plan.spec.direction,
                "threshold": plan.spec.threshold,
                "prompts": plan.spec.prompts or "all",
                "margin": data_by_name[plan.name].margin,
                "verdict": verdict,
                "reasons": reasons,
                "fail_reasons": list(j.fail_reasons),
                "effect": sign * j.effect,
                "ci": [lo, hi],
                "effect_size": j.effect_size,
                "n": j.n,
                # the p that decided: the FAIL family's for a FAIL, else the PASS family's
                "p_family": "fail" if j.verdict == "fail" else "pass",
                "p": j.p_fail if j.verdict == "fail" else j.p_pass,
                "p_adj": j.p_fail_adj if j.verdict == "fail" else j.p_pass_adj,
                "p_pass": j.p_pass,
                "p_pass_adj": j.p_pass_adj,
                "p_effect": str(j.p),
                "p_fail": j.p_fail,
                "p_fail_adj": j.p_fail_adj,
                "correction": suite.statistics.correction,
                "min_effect": data_by_name[plan.name].min_effect,
                "power": j.power,
                "mde": j.mde,
                "premise": premise,
                "reader": {"name": primary.reader, "layer": primary.layer, **validation.get(primary.reader, {})},
                "secondary": second,
                "controls": [  # one entry per control family, with the tests that compared against it
                    {
                        "family": f,
                        "directions": total,
                        "non_degenerate": fine,
                        "tests": [_control_json(c, sign) for c in j.controls if _in_family(c.name, f, conditions)],
                    }
                    for f, total, fine in plan.families
                ],
                "excluded_controls": list(plan.excluded),
            }
        )
    return out


def _in_family(name: str, family: str, conditions: Sequence[Condition]) -> bool:
    """A control test belongs to ``family``: the population itself, or one of its fixed members."""
    return name == family or any(c.name == name and c.group == family for c in conditions)


def _control_json(c: ControlResult, sign: float) -> dict[str, Any]:
    return {
        "name": c.name,
        "effect": sign * c.effect,
        "ci": sorted([sign * c.ci[0], sign * c.ci[1]]),
        "p_beats": str(c.p),
        "p_worse": str(c.p_worse),
        "directions": c.directions,
        "between_sd": c.between_sd,
    }


def low_power(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    """Claims whose power at their minimum effect of interest is below 0.8."""
    return [
        c["name"] for c in claims if isinstance(c["power"], float) and math.isfinite(c["power"]) and c["power"] < 0.8
    ]
