"""Claims as JSON-ready records: the rule's verdict (:mod:`.decide`), gated by the claim's premise, checked
against the secondary readers and for "uncontrolled" passes, with every statistic oriented so that a
positive effect means "as claimed"."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from steerlab.validate.conditions import Condition
from steerlab.validate.decide import PlannedClaim, Readings, judge_claims
from steerlab.validate.judgement import ClaimData, ControlResult, Judgement
from steerlab.validate.prompts import Prompt
from steerlab.validate.spec import NONE, Suite


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
        second = {name: rows[k][1].verdict for name, rows in others.items()}
        verdict, reasons, premise = _final_verdict(plan, j, by_spec, second)
        if not claims_allowed:
            verdict, reasons = "inconclusive", ["random weights: no claim is made", *reasons]
        elif validation and not (validation.get(primary.reader) or {}).get("model_replies"):
            reasons.append(f"reader {primary.reader} is not validated on this model's own replies")
        record = _claim_json(plan, j, conditions, data_by_name[plan.name])
        out.append(
            record
            | {
                "verdict": verdict,
                "reasons": reasons,
                "correction": suite.statistics.correction,
                "premise": premise,
                "reader": {"name": primary.reader, "layer": primary.layer, **validation.get(primary.reader, {})},
                "secondary": second,
            }
        )
    return out


def _final_verdict(
    plan: PlannedClaim, j: Judgement, by_spec: Mapping[str, list[str]], second: Mapping[str, str]
) -> tuple[str, list[str], dict[str, Any] | None]:
    """The rule's verdict, after the premise gate, the readers' agreement and the "uncontrolled" check."""
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
    if verdict in ("pass", "fail") and any(v != j.verdict for v in second.values()):
        reasons.append("readers disagree: " + ", ".join(f"{n} says {v}" for n, v in second.items()))
    if verdict == "pass" and plan.families and not (plan.controls or any(plan.populations.values())):
        verdict = "inconclusive"
        reasons = [
            f"uncontrolled: every control ({', '.join(plan.excluded)}) is degenerate, so the effect stands "
            "against the baseline only",
            *reasons,
        ]
    return verdict, reasons, premise


def _claim_json(plan: PlannedClaim, j: Judgement, conditions: Sequence[Condition], data: ClaimData) -> dict[str, Any]:
    """A claim's statistics, oriented so that a positive effect means "as claimed"."""
    return {
        "name": plan.name,
        "claim": plan.spec.name,
        "condition": conditions[plan.cond].name,
        "compare_to": conditions[plan.ref].name if plan.ref is not None else NONE,
        "metric": plan.spec.metric,
        "direction": plan.spec.direction,
        "threshold": plan.spec.threshold,
        "prompts": plan.spec.prompts or "all",
        "margin": data.margin,
        "fail_reasons": list(j.fail_reasons),
        "effect": j.effect,  # the judgement's statistics are oriented already (decide.claim_data)
        "ci": list(j.ci),
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
        "min_effect": data.min_effect,
        "power": j.power,
        "mde": j.mde,
        "controls": [  # one entry per control family, with the tests that compared against it
            {
                "family": f,
                "directions": total,
                "non_degenerate": fine,
                "tests": [_control_json(c) for c in j.controls if _in_family(c.name, f, conditions)],
            }
            for f, total, fine in plan.families
        ],
        "excluded_controls": list(plan.excluded),
    }


def _in_family(name: str, family: str, conditions: Sequence[Condition]) -> bool:
    """A control test belongs to ``family``: the population itself, or one of its fixed members."""
    return name == family or any(c.name == name and c.group == family for c in conditions)


def _control_json(c: ControlResult) -> dict[str, Any]:
    return {
        "name": c.name,
        "effect": c.effect,  # condition - control, oriented like the claim
        "ci": list(c.ci),
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
