"""The decision rule: PASS, FAIL or INCONCLUSIVE per claim, with error control on both verdicts.

PASS is an intersection-union test (the main effect AND every control must be beaten, so the max of
the p-values is a valid level-alpha p); FAIL is a Bonferroni union over the "wrong side" tests (the
effect reversed, or a control beating the condition). Each family is then corrected across the claims
of a suite (Holm by default), so a FAIL carries the same error control as a PASS.

A fixed control (another emotion, a prompt) is compared per prompt (:func:`.stats.mean_p`); a control
*population* (directions drawn from the activation distribution) is beaten only when the condition
beats a new draw from it (:func:`.stats.population_p`). Power and MDE come from simulating this rule
(:mod:`.power`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from steerlab.core.display import fmt_p
from steerlab.validate.judgement import ClaimData, ControlResult, FailReason, Judgement, Tested, Verdict, or_one
from steerlab.validate.power import equivalence_power, noise_of, rule_power
from steerlab.validate.stats import (
    Correction,
    FloatArray,
    PValue,
    adjust,
    ci_mean,
    finite_values,
    mean_tails,
    population_p,
)


def _subseed(seed: int, name: str, j: int) -> int:
    """A seed per (claim, test) that does not change when other claims are added or reordered."""
    state = np.random.SeedSequence([seed, zlib.crc32(name.encode()), j]).generate_state(1)
    return int(state[0])


def _summary(x: FloatArray, seed: int, n_boot: int) -> tuple[float, tuple[float, float]]:
    mean = float(x.mean()) if x.size else math.nan
    return mean, ci_mean(x, seed=seed, n_boot=n_boot)


def _control(name: str, values: ArrayLike, seed: int, n_boot: int) -> ControlResult:
    x = finite_values(values)
    effect, ci = _summary(x, seed, n_boot)
    return ControlResult(name, effect, ci, *mean_tails(x, seed=seed, n_boot=n_boot))


def _population(name: str, values: ArrayLike) -> ControlResult:
    t = population_p(values)
    return ControlResult(name, t.effect, t.ci, t.p, t.p_worse, t.directions, t.between_sd)


def _equivalence(
    claim: ClaimData, x: FloatArray, alpha: float, seed: int, n_boot: int, m: int, simulate: bool
) -> Tested:
    """Two one-sided tests: PASS when the mean is shown inside (-margin, margin); FAIL when it is shown
    outside (Bonferroni over the two sides)."""
    margin = float(claim.margin or 0.0)
    effect, ci = _summary(x, _subseed(seed, claim.name, 0), n_boot)
    s = _subseed(seed, claim.name, 1)
    above_low, below_low = mean_tails(x, shift=-margin, seed=s, n_boot=n_boot)
    above_high, below_high = mean_tails(x, shift=margin, seed=s, n_boot=n_boot)
    p_pass = max(above_low.value, below_high.value)
    p_fail = min(1.0, 2 * min(above_high.value, below_low.value))
    outside = above_high if above_high.value <= below_low.value else below_low
    pw = equivalence_power(x, margin, m, alpha, _subseed(seed, claim.name, 99)) if simulate else math.nan
    sd = float(x.std(ddof=1))
    d_z = effect / sd if sd > 0 else math.nan
    return Tested(claim, x.size, effect, ci, d_z, above_low, outside, (), p_pass, p_fail, pw, math.nan)


def _test(claim: ClaimData, alpha: float, seed: int, n_boot: int, m: int, simulate: bool) -> Tested:
    x = finite_values(claim.main)
    if claim.margin is not None and x.size >= 2:
        return _equivalence(claim, x, alpha, seed, n_boot, m, simulate)
    n = x.size
    effect, ci = _summary(x, _subseed(seed, claim.name, 0), n_boot)
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    controls = tuple(
        _control(name, values, _subseed(seed, claim.name, 2 + j), n_boot)
        for j, (name, values) in enumerate(claim.controls.items())
    ) + tuple(_population(name, values) for name, values in claim.populations.items())
    if n < 2:
        nan = PValue(math.nan, exact=False, floor=math.nan)
        return Tested(claim, n, effect, ci, math.nan, nan, nan, controls, math.nan, math.nan, math.nan, math.nan)
    s = _subseed(seed, claim.name, 1)
    p, p_reversed = mean_tails(x, seed=s, n_boot=n_boot)
    if claim.threshold != 0:
        p = mean_tails(x, shift=claim.threshold, seed=s, n_boot=n_boot)[0]
    p_pass = max([p.value] + [or_one(c.p.value) for c in controls])
    wrong = [p_reversed.value] + [or_one(c.p_worse.value) for c in controls]
    p_fail = min(1.0, len(wrong) * min(wrong))
    pw = mde = math.nan
    if simulate:
        fixed = [finite_values(v) for v in claim.controls.values()]
        pops = [np.asarray(v, dtype=np.float64) for v in claim.populations.values()]
        pw, mde = rule_power(noise_of(x, fixed, pops), claim.min_effect, m, alpha, _subseed(seed, claim.name, 99))
    d_z = effect / sd if sd > 0 else math.nan
    return Tested(claim, n, effect, ci, d_z, p, p_reversed, controls, p_pass, p_fail, pw, mde)


def _fail_reasons(t: Tested, p_fail_adj: float, alpha: float) -> tuple[tuple[FailReason, ...], list[str]]:
    """Which wrong-side tests carry the FAIL: those significant at the claim's effective level.

    The effective multiplier is (k + 1) within the claim times the cross-claim inflation
    p_fail_adj / p_fail; the smallest wrong-side p is always named.
    """
    k1 = len(t.controls) + 1
    scale = k1 * (p_fail_adj / t.p_fail if t.p_fail > 0 else 1.0)
    smallest = min([t.p_reversed.value] + [or_one(c.p_worse.value) for c in t.controls])

    def hit(p: float) -> bool:
        return math.isfinite(p) and (p * scale < alpha or p == smallest)

    kinds: list[FailReason] = []
    lines: list[str] = []
    if t.claim.margin is not None:
        return ("changed",), [
            f"changed: effect {t.effect:.3g} is outside the margin ±{t.claim.margin:.3g} ({t.p_reversed})",
            f"p_fail_adj = {fmt_p(p_fail_adj)} < {alpha:g}",
        ]
    if hit(t.p_reversed.value):
        kinds.append("reversed")
        lines.append(f"reversed: effect {t.effect:.3g} is below 0 ({t.p_reversed})")
    for c in t.controls:
        if hit(c.p_worse.value):
            if "not specific" not in kinds:
                kinds.append("not specific")
            lines.append(f"not specific: control {c.name} beats the condition (effect {c.effect:.3g}, {c.p_worse})")
    lines.append(f"p_fail_adj = {fmt_p(p_fail_adj)} < {alpha:g}")
    return tuple(kinds), lines


def _not_pass_reasons(t: Tested, p_pass_adj: float, alpha: float) -> list[str]:
    """Why a claim did not reach PASS: the adjusted p and every component that was not shown."""
    lines = [f"p_pass_adj = {fmt_p(p_pass_adj)} ≥ {alpha:g}"]
    if t.claim.margin is not None:
        lines.append(f"effect {t.effect:.3g} not shown inside ±{t.claim.margin:.3g}")
    elif not t.p.value < alpha:
        lines.append(f"effect {t.effect:.3g} not shown above threshold {t.claim.threshold:g} ({t.p})")
    for c in t.controls:
        if not c.p.value < alpha:
            lines.append(f"does not beat control {c.name} ({c.p})")
    if t.power < 0.8:
        lines.append(f"low power {t.power:.2f} of this rule at n = {t.n} (MDE {t.mde:.3g})")
    return lines


def _pass_reasons(t: Tested, p_pass_adj: float, alpha: float) -> list[str]:
    if t.claim.margin is not None:
        inside = f"effect {t.effect:.3g} shown inside ±{t.claim.margin:.3g} (two one-sided tests, n = {t.n})"
        return [inside, f"p_pass_adj = {fmt_p(p_pass_adj)} < {alpha:g}"]
    main = f"effect {t.effect:.3g} > threshold {t.claim.threshold:g} ({t.p}, d_z = {t.effect_size:.2f}, n = {t.n})"
    lines = [main]
    lines += [f"beats control {c.name} ({c.p})" for c in t.controls]
    lines.append(f"p_pass_adj = {fmt_p(p_pass_adj)} < {alpha:g}")
    return lines


def _decide(t: Tested, p_pass_adj: float, p_fail_adj: float, alpha: float) -> Judgement:
    """FAIL takes precedence over PASS (possible only with a negative threshold); a claim that involves
    a degenerate condition can be neither."""
    verdict: Verdict = "inconclusive"
    kinds: tuple[FailReason, ...] = ()
    if t.n < 2:
        lines = [f"fewer than 2 usable pairs (n = {t.n})"]
    elif p_fail_adj < alpha:
        kinds, lines = _fail_reasons(t, p_fail_adj, alpha)
        if t.claim.degenerate:
            kinds = ()
            lines.insert(0, "would fail, but a degenerate condition is involved")
        else:
            verdict = "fail"
    elif p_pass_adj < alpha:
        lines = _pass_reasons(t, p_pass_adj, alpha)
        if t.claim.degenerate:
            lines.insert(0, "would pass, but a degenerate condition is involved")
        else:
            verdict = "pass"
    else:
        lines = _not_pass_reasons(t, p_pass_adj, alpha)
    if t.claim.degenerate:
        lines.append("degenerate: " + ", ".join(t.claim.degenerate))
    return Judgement(
        name=t.claim.name,
        verdict=verdict,
        reasons=tuple(lines),
        fail_reasons=kinds,
        effect=t.effect,
        ci=t.ci,
        effect_size=t.effect_size,
        n=t.n,
        p=t.p,
        p_pass=t.p_pass,
        p_pass_adj=p_pass_adj,
        p_fail=t.p_fail,
        p_fail_adj=p_fail_adj,
        power=t.power,
        mde=t.mde,
        controls=t.controls,
    )


def judge(
    claims: Sequence[ClaimData],
    correction: Correction = "holm",
    alpha: float = 0.05,
    seed: int = 0,
    *,
    n_boot: int = 4000,
    simulate_power: bool = True,
) -> list[Judgement]:
    """PASS / FAIL / INCONCLUSIVE per claim, correcting the PASS and FAIL families across claims.

    PASS iff p_pass_adj < alpha and nothing degenerate is involved; FAIL iff p_fail_adj < alpha
    (reversed and / or not specific) and nothing degenerate is involved; everything else is
    inconclusive, with the reasons.
    Controls must already exclude degenerate ones.
    """
    tested = [_test(c, alpha, seed, n_boot, len(claims), simulate_power) for c in claims]
    pass_adj = adjust([t.p_pass for t in tested], correction)
    fail_adj = adjust([t.p_fail for t in tested], correction)
    return [_decide(t, float(pa), float(fa), alpha) for t, pa, fa in zip(tested, pass_adj, fail_adj, strict=True)]
