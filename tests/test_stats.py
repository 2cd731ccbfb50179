"""Statistics for causal-validation verdicts: known answers, coverage and error-rate simulations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from steerlab.validate import power as P
from steerlab.validate import rule as R
from steerlab.validate import signflip as F
from steerlab.validate import stats as S

# --- sign-flip p-values --------------------------------------------------------------------------


def brute_force_p(d: np.ndarray, alternative: str) -> float:
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=d.size)))
    t, obs, tol = signs @ d, d.sum(), 1e-9 * np.abs(d).sum()
    hits = {"greater": t >= obs - tol, "less": t <= obs + tol, "two-sided": np.abs(t) >= abs(obs) - tol}[alternative]
    return float(hits.mean())


def test_sign_flip_exact_by_hand() -> None:
    p = F.sign_flip_p([1.0, 2.0, 3.0])  # only the all-plus vector reaches the sum 6
    assert p == S.PValue(0.125, exact=True, floor=0.125)
    assert str(p) == "p = 0.1250 (exact)"
    assert F.sign_flip_p([1.0, 2.0, 3.0], "less").value == 1.0
    assert F.sign_flip_p([1.0, 2.0, 3.0], "two-sided").value == 0.25
    # signed sums of (1, 2, 3): 6, 0, 2, -4, 4, -2, 0, -6; observed 1 - 2 + 3 = 2 -> {6, 2, 4}
    assert F.sign_flip_p([1.0, -2.0, 3.0]).value == 3 / 8
    assert str(F.sign_flip_p([1.0, -2.0, 3.0])) == "p = 0.3750"


@pytest.mark.parametrize("n", [1, 2, 5, 8, 11, 14])
@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_sign_flip_exact_equals_brute_force(n: int, alternative: str) -> None:
    d = np.random.default_rng(n).normal(0.4, 1.0, size=n)
    got = F.sign_flip_p(d, alternative, shift=0.1)  # type: ignore[arg-type]
    assert got.exact
    assert got.value == pytest.approx(brute_force_p(d - 0.1, alternative), abs=1e-12)


def test_sign_flip_ties_and_missing_values() -> None:
    assert F.sign_flip_p([0.0, 0.0, 0.0]).value == 1.0  # every sign vector ties with 0
    assert F.sign_flip_p([np.nan, 1.0, 2.0, 3.0]).value == 0.125  # nan pairs are dropped
    empty = F.sign_flip_p([])
    assert math.isnan(empty.value) and str(empty) == "p = nan"
    with pytest.raises(ValueError):
        F.sign_flip_p([1.0], "bigger")  # type: ignore[arg-type]


def test_sign_flip_monte_carlo_path() -> None:
    d = np.random.default_rng(3).normal(3.0, 1.0, size=30)
    p = F.sign_flip_p(d)
    assert not p.exact and p.floor == 1 / 20001 and p.value == p.floor
    assert str(p) == "p < 5e-05"
    small = F.sign_flip_p(d, n_perm=999)
    assert small.floor == 1 / 1000 and str(small) == "p < 0.0010"
    assert F.sign_flip_p(d, seed=7) == F.sign_flip_p(d, seed=7)  # seeded


def test_monte_carlo_agrees_with_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    d = np.random.default_rng(4).normal(0.3, 1.0, size=16)
    exact = F.sign_flip_p(d, "two-sided")
    monkeypatch.setattr(F, "EXACT_MAX_N", 0)
    mc = F.sign_flip_p(d, "two-sided", n_perm=40000, seed=1)
    assert exact.exact and not mc.exact
    assert mc.value == pytest.approx(exact.value, abs=0.01)


# --- multiplicity --------------------------------------------------------------------------------


def test_adjust_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.2]
    # Holm: sorted 0.01, 0.03, 0.04, 0.2 -> 4*.01, 3*.03, max(2*.04, .09), max(.2, .09)
    np.testing.assert_allclose(S.adjust(p, "holm"), [0.04, 0.09, 0.09, 0.2])
    # BH: 4/1*.01, 4/2*.03 = .06, 4/3*.04 = .0533, .2 -> running min from the top
    np.testing.assert_allclose(S.adjust(p, "bh"), [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    np.testing.assert_allclose(S.adjust(p, "none"), p)
    np.testing.assert_allclose(S.adjust([0.5, 0.6], "holm"), [1.0, 1.0])  # capped at 1


def test_adjust_ignores_nan() -> None:
    out = S.adjust([np.nan, 0.01, 0.04], "holm")  # m = 2, not 3
    assert math.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.02, 0.04])
    assert np.isnan(S.adjust([np.nan], "bh")).all() and S.adjust([], "holm").size == 0


# --- bootstrap CI --------------------------------------------------------------------------------

COVERAGE_SETS = 1000


@pytest.mark.parametrize("n", [8, 24])
@pytest.mark.parametrize("dist", ["normal", "exponential"])
def test_ci_mean_coverage(dist: str, n: int) -> None:
    rng = np.random.default_rng(100 + n)
    if dist == "normal":
        data, mu = rng.normal(0.3, 1.0, size=(COVERAGE_SETS, n)), 0.3
    else:  # skewness 2: the percentile bootstrap covers ~0.88 at n = 8
        data, mu = rng.exponential(1.0, size=(COVERAGE_SETS, n)), 1.0
    cis = np.array([S.ci_mean(x, seed=i, n_boot=999) for i, x in enumerate(data)])
    coverage = float(np.mean((cis[:, 0] <= mu) & (mu <= cis[:, 1])))
    assert 0.92 <= coverage <= 0.98, coverage


def test_ci_mean_degenerate_inputs() -> None:
    assert all(math.isnan(v) for v in S.ci_mean([]))
    assert all(math.isnan(v) for v in S.ci_mean([1.0, np.nan]))
    assert S.ci_mean([2.0, 2.0, 2.0]) == (2.0, 2.0)
    lo, hi = S.ci_mean([1.0, 2.0, np.nan, 3.0, 4.0, 5.0])
    assert lo < 3.0 < hi
    assert S.ci_mean([1.0, 5.0, 2.0, 7.0], seed=3) == S.ci_mean([1.0, 5.0, 2.0, 7.0], seed=3)


# --- the decision rule ---------------------------------------------------------------------------


def family(
    rng: np.random.Generator, effect: float, start: int, size: int = 5, n: int = 24, k: int = 4
) -> list[R.ClaimData]:
    """Claims whose condition is `effect` (in sd of a difference) above a reference and k controls.

    Every condition's per-prompt value carries independent noise of sd 1/sqrt(2), so every paired
    difference has sd 1 and the control differences share the condition's noise, as in a suite.
    """
    noise = rng.normal(0.0, math.sqrt(0.5), size=(size, 2 + k, n))
    cond = noise[:, 0] + effect
    return [
        R.ClaimData(
            f"claim{start + i}",
            cond[i] - noise[i, 1],
            {f"random:s{1000 + j}": cond[i] - noise[i, 2 + j] for j in range(k)},
        )
        for i in range(size)
    ]


def verdict_rates(effect: float, families: int, seed: int) -> tuple[float, float, float]:
    """Per-claim FAIL and PASS rates and the family-wise FAIL rate over simulated suites."""
    rng = np.random.default_rng(seed)
    # 1000 bootstrap draws resolve p = 0.001; the rule's power is not simulated here
    verdicts = [
        [j.verdict for j in R.judge(family(rng, effect, 5 * f), seed=f, n_boot=1000, simulate_power=False)]
        for f in range(families)
    ]
    flat = np.array(verdicts)
    family_fail = float(np.mean([("fail" in v) for v in verdicts]))
    return float(np.mean(flat == "fail")), float(np.mean(flat == "pass")), family_fail


def test_global_null_error_rates() -> None:
    fail, passed, family_fail = verdict_rates(0.0, families=200, seed=11)  # 1000 claims
    assert fail <= 0.06 and passed <= 0.06, (fail, passed)
    assert family_fail <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 200), family_fail  # Holm's FWER


def test_planted_effect_passes() -> None:
    fail, passed, _ = verdict_rates(1.0, families=40, seed=12)  # 200 claims, d = 1, n = 24
    assert passed > 0.8 and fail == 0.0, (passed, fail)


def controls(rng: np.random.Generator, means: dict[str, float], n: int = 24) -> dict[str, np.ndarray]:
    return {name: rng.normal(mu, 1.0, size=n) for name, mu in means.items()}


def test_reversed_effect_fails_as_reversed() -> None:
    rng = np.random.default_rng(13)
    claim = R.ClaimData("reversed", rng.normal(-1.0, 1.0, size=24), controls(rng, {"random:s1": 0.0, "random:s2": 0.0}))
    (j,) = R.judge([claim])
    assert j.verdict == "fail" and j.fail_reasons == ("reversed",), j.reasons
    assert j.reasons[0].startswith("reversed: effect -")


def test_control_beating_the_condition_fails_as_not_specific() -> None:
    rng = np.random.default_rng(14)
    claim = R.ClaimData(
        "unspecific", rng.normal(1.0, 1.0, size=24), controls(rng, {"random:s1001": -1.0, "random:s1002": 1.0})
    )
    (j,) = R.judge([claim])
    assert j.verdict == "fail" and j.fail_reasons == ("not specific",), j.reasons
    assert "control random:s1001 beats the condition" in j.reasons[0]


def test_degenerate_claim_never_passes() -> None:
    rng = np.random.default_rng(15)
    main = rng.normal(2.0, 1.0, size=24)
    ctrl = controls(rng, {"random:s1": 2.0})
    clean, dirty = R.judge(
        [R.ClaimData("a", main, ctrl), R.ClaimData("b", main, ctrl, degenerate=("ablate desperate",))]
    )
    assert clean.verdict == "pass"
    assert dirty.verdict == "inconclusive" and dirty.p_pass_adj < 0.05
    assert any("degenerate" in r and "ablate desperate" in r for r in dirty.reasons)


def test_inconclusive_names_what_is_missing() -> None:
    rng = np.random.default_rng(16)
    claim = R.ClaimData(
        "weak", rng.normal(1.0, 1.0, size=24), controls(rng, {"random:s1001": 0.0, "random:s1002": 1.0}), min_effect=0.1
    )
    (j,) = R.judge([claim])
    assert j.verdict == "inconclusive" and j.fail_reasons == ()
    assert j.reasons[0].startswith("p_pass_adj = ") and "≥ 0.05" in j.reasons[0]
    assert any(r.startswith("does not beat control random:s1001 (p = ") for r in j.reasons)
    assert any(r.startswith("low power") for r in j.reasons)


def test_judgement_fields() -> None:
    rng = np.random.default_rng(17)
    main = rng.normal(0.5, 1.0, size=16)  # n <= 20: exact p-values, whatever the seed
    ctrl = controls(rng, {"c1": 0.3, "c2": 0.1}, n=16)
    a, b = R.judge(
        [R.ClaimData("a", main, ctrl, threshold=0.2), R.ClaimData("b", np.array([1.0, np.nan]), ctrl)], seed=3
    )
    assert a.n == 16 and a.effect == pytest.approx(main.mean())
    assert a.effect_size == pytest.approx(main.mean() / main.std(ddof=1))
    assert a.p_pass == max([a.p.value] + [c.p.value for c in a.controls])
    assert a.p.value == pytest.approx(S.mean_p(main, shift=0.2).value, abs=0.02)
    worse = [S.mean_p(main, "less").value] + [c.p_worse.value for c in a.controls]
    assert a.p_fail == pytest.approx(min(1.0, 3 * min(worse)), abs=0.03)
    assert a.p_pass_adj == a.p_pass  # the unusable claim b is not counted in m
    assert math.isnan(a.power)  # min_effect not set: nothing to simulate
    assert [c.name for c in a.controls] == ["c1", "c2"]
    assert b.verdict == "inconclusive" and b.reasons == ("fewer than 2 usable pairs (n = 1)",)
    assert math.isnan(b.p_pass) and math.isnan(b.p_pass_adj)
    again = R.judge([R.ClaimData("a", main, ctrl, threshold=0.2)], seed=3)[0]
    assert again.p == a.p and again.ci == a.ci  # seeded per claim name
    no_effect = R.judge([R.ClaimData("c", main, ctrl)])[0]
    assert math.isnan(no_effect.power)
    powered = R.judge([R.ClaimData("d", main, ctrl, min_effect=0.5)], seed=3)[0]
    assert 0.0 < powered.power < 1.0 and powered.mde > 0


# --- skew, control populations, premises and the rule's power, by simulation ---------------------


def test_one_sample_test_keeps_its_level_on_skewed_nulls() -> None:
    rng = np.random.default_rng(21)
    reps = 4000  # the level is 5.1-5.6 % (10,000 nulls); 4,000 estimate it within ±0.4 %
    for sign in (1.0, -1.0):  # right- and left-skewed, skewness 1.41, mean 0
        data = sign * (rng.gamma(2.0, 1.0, size=(reps, 24)) - 2.0)
        tails = [S.mean_tails(x, seed=i, n_boot=999) for i, x in enumerate(data)]
        for k in (0, 1):
            level = np.mean([t[k].value < 0.05 for t in tails])
            assert level <= 0.06 + 2 * math.sqrt(0.06 * 0.94 / reps), (sign, k, level)  # a 6 % level, within MC error
    flips = np.mean([F.sign_flip_p(x, "greater", n_perm=999, seed=i).value < 0.05 for i, x in enumerate(data[:500])])
    assert flips > 0.06  # why: the sign-flip test assumes symmetry and does not keep its level here


def _population(rng: np.random.Generator, target_shift: float, d: int = 20, n: int = 24) -> np.ndarray:
    """(directions, prompts) oriented margins of a condition over a population whose directions' true
    effects spread with sd 0.5; the condition's own effect sits ``target_shift`` population sds above
    the population mean. Prompt values carry noise of sd 1 and a shared prompt effect."""
    prompt = rng.normal(0, 1, size=n)
    cond = target_shift * 0.5 + prompt + rng.normal(0, 1, size=n)
    controls = rng.normal(0, 0.5, size=(d, 1)) + prompt + rng.normal(0, 1, size=(d, n))
    return np.asarray(cond - controls)


def test_a_condition_that_is_one_more_draw_from_the_population_rarely_beats_it() -> None:
    rng = np.random.default_rng(22)
    p = [S.population_p(_population(rng, rng.normal())).p.value for _ in range(2000)]
    assert np.mean(np.array(p) < 0.05) <= 0.05


def test_a_condition_that_beats_most_of_the_population_is_not_failed_as_not_specific() -> None:
    rng = np.random.default_rng(23)  # the condition beats 84 % of the population's directions
    worse = [S.population_p(_population(rng, 1.0)).p_worse.value for _ in range(2000)]
    assert np.mean(np.array(worse) < 0.05) <= 0.05
    claims = [
        R.ClaimData("c", rng.normal(1.0, 1.0, 24), populations={"pop": _population(rng, 1.0)}) for _ in range(300)
    ]
    fails = [R.judge([c], n_boot=1000, simulate_power=False)[0] for c in claims]
    assert np.mean(["not specific" in j.fail_reasons for j in fails]) <= 0.05


def test_a_premise_on_its_own_baseline_does_not_inflate_the_gated_claim() -> None:
    """Under the null (ablation does nothing) the claim PASSes at most at its level among the runs
    whose premise PASSed, because the premise reads a baseline sample the claim never reads."""
    rng = np.random.default_rng(24)
    passed = []
    for _ in range(1500):
        prompt = rng.normal(0, 1, size=24)
        premise_base = 0.4 + prompt + rng.normal(0, 1, size=24)
        base, ablated = prompt + rng.normal(0, 1, size=(2, 24))
        premise, claim = R.judge(
            [R.ClaimData("premise", premise_base), R.ClaimData("claim", base - ablated)],
            n_boot=999,
            simulate_power=False,
        )
        if premise.verdict == "pass":
            passed.append(claim.verdict == "pass")
    assert len(passed) > 300 and np.mean(passed) <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / len(passed))


def test_simulated_power_matches_the_rule() -> None:
    rng = np.random.default_rng(25)
    effect, n = 0.6, 24
    claims = [
        R.ClaimData(f"c{i}", rng.normal(effect, 1.0, n), {"other": rng.normal(effect, 1.0, n)}, min_effect=effect)
        for i in range(300)
    ]
    observed = np.mean([R.judge([c], n_boot=999, simulate_power=False)[0].verdict == "pass" for c in claims])
    simulated = R.judge([claims[0]], n_boot=999)[0]
    noise = P.Noise(n, 1.0, (1.0,))
    assert P.pass_rate(noise, effect, 1, 0.05) == pytest.approx(observed, abs=0.08)
    assert simulated.power == pytest.approx(observed, abs=0.15) and simulated.mde > 0
    _, mde = P.rule_power(noise, effect, 1, 0.05)
    assert P.pass_rate(noise, mde, 1, 0.05, seed=1) == pytest.approx(0.8, abs=0.06)


def test_equivalence_claims_pass_inside_the_margin_and_fail_outside() -> None:
    rng = np.random.default_rng(26)
    inside, outside = R.judge(
        [
            R.ClaimData("same", rng.normal(0, 0.2, 30), margin=0.5),
            R.ClaimData("moved", rng.normal(2, 0.2, 30), margin=0.5),
        ]
    )
    assert inside.verdict == "pass" and "inside ±0.5" in inside.reasons[0]
    assert outside.verdict == "fail" and outside.fail_reasons == ("changed",)
    # at the margin's edge (a true change of exactly the margin) equivalence passes at most at the level
    edge = [R.ClaimData(f"e{i}", rng.normal(0.5, 1.0, 24), margin=0.5) for i in range(400)]
    rate = np.mean([R.judge([c], n_boot=999, simulate_power=False)[0].verdict == "pass" for c in edge])
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 400)


def test_near_ties_at_rounding_level_leave_the_test_and_the_ci_unchanged() -> None:
    """The same reply read in two batches differs by ~1e-9: such near-ties must count as ties. Before, the
    resamples without the one changed reply had a near-zero sd, a t near infinity, and an equivalence that
    holds (39 changes, 38 of them zero, inside ±0.141) was not shown (p 0.37 instead of 0.0004)."""
    exact = np.array([0.0] * 38 + [-0.133])
    noisy = exact + np.r_[np.random.default_rng(0).normal(scale=1e-9, size=38), 0.0]
    for shift in (-0.141, 0.0, 0.141):
        for a, b in zip(S.mean_tails(exact, shift), S.mean_tails(noisy, shift), strict=True):
            assert b.value == pytest.approx(a.value)
    assert S.ci_mean(noisy) == pytest.approx(S.ci_mean(exact), abs=1e-6)
    assert R.judge([R.ClaimData("unchanged", noisy, margin=0.141)])[0].verdict == "pass"
