"""The claims of a suite file, checked against its conditions and metrics (see :mod:`.schema`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from steerlab.validate.fields import Fields
from steerlab.validate.spec import NONE, ClaimSpec, ConditionSpec, Direction, MetricSpec

CLAIM_KEYS = (
    *("name", "condition", "compare_to", "metric", "direction", "controls", "threshold", "alpha", "premise"),
    *("min_effect", "prompts", "margin"),
)


def parse_claims(
    top: Fields, conditions: Sequence[ConditionSpec], metrics: Sequence[MetricSpec]
) -> tuple[ClaimSpec, ...]:
    out: list[ClaimSpec] = []
    for i, item in enumerate(top.get("claims", list, [])):
        r = Fields(item, f"claims[{i}]", top.source, CLAIM_KEYS)
        claim = ClaimSpec(
            name=r.get("name", str),
            condition=r.get("condition", str),
            metric=r.get("metric", str),
            direction=r.choice("direction", get_args(Direction)),  # type: ignore[arg-type]
            compare_to=r.get("compare_to", str, "baseline"),
            controls=r.strings("controls", ()),
            threshold=r.number("threshold", 0.0, low=0),
            alpha=r.number("alpha", None),
            premise=r.get("premise", str, ""),
            min_effect=r.number("min_effect", None, low=0),
            prompts=r.get("prompts", str, ""),
            margin=r.number("margin", None, low=0),
        )
        _check_claim(r, claim, [c.name for c in conditions], [m.name for m in metrics], out)
        out.append(claim)
    return tuple(out)


def _check_claim(
    r: Fields, claim: ClaimSpec, conditions: Sequence[str], metrics: Sequence[str], earlier: Sequence[ClaimSpec]
) -> None:
    """``claim`` names defined conditions and metrics, and a premise listed before it that reads other conditions."""
    if claim.margin is not None and claim.direction != "unchanged":
        raise r.fail("margin", "is set but direction is not 'unchanged': a margin is for equivalence claims")
    checks = [("condition", claim.condition), *[("controls", c) for c in claim.controls]]
    if claim.compare_to != NONE:
        checks.append(("compare_to", claim.compare_to))
    for key, value in checks:
        if value not in conditions:
            raise r.fail(key, f"names unknown condition {value!r}: defined are {', '.join(conditions)}")
    if claim.metric not in metrics:
        raise r.fail("metric", f"names unknown metric {claim.metric!r}: defined are {', '.join(metrics)}")
    if claim.premise and claim.premise not in [c.name for c in earlier]:
        raise r.fail(
            "premise",
            f"names {claim.premise!r}, which is not a claim listed before this one: "
            "list the premise first and use its name",
        )
    if claim.premise:
        # A premise read from the same replies as the claim it gates makes the gated claim pass more
        # often than its level (both share the baseline's noise): it must use conditions of its own.
        premise = next(c for c in earlier if c.name == claim.premise)
        shared = {premise.condition, premise.compare_to} & {claim.condition, claim.compare_to, *claim.controls}
        if shared - {NONE}:
            raise r.fail(
                "premise",
                f"names {claim.premise!r}, which reads condition {sorted(shared - {NONE})[0]!r} that this claim "
                "also reads: test the premise on a condition of its own (e.g. a second baseline)",
            )
    if claim.name in [c.name for c in earlier]:
        raise r.fail("name", f"{claim.name!r} is used twice: claim names must be unique")
