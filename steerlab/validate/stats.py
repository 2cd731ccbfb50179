"""Statistics behind causal-validation verdicts: p-values, CIs, multiplicity, power, decisions.

Units are prompts (n = 8 … 200) and every comparison is paired per prompt, on differences already
ORIENTED so that positive means "as claimed" (for a control: the condition beats the control).

* p-values come from the paired sign-flip permutation test: it assumes only that a null
  difference is symmetric about 0, is exact for small n (all 2^n sign vectors) and Monte Carlo
  beyond.
* CIs come from the studentised bootstrap (bootstrap-t): the percentile bootstrap under-covers at
  n = 8, bootstrap-t stays close to nominal even for skewed differences.
* PASS is an intersection-union test (the main effect AND every control must be beaten, so the max
  of the p-values is a valid level-alpha p); FAIL is a Bonferroni union over the "wrong side" tests.
  Each family is then corrected across the claims of a suite (Holm by default).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

Alternative = Literal["greater", "less", "two-sided"]
Correction = Literal["holm", "bh", "none"]
Verdict = Literal["pass", "fail", "inconclusive"]
FailReason = Literal["reversed", "not specific"]
FloatArray = NDArray[np.float64]

EXACT_MAX_N = 20  # sign_flip_p enumerates all 2^n sign vectors up to this n
_MC_ROWS = 1 << 14  # Monte Carlo sign vectors drawn per chunk (bounds memory at ~rows * n bytes)
_EPS = 1e-9  # relative tolerance when comparing permutation statistics with the observed one


# --- p-values ----------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    """Four decimals for ordinary p-values, two significant digits for tiny ones."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.2g}"


@dataclass(frozen=True)
class PValue:
    value: float  # the p-value (nan when there was no usable data)
    exact: bool  # True: computed over the full sign-flip space; False: Monte Carlo
    floor: float  # the smallest p this test could have produced (1/2^n exact, 1/(n_perm+1) MC)

    @property
    def at_floor(self) -> bool:
        """True when the data are as extreme as the test can tell: report the floor, not a value."""
        return math.isfinite(self.value) and self.value <= self.floor * (1 + 1e-9)

    def __str__(self) -> str:
        if self.at_floor and self.exact:
            return f"p = {_fmt(self.value)} (exact)"
        if self.at_floor:
            return f"p < {_fmt(self.floor)}"
        return f"p = {_fmt(self.value)}"


def _finite(values: ArrayLike) -> FloatArray:
    """The finite entries as a flat float array: nan marks a missing pair and is dropped."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


@dataclass(frozen=True)
class _Tails:
    """Counts of sign vectors at least as extreme as the observed sum, all three tails at once."""

    greater: int
    less: int
    two_sided: int
    total: int  # 2^n (exact) or n_perm (Monte Carlo)
    exact: bool

    def pvalue(self, alternative: Alternative) -> PValue:
        counts = {"greater": self.greater, "less": self.less, "two-sided": self.two_sided}
        hits = counts[alternative]
        if self.exact:  # the identity (and, two-sided, its negation) is always among the hits
            floor = (2.0 if alternative == "two-sided" else 1.0) / self.total
            return PValue(hits / self.total, True, floor)
        return PValue((hits + 1) / (self.total + 1), False, 1.0 / (self.total + 1))


def _half_sums(d: FloatArray) -> FloatArray:
    """All 2^len(d) signed sums of d (the building block of the exact enumeration)."""
    sums = np.zeros(1)
    for x in d:
        sums = np.concatenate([sums + x, sums - x])
    return sums


def _count_ge(sorted_b: FloatArray, bound: FloatArray) -> int:
    """How many (a, b) pairs have a + b >= c, given bound = c - a and b sorted."""
    return int((sorted_b.size - np.searchsorted(sorted_b, bound, side="left")).sum())


def _count_le(sorted_b: FloatArray, bound: FloatArray) -> int:
    """How many (a, b) pairs have a + b <= c, given bound = c - a and b sorted."""
    return int(np.searchsorted(sorted_b, bound, side="right").sum())


def _exact_tails(d: FloatArray) -> _Tails:
    """Exact counts over all 2^n sign vectors, meet-in-the-middle: two halves of 2^(n/2) sums each.

    Every sign vector is a pair (half A, half B); sorting B's sums turns each tail count into one
    searchsorted per A-sum, so memory stays at 2^(n/2) and time at 2^(n/2) log 2^(n/2).
    """
    obs, tol = float(d.sum()), _EPS * float(np.abs(d).sum())
    a, b = _half_sums(d[: d.size // 2]), np.sort(_half_sums(d[d.size // 2 :]))
    greater = _count_ge(b, obs - tol - a)
    less = _count_le(b, obs + tol - a)
    cut = abs(obs) - tol
    total = 1 << d.size
    two = total if cut <= 0 else _count_ge(b, cut - a) + _count_le(b, -cut - a)
    return _Tails(greater, less, two, total, exact=True)


def _mc_tails(d: FloatArray, seed: int, n_perm: int) -> _Tails:
    """Monte Carlo counts over n_perm random sign vectors (random bits unpacked 8 per byte)."""
    rng = np.random.default_rng(seed)
    obs, tol = float(d.sum()), _EPS * float(np.abs(d).sum())
    greater = less = two = 0
    for start in range(0, n_perm, _MC_ROWS):
        rows = min(_MC_ROWS, n_perm - start)
        raw = rng.integers(0, 256, size=(rows, (d.size + 7) // 8), dtype=np.uint8)
        bits = np.unpackbits(raw, axis=1, count=d.size)
        t = obs - 2.0 * (bits @ d)  # flipping the sign of the set bits
        greater += int(np.count_nonzero(t >= obs - tol))
        less += int(np.count_nonzero(t <= obs + tol))
        two += int(np.count_nonzero(np.abs(t) >= abs(obs) - tol))
    return _Tails(greater, less, two, n_perm, exact=False)


def _tails(d: FloatArray, seed: int, n_perm: int) -> _Tails:
    return _exact_tails(d) if d.size <= EXACT_MAX_N else _mc_tails(d, seed, n_perm)


def sign_flip_p(diff: ArrayLike, alternative: Alternative = "greater", shift: float = 0.0,
                seed: int = 0, n_perm: int = 20000) -> PValue:
    """Paired sign-flip permutation p of mean(diff - shift) against 0; nan pairs are dropped.

    Exact (all 2^n sign vectors) for n <= 20, else Monte Carlo with (hits + 1) / (n_perm + 1) so
    that a p-value is never 0. No data -> nan.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")
    d = _finite(diff) - shift
    if d.size == 0:
        return PValue(math.nan, exact=False, floor=math.nan)
    return _tails(d, seed, n_perm).pvalue(alternative)


# --- confidence intervals ----------------------------------------------------------------------


def ci_mean(values: ArrayLike, level: float = 0.95, seed: int = 0,
            n_boot: int = 4000) -> tuple[float, float]:
    """Studentised-bootstrap (bootstrap-t) CI for the mean; nan values are dropped.

    Bootstrap-t resamples the t statistic rather than the mean, which corrects for skew and for the
    extra spread of small samples; the percentile bootstrap under-covers at n = 8. n < 2 -> (nan,
    nan); zero variance -> (mean, mean).
    """
    x = _finite(values)
    n = x.size
    if n < 2:
        return (math.nan, math.nan)
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if np.ptp(x) == 0:
        return (mean, mean)
    rng = np.random.default_rng(seed)
    boot = x[rng.integers(0, n, size=(n_boot, n))]
    boot_sd = boot.std(axis=1, ddof=1)
    ok = boot_sd > 1e-9 * sd  # a resample of one repeated value has no t statistic
    t = (boot.mean(axis=1)[ok] - mean) / boot_sd[ok]
    tail = (1.0 - level) / 2.0
    lo_q, hi_q = np.quantile(t, [tail, 1.0 - tail])
    return (mean - float(hi_q) * sd, mean - float(lo_q) * sd)  # sd / sqrt(n) cancels in t


# --- multiplicity ------------------------------------------------------------------------------


def adjust(pvalues: Sequence[float] | ArrayLike, method: Correction) -> FloatArray:
    """Holm (step-down FWER) or Benjamini-Hochberg (FDR) adjusted p-values, monotone, capped at 1.

    Non-finite entries stay nan and do not count towards m.
    """
    if method not in ("holm", "bh", "none"):
        raise ValueError(f"method must be holm, bh or none, not {method!r}")
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    if method == "none":
        out[ok] = np.minimum(q, 1.0)
        return out
    order = np.argsort(q, kind="stable")
    ranks = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate((m - ranks + 1) * q[order])
    else:
        adj = np.minimum.accumulate((m / ranks * q[order])[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


# --- power -------------------------------------------------------------------------------------


def power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of a one-sided one-sample t-test for mean `effect` > 0 (noncentral t).

    Used to tell "no effect" from "too few prompts to see one"; nan when sd or n make it undefined.
    """
    if n < 2 or not (math.isfinite(effect) and math.isfinite(sd)) or sd <= 0:
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1.0 - alpha, df)
    return float(stats.nct.sf(crit, df, effect / sd * math.sqrt(n)))


def mde(sd: float, n: int, alpha: float = 0.05, target_power: float = 0.8) -> float:
    """The smallest mean the one-sided t-test detects with `target_power` at n units (brentq)."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    return sd * _unit_mde(n, alpha, target_power)  # the MDE scales with sd


@functools.lru_cache(maxsize=1024)
def _unit_mde(n: int, alpha: float, target_power: float) -> float:
    """MDE at sd = 1, cached: judge asks for the same n over and over."""
    if target_power <= alpha:
        return 0.0
    hi = 1.0
    while power(hi, 1.0, n, alpha) < target_power:
        hi *= 2.0
    root = optimize.brentq(lambda e: power(e, 1.0, n, alpha) - target_power, 0.0, hi, xtol=1e-10)
    return float(root)


# --- the decision rule -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ClaimData:
    name: str
    main: ArrayLike  # oriented per-prompt differences, condition - compare_to
    controls: Mapping[str, ArrayLike] = field(default_factory=dict)  # condition - control, oriented
    threshold: float = 0.0  # the claim is "oriented mean > threshold"
    min_effect: float = 0.0  # effect of interest for power; 0 = use threshold; both 0 -> power nan
    degenerate: tuple[str, ...] = ()  # degenerate conditions involved: the claim cannot PASS


@dataclass(frozen=True)
class ControlResult:
    name: str
    effect: float  # mean of condition - control (oriented)
    ci: tuple[float, float]  # ci_mean of it
    p: PValue  # the condition beats the control (one-sided greater)
    p_worse: PValue  # the control beats the condition (one-sided less)


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
    power: float  # at min_effect (or threshold), observed sd and n, one-sided t at alpha
    mde: float  # minimum detectable effect at this n (80 % power, alpha)
    controls: tuple[ControlResult, ...]


@dataclass(frozen=True)
class _Tested:
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


def _subseed(seed: int, name: str, j: int) -> int:
    """A seed per (claim, test) that does not change when other claims are added or reordered."""
    state = np.random.SeedSequence([seed, zlib.crc32(name.encode()), j]).generate_state(1)
    return int(state[0])


def _summary(x: FloatArray, seed: int, n_boot: int) -> tuple[float, tuple[float, float]]:
    mean = float(x.mean()) if x.size else math.nan
    return mean, ci_mean(x, seed=seed, n_boot=n_boot)


def _control(name: str, values: ArrayLike, seed: int, n_perm: int, n_boot: int) -> ControlResult:
    x = _finite(values)
    effect, ci = _summary(x, seed, n_boot)
    if x.size < 2:
        nan = PValue(math.nan, exact=False, floor=math.nan)
        return ControlResult(name, effect, ci, nan, nan)
    tails = _tails(x, seed, n_perm)
    return ControlResult(name, effect, ci, tails.pvalue("greater"), tails.pvalue("less"))


def _or_one(p: float) -> float:
    """An untestable component counts as p = 1: it can neither support PASS nor FAIL."""
    return p if math.isfinite(p) else 1.0


def _test(claim: ClaimData, alpha: float, seed: int, n_perm: int, n_boot: int) -> _Tested:
    x = _finite(claim.main)
    n = x.size
    effect, ci = _summary(x, _subseed(seed, claim.name, 0), n_boot)
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    controls = tuple(_control(name, values, _subseed(seed, claim.name, 2 + j), n_perm, n_boot)
                     for j, (name, values) in enumerate(claim.controls.items()))
    if n < 2:
        nan = PValue(math.nan, exact=False, floor=math.nan)
        return _Tested(claim, n, effect, ci, math.nan, nan, nan, controls, math.nan, math.nan,
                       math.nan, math.nan)
    s = _subseed(seed, claim.name, 1)
    reversed_tails = _tails(x, s, n_perm)
    p = reversed_tails.pvalue("greater") if claim.threshold == 0 else sign_flip_p(
        x, "greater", shift=claim.threshold, seed=s, n_perm=n_perm)
    p_reversed = reversed_tails.pvalue("less")
    p_pass = max([p.value] + [_or_one(c.p.value) for c in controls])
    wrong = [p_reversed.value] + [_or_one(c.p_worse.value) for c in controls]
    p_fail = min(1.0, len(wrong) * min(wrong))
    interest = claim.min_effect if claim.min_effect > 0 else claim.threshold
    pw = power(interest, sd, n, alpha) if interest > 0 else math.nan
    d_z = effect / sd if sd > 0 else math.nan
    return _Tested(claim, n, effect, ci, d_z, p, p_reversed, controls, p_pass, p_fail, pw,
                   mde(sd, n, alpha))


def _fail_reasons(t: _Tested, p_fail_adj: float,
                  alpha: float) -> tuple[tuple[FailReason, ...], list[str]]:
    """Which wrong-side tests carry the FAIL: those significant at the claim's effective level.

    The effective multiplier is (k + 1) within the claim times the cross-claim inflation
    p_fail_adj / p_fail; the smallest wrong-side p is always named.
    """
    k1 = len(t.controls) + 1
    scale = k1 * (p_fail_adj / t.p_fail if t.p_fail > 0 else 1.0)
    smallest = min([t.p_reversed.value] + [_or_one(c.p_worse.value) for c in t.controls])

    def hit(p: float) -> bool:
        return math.isfinite(p) and (p * scale < alpha or p == smallest)

    kinds: list[FailReason] = []
    lines: list[str] = []
    if hit(t.p_reversed.value):
        kinds.append("reversed")
        lines.append(f"reversed: effect {t.effect:.3g} is below 0 ({t.p_reversed})")
    for c in t.controls:
        if hit(c.p_worse.value):
            if "not specific" not in kinds:
                kinds.append("not specific")
            lines.append(f"not specific: control {c.name} beats the condition "
                         f"(effect {c.effect:.3g}, {c.p_worse})")
    lines.append(f"p_fail_adj = {_fmt(p_fail_adj)} < {alpha:g}")
    return tuple(kinds), lines


def _not_pass_reasons(t: _Tested, p_pass_adj: float, alpha: float) -> list[str]:
    """Why a claim did not reach PASS: the adjusted p and every component that was not shown."""
    lines = [f"p_pass_adj = {_fmt(p_pass_adj)} ≥ {alpha:g}"]
    if not t.p.value < alpha:
        lines.append(f"effect {t.effect:.3g} not shown above threshold {t.claim.threshold:g} "
                     f"({t.p})")
    for c in t.controls:
        if not c.p.value < alpha:
            lines.append(f"does not beat control {c.name} ({c.p})")
    if t.power < 0.8:
        lines.append(f"low power {t.power:.2f} at n = {t.n} (MDE {t.mde:.3g})")
    return lines


def _pass_reasons(t: _Tested, p_pass_adj: float, alpha: float) -> list[str]:
    main = (f"effect {t.effect:.3g} > threshold {t.claim.threshold:g} ({t.p}, d_z = "
            f"{t.effect_size:.2f}, n = {t.n})")
    lines = [main]
    lines += [f"beats control {c.name} ({c.p})" for c in t.controls]
    lines.append(f"p_pass_adj = {_fmt(p_pass_adj)} < {alpha:g}")
    return lines


def _decide(t: _Tested, p_pass_adj: float, p_fail_adj: float, alpha: float) -> Judgement:
    """FAIL takes precedence over PASS (possible only with a negative threshold)."""
    verdict: Verdict = "inconclusive"
    kinds: tuple[FailReason, ...] = ()
    if t.n < 2:
        lines = [f"fewer than 2 usable pairs (n = {t.n})"]
    elif p_fail_adj < alpha:
        verdict = "fail"
        kinds, lines = _fail_reasons(t, p_fail_adj, alpha)
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
        name=t.claim.name, verdict=verdict, reasons=tuple(lines), fail_reasons=kinds,
        effect=t.effect, ci=t.ci, effect_size=t.effect_size, n=t.n, p=t.p, p_pass=t.p_pass,
        p_pass_adj=p_pass_adj, p_fail=t.p_fail, p_fail_adj=p_fail_adj, power=t.power, mde=t.mde,
        controls=t.controls)


def judge(claims: Sequence[ClaimData], correction: Correction = "holm", alpha: float = 0.05,
          seed: int = 0, *, n_perm: int = 20000, n_boot: int = 4000) -> list[Judgement]:
    """PASS / FAIL / INCONCLUSIVE per claim, correcting the PASS and FAIL families across claims.

    PASS iff p_pass_adj < alpha and nothing degenerate is involved; FAIL iff p_fail_adj < alpha
    (reversed and / or not specific); everything else is inconclusive, with the reasons.
    Controls must already exclude degenerate ones.
    """
    tested = [_test(c, alpha, seed, n_perm, n_boot) for c in claims]
    pass_adj = adjust([t.p_pass for t in tested], correction)
    fail_adj = adjust([t.p_fail for t in tested], correction)
    return [_decide(t, float(pa), float(fa), alpha)
            for t, pa, fa in zip(tested, pass_adj, fail_adj, strict=True)]
