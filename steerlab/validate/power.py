"""Power and minimum detectable effect of the decision rule itself, by simulation.

A one-sample t power curve says nothing about a rule that must also beat every control and survive a
correction across claims. Here the claim is re-played many times with its observed noise: the main
differences, each fixed control's differences and each control population's structure (spread between
directions, prompt-level noise) are drawn again with the effect of interest added to all of them, and
the rule's PASS condition (every component significant, Bonferroni across the suite's claims: a lower
bound on Holm's power) is applied. Common random numbers make the power curve monotone in the effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from steerlab.validate.stats import FloatArray, _hall_t

REPS = 400  # simulated replays per effect size
GRID = tuple(float(x) for x in np.geomspace(0.125, 8.0, 25))  # effect multiples searched for the MDE
TARGET_POWER = 0.8


@dataclass(frozen=True)
class Noise:
    """A claim's observed noise, in metric units."""

    n: int  # prompts with a usable main difference
    sd: float  # sd of the main differences
    controls: tuple[float, ...] = ()  # sd of each fixed control's differences
    # per population: (directions, sd of the directions' mean margins, sd of the prompts' mean margins)
    populations: tuple[tuple[int, float, float], ...] = ()


def noise_of(main: FloatArray, controls: Sequence[FloatArray], populations: Sequence[np.ndarray]) -> Noise:
    """Estimate a claim's :class:`Noise` from its data (populations are (directions, prompts) arrays)."""
    pops = []
    for d in populations:
        d = d[np.isfinite(d).any(axis=1)]
        if d.shape[0] < 2:
            continue
        with np.errstate(all="ignore"):
            delta, per_prompt = np.nanmean(d, axis=1), np.nanmean(d, axis=0)
        per_prompt = per_prompt[np.isfinite(per_prompt)]
        prompt_sd = float(per_prompt.std(ddof=1)) if per_prompt.size > 1 else 0.0
        pops.append((int(d.shape[0]), float(delta.std(ddof=1)), prompt_sd))
    sds = tuple(float(np.std(c, ddof=1)) if c.size > 1 else math.nan for c in controls)
    return Noise(int(main.size), float(np.std(main, ddof=1)) if main.size > 1 else math.nan, sds, tuple(pops))


def _one_sided_p(x: np.ndarray) -> np.ndarray:
    """Hall-t p (t reference) of mean > 0 per row: the rule's statistic, without the bootstrap."""
    return np.asarray(stats.t.sf(_hall_t(x, 0.0), x.shape[-1] - 1))


def pass_rate(noise: Noise, effect: float, m: int, alpha: float, seed: int = 0, reps: int = REPS) -> float:
    """Share of replays in which the rule PASSes when the condition beats the baseline, every fixed
    control and every population's mean by ``effect``."""
    rng = np.random.default_rng(seed)
    p = _one_sided_p(effect + noise.sd * rng.standard_normal((reps, noise.n)))
    for sd in noise.controls:
        p = np.maximum(p, _one_sided_p(effect + sd * rng.standard_normal((reps, noise.n))))
    for k, spread, prompt_sd in noise.populations:
        common = prompt_sd / math.sqrt(noise.n) * rng.standard_normal((reps, 1))  # the condition's own noise
        delta = effect + spread * rng.standard_normal((reps, k)) + common
        scale = np.sqrt(delta.var(axis=1, ddof=1) * (1 + 1 / k) + prompt_sd**2 / noise.n)
        p = np.maximum(p, stats.t.sf(delta.mean(axis=1) / scale, k - 1))
    return float(np.mean(p * m < alpha))


def rule_power(noise: Noise, min_effect: float, m: int, alpha: float, seed: int = 0) -> tuple[float, float]:
    """(power at ``min_effect``, MDE: the smallest effect with power ≥ 0.8), both by simulating the rule;
    nan where the noise is undefined; MDE inf when even 8 × min_effect does not reach 0.8."""
    if noise.n < 3 or not (math.isfinite(noise.sd) and noise.sd > 0 and math.isfinite(min_effect) and min_effect > 0):
        return math.nan, math.nan
    if any(not math.isfinite(sd) for sd in noise.controls):
        return math.nan, math.nan
    power = pass_rate(noise, min_effect, m, alpha, seed)
    unit = max(min_effect, noise.sd / math.sqrt(noise.n))
    curve = [pass_rate(noise, g * unit, m, alpha, seed) for g in GRID]
    above = [i for i, v in enumerate(curve) if v >= TARGET_POWER]
    if not above:
        return power, math.inf
    i = above[0]
    if i == 0:
        return power, GRID[0] * unit
    lo, hi = curve[i - 1], curve[i]
    frac = (TARGET_POWER - lo) / (hi - lo) if hi > lo else 1.0
    return power, unit * (GRID[i - 1] + frac * (GRID[i] - GRID[i - 1]))


def equivalence_power(main: FloatArray, margin: float, m: int, alpha: float, seed: int = 0, reps: int = REPS) -> float:
    """P(PASS) of an equivalence claim when the true change is 0, with the observed sd and n."""
    sd = float(np.std(main, ddof=1)) if main.size > 1 else math.nan
    if main.size < 3 or not (math.isfinite(sd) and sd > 0 and margin > 0):
        return math.nan
    x = sd * np.random.default_rng(seed).standard_normal((reps, main.size))
    p = np.maximum(_one_sided_p(x + margin), _one_sided_p(margin - x))
    return float(np.mean(p * m < alpha))
