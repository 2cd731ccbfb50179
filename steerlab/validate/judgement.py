"""What the decision rule (:mod:`.rule`) takes and gives: a claim's data, its tested statistics before
the correction across claims, and its judgement."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from numpy.typing import ArrayLike

from steerlab.validate.stats import PValue

Verdict = Literal["pass", "fail", "inconclusive"]
FailReason = Literal["reversed", "not specific", "changed"]


@dataclass(frozen=True, eq=False)
class ClaimData:
    name: str
    main: ArrayLike  # oriented per-prompt differences, condition - compare_to
    controls: Mapping[str, ArrayLike] = field(default_factory=dict)  # condition - control, oriented
    populations: Mapping[str, ArrayLike] = field(default_factory=dict)  # (directions, prompts) condition - control
    threshold: float = 0.0  # the claim is "oriented mean > threshold"
    min_effect: float = 0.0  # effect of interest beyond the threshold, for power and MDE (0: not simulated)
    degenerate: tuple[str, ...] = ()  # degenerate conditions involved: the claim cannot PASS
    margin: float | None = None  # an equivalence claim: PASS when |mean| < margin (TOST), FAIL when outside it


@dataclass(frozen=True)
class ControlResult:
    name: str
    effect: float  # mean of condition - control (oriented)
    ci: tuple[float, float]  # ci_mean of it
    p: PValue  # the condition beats the control (one-sided greater)
    p_worse: PValue  # the control beats the condition (one-sided less)
    directions: int = 1  # a population's directions with data (1 for a fixed control)
    between_sd: float = math.nan  # a population: sd of its directions' mean margins


@dataclass(frozen=True)
class Judgement:
    name: str
    verdict: Verdict
    reasons: tuple[str, ...]  # human-readable, one line each
    fail_reasons: tuple[FailReason, ...]  # empty unless FAIL
    effect: float  # mean of main
    ci: tuple[float, float]  # ci_mean of main
    effect_size: float  # d_z = mean / sd
    n: int  # usable (finite) pairs of main
    p: PValue  # one-sided greater p of main - threshold (raw)
    p_pass: float  # intersection-union p: max(p, p vs every control), raw
    p_pass_adj: float  # p_pass corrected across claims
    p_fail: float  # Bonferroni over the k + 1 wrong-side tests: min(1, (k + 1) * min p), raw
    p_fail_adj: float  # p_fail corrected across claims
    power: float  # P(PASS) of this rule at min_effect, simulated with the observed noise (nan: not simulated)
    mde: float  # the effect this rule PASSes 80 % of the time (simulated)
    controls: tuple[ControlResult, ...]


@dataclass(frozen=True)
class Tested:
    """One claim's raw statistics, before the correction across claims."""

    claim: ClaimData
    n: int
    effect: float
    ci: tuple[float, float]
    effect_size: float
    p: PValue
    p_reversed: PValue
    controls: tuple[ControlResult, ...]
    p_pass: float
    p_fail: float
    power: float
    mde: float


def or_one(p: float) -> float:
    """An untestable component counts as p = 1: it can neither support PASS nor FAIL."""
    return p if math.isfinite(p) else 1.0
