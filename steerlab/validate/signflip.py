"""The paired sign-flip permutation test: exact for small n (all 2^n sign vectors, meet in the middle),
Monte Carlo beyond. It assumes a null difference symmetric about 0, which a skewed one is not, so the
decision rule uses :func:`.stats.mean_p`; this test stays for users who want an exact test under
exchangeability (e.g. "the intervention changes nothing at all")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from steerlab.validate.stats import Alternative, FloatArray, PValue, finite_values

EXACT_MAX_N = 20  # sign_flip_p enumerates all 2^n sign vectors up to this n
_MC_ROWS = 1 << 14  # Monte Carlo sign vectors drawn per chunk (bounds memory at ~rows * n bytes)
_EPS = 1e-9  # relative tolerance when comparing permutation statistics with the observed one


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


def sign_flip_tails(d: FloatArray, seed: int, n_perm: int) -> _Tails:
    return _exact_tails(d) if d.size <= EXACT_MAX_N else _mc_tails(d, seed, n_perm)


def sign_flip_p(
    diff: ArrayLike, alternative: Alternative = "greater", shift: float = 0.0, seed: int = 0, n_perm: int = 20000
) -> PValue:
    """Paired sign-flip permutation p of mean(diff - shift) against 0; nan pairs are dropped.

    Exact (all 2^n sign vectors) for n <= 20, else Monte Carlo with (hits + 1) / (n_perm + 1) so
    that a p-value is never 0. No data -> nan.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")
    d = finite_values(diff) - shift
    if d.size == 0:
        return PValue(math.nan, exact=False, floor=math.nan)
    return sign_flip_tails(d, seed, n_perm).pvalue(alternative)
