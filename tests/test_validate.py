"""Validation suites: statistics with known answers, schema errors, per-row edits, planted claims, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from steerlab import validate as V
from steerlab.activations import pooled_activations
from steerlab.errors import SuiteError
from steerlab.generate import GenerationConfig, generate
from steerlab.interventions import build_edits
from steerlab.models import LoadedModel
from steerlab.vectors import EmotionVectors, save_vectors

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "eval" / "suites"


# --- statistics ------------------------------------------------------------------------------


def test_bootstrap_ci_covers_true_mean_at_about_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    hits = [V.paired_stats(rng.normal(0.3, 1.0, size=40), seed=i, n_boot=1000).ci for i in range(300)]
    coverage = np.mean([lo <= 0.3 <= hi for lo, hi in hits])
    assert 0.89 <= coverage <= 0.98, coverage


def test_permutation_p_is_roughly_uniform_under_the_null() -> None:
    rng = np.random.default_rng(1)
    ps = np.array([V.permutation_p(rng.normal(size=30), seed=i, n_perm=2000) for i in range(300)])
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09
    assert 0.42 <= np.mean(ps < 0.5) <= 0.58
    assert np.all((ps > 0) & (ps <= 1))


def test_permutation_p_exact_for_small_n_and_tiny_for_a_clear_effect() -> None:
    assert V.permutation_p(np.ones(6)) == pytest.approx(2 / 64)  # all +1 or all -1 signs
    assert V.permutation_p(np.full(40, 2.0) + np.random.default_rng(0).normal(size=40) * 0.1) < 0.001


def test_paired_stats_fields() -> None:
    diff = np.array([1.0, 2.0, 3.0, -1.0, np.nan])
    s = V.paired_stats(diff, direction="increase")
    assert s.n == 4 and s.effect == pytest.approx(1.25)
    assert s.reversed == pytest.approx(0.25)
    assert s.effect_size == pytest.approx(1.25 / np.std([1, 2, 3, -1], ddof=1))
    assert V.paired_stats(diff, direction="decrease").reversed == pytest.approx(0.75)


def _stats(lo: float, hi: float) -> V.Stats:
    return V.Stats((lo + hi) / 2, (lo, hi), 0.01, 1.0, 0.0, 20)


def test_decide_pass_fail_inconclusive() -> None:
    assert V.decide(_stats(0.1, 0.3), {"r": _stats(0.05, 0.2)}, "increase", 0.0)[0] == "pass"
    assert V.decide(_stats(-0.3, -0.1), {}, "decrease", 0.0)[0] == "pass"
    assert V.decide(_stats(-0.3, -0.1), {}, "increase", 0.0)[0] == "fail"
    assert V.decide(_stats(0.01, 0.04), {}, "increase", 0.05)[0] == "fail"  # confidently below the threshold
    assert V.decide(_stats(-0.1, 0.3), {}, "increase", 0.0)[0] == "inconclusive"
    assert V.decide(_stats(0.1, 0.3), {"r": _stats(-0.1, 0.2)}, "increase", 0.0)[0] == "inconclusive"
    assert V.decide(_stats(0.1, 0.3), {"r": _stats(-0.3, -0.1)}, "increase", 0.0)[0] == "fail"
    weak_p = dataclasses.replace(_stats(0.1, 0.3), p=0.07)
    assert V.decide(weak_p, {}, "increase", 0.0)[0] == "inconclusive"
    verdict, reasons = V.decide(_stats(0.1, 0.3), {}, "increase", 0.0, degenerate=["add"])
    assert verdict == "inconclusive" and "degenerate" in reasons[0]


def test_distinct2() -> None:
    assert V.distinct2([1, 2, 3, 4]) == 1.0
    assert V.distinct2([7] * 11) == pytest.approx(0.1)
    assert np.isnan(V.distinct2([5]))


# --- suite files -----------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "name": "mini",
    "prompts": ["one", "two"],
    "conditions": [{"name": "baseline"}, {"name": "abl", "op": "ablate", "emotions": ["grim"]}],
    "metrics": {"m": {"kind": "reply", "emotion": "grim"}},
    "claims": [{"name": "c", "condition": "abl", "metric": "m", "direction": "decrease"}],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(MINIMAL))
    *keys, last = path.split(".")
    node = data
    for key in keys:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("name", KeyError, "'name'"),
        ("conditions", KeyError, "'conditions'"),
        ("metrics.m.kind", "average", "'metrics.m.kind'"),
        ("conditions.1.op", "remove", "'conditions[1].op'"),
        ("conditions.1.emotions", KeyError, "'conditions[1].emotions'"),
        ("conditions.1.layers", "six", "'conditions[1].layers'"),
        ("conditions.1.colour", "red", "'conditions[1].colour'"),
        ("claims.0.direction", "up", "'claims[0].direction'"),
        ("claims.0.condition", "nope", "'claims[0].condition'"),
        ("claims.0.metric", "nope", "'claims[0].metric'"),
        ("claims.0.threshold", "big", "'claims[0].threshold'"),
        ("generation", {"max_new_tokens": 0}, "'generation.max_new_tokens'"),
        ("generation", {"samples": 3}, "'generation.samples'"),
        ("generation", {"temprature": 0.5}, "did you mean 'temperature'"),
        ("prompts", {"template": "no slot", "inline": ["a"]}, "'prompts.template'"),
    ],
)
def test_malformed_suite_names_the_field(path: str, value: Any, needle: str) -> None:
    with pytest.raises(SuiteError) as err:
        V.parse_suite(_with(path, value), "bad.yaml")
    assert needle in str(err.value) and "bad.yaml" in str(err.value)


def test_malformed_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        V.load_suite(path)
    with pytest.raises(SuiteError, match="not found"):
        V.load_suite(tmp_path / "missing.yaml")


def test_missing_baseline_is_an_error() -> None:
    data = _with("conditions", [{"name": "abl", "op": "ablate", "emotions": ["grim"]}])
    with pytest.raises(SuiteError, match="baseline"):
        V.parse_suite(data)


@pytest.mark.parametrize("name", ["desperate_to_hopeful", "dose_response", "necessity"])
def test_shipped_suites_parse(name: str) -> None:
    suite = V.load_suite(SUITES / f"{name}.yaml")
    assert suite.claims and suite.name == name
    assert V.suite_prompts(suite)  # the prompt file resolves from the suite's location


def test_prompt_files_jsonl_plain_and_errors(tmp_path: Path) -> None:
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"text": "a", "emotion": "sad", "x": 1}\n\n{"text": "b"}\n')
    assert V.load_prompts(jl) == [V.Prompt("a", "sad"), V.Prompt("b")]
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\nsecond prompt\n")
    assert [p.text for p in V.load_prompts(txt)] == ["first prompt", "second prompt"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(SuiteError, match=r"bad.jsonl line 2: needs a non-empty 'text'"):
        V.load_prompts(bad)


def test_select_prompts_is_stratified_by_label() -> None:
    prompts = [V.Prompt(f"{e}{i}", e) for e in "abc" for i in range(4)]
    assert [p.label for p in V.select_prompts(prompts, 5)] == ["a", "b", "c", "a", "b"]
    assert V.select_prompts([V.Prompt("x"), V.Prompt("y")], 1) == [V.Prompt("x")]


def test_expand_conditions_and_similar_emotion(tiny_vectors: EmotionVectors) -> None:
    suite = V.parse_suite({
        **MINIMAL,
        "conditions": [
            {"name": "baseline"},
            {"name": "add", "op": "add", "emotions": ["joyful", "grim"], "alphas": [-2, 4]},
            {"name": "rand", "op": "random_ablate", "seeds": 3},
            {"name": "other", "op": "ablate_similar", "like": "grim"},
            {"name": "ask", "op": "prompt", "instruction": "Be happy."},
        ],
        "claims": [],
    })
    names = [c.name for c in V.expand_conditions(suite, tiny_vectors)]
    assert names == ["baseline", "add:joyful:-2", "add:joyful:4", "add:grim:-2", "add:grim:4",
                     "rand:s1000", "rand:s1001", "rand:s1002", "other", "ask"]
    other = V.expand_conditions(suite, tiny_vectors)[-2]
    assert other.emotion in ("joyful", "edgy") and other.layers == (tiny_vectors.chosen_layer,)


# --- per-row edits ---------------------------------------------------------------------------


def test_mixed_condition_batch_matches_separate_runs(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    """A batch mixing conditions (Edit.rows) gives each row what a run of its condition alone gives."""
    prompts = ["abcdef", "ghijkl"]  # same length: identical padding in every batch
    layer = 1
    cfg = GenerationConfig(max_new_tokens=8, batch_size=8)
    add = build_edits(tiny_vectors, [layer], add={"joyful": 6.0})
    abl = build_edits(tiny_vectors, [layer], ablate=["grim"])
    want = generate(tiny, prompts, cfg) + generate(tiny, prompts, cfg, edits=add) + generate(tiny, prompts, cfg, edits=abl)
    mixed = [dataclasses.replace(e, rows=(2, 3)) for e in add] + [dataclasses.replace(e, rows=(4, 5)) for e in abl]
    got = generate(tiny, prompts * 3, cfg, edits=mixed)
    assert got == want
    assert got[:2] != got[2:4]


# --- planted causal direction on the tiny model ------------------------------------------------

READ_LAYER, EDIT_LAYER = 2, 3


def _planted(tiny: LoadedModel, vectors: EmotionVectors) -> EmotionVectors:
    """joyful at the edit layer = the unembedding of token "a" (adding it makes the model write "a");
    joyful at the read layer = the clean model's reading of "aaaa…". grim at the edit layer = random
    (a null direction with the same norm and operation)."""
    token = tiny.tokenizer("a", add_special_tokens=False)["input_ids"][0]
    unembed = tiny.model.get_output_embeddings().weight[token]
    read = torch.from_numpy(pooled_activations(tiny, ["a" * 16]).features[0, READ_LAYER]) - vectors.center[READ_LAYER]
    dirs = vectors.directions.clone()
    dirs[EDIT_LAYER, 0] = unembed / unembed.norm()
    dirs[READ_LAYER, 0] = read / read.norm()
    dirs[EDIT_LAYER, 1] = V.random_direction(vectors.hidden_size, 99)
    return dataclasses.replace(vectors, directions=dirs)


def _planted_suite(min_distinct2: float) -> V.Suite:
    return V.parse_suite({
        "name": "planted",
        "prompts": [f"prompt number {i} says hi" for i in range(8)],
        "generation": {"max_new_tokens": 12, "chat": False},
        "conditions": [
            {"name": "baseline"},
            {"name": "add", "op": "add", "emotions": ["joyful", "grim"], "alphas": [8], "layers": [EDIT_LAYER]},
            {"name": "random_add", "op": "random_add", "alphas": [8], "seeds": 3, "layers": [EDIT_LAYER]},
        ],
        "measurement": {"layer": READ_LAYER},
        "metrics": {"joy": {"kind": "reply", "emotion": "joyful"}},
        "coherence": {"min_distinct2": min_distinct2, "max_ppl_ratio": 100},
        "claims": [{"name": "planted", "condition": "add", "metric": "joy", "direction": "increase",
                    "controls": ["random_add"]}],
    })


@pytest.fixture(scope="module")
def planted_result(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> V.SuiteResult:
    return V.run_suite(_planted_suite(0.0), tiny, _planted(tiny, tiny_vectors), V.RunOptions(allow_random_claims=True))


def test_planted_direction_passes_and_null_direction_does_not(planted_result: V.SuiteResult) -> None:
    verdicts = {c["condition"]: c for c in planted_result.claims}
    assert verdicts["add:joyful"]["verdict"] == "pass", verdicts["add:joyful"]
    assert verdicts["add:joyful"]["ci"][0] > 0 and verdicts["add:joyful"]["p"] < 0.05
    assert verdicts["add:grim"]["verdict"] != "pass"
    assert planted_result.note and not planted_result.is_claim  # random weights: never a claim


def test_degenerate_condition_cannot_pass(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    result = V.run_suite(_planted_suite(0.5), tiny, _planted(tiny, tiny_vectors), V.RunOptions(allow_random_claims=True))
    claim = next(c for c in result.claims if c["condition"] == "add:joyful")
    assert claim["verdict"] == "inconclusive" and any("degenerate" in r for r in claim["reasons"])


def test_random_model_claims_are_refused_without_the_flag(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    result = V.run_suite(_planted_suite(0.0), tiny, _planted(tiny, tiny_vectors))
    assert {c["verdict"] for c in result.claims} == {"inconclusive"}
    assert "random weights" in result.claims[0]["reasons"][0]


def test_outputs_are_written(planted_result: V.SuiteResult, tmp_path: Path) -> None:
    written = V.write_outputs(planted_result, tmp_path / "out")
    names = {p.name for p in written}
    assert {"rows.csv", "summary.json", "summary.md", "means_joy.png", "dose_response.png"} <= names
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["suite"] == "planted" and summary["n"] == 8
    assert {c["verdict"] for c in summary["claims"]} <= {"pass", "fail", "inconclusive"}
    import pandas as pd

    rows = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert len(rows) == 8 * 6 and "reply" in rows and "reply_joyful" in rows


# --- CLI -------------------------------------------------------------------------------------


def test_cli_validate_json_strict_and_errors(tiny_vectors: EmotionVectors, tmp_path: Path) -> None:
    from steerlab.cli import cli

    vec = save_vectors(tiny_vectors, tmp_path / "v.safetensors")
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello there\nanother one\nthird prompt\n")
    suite = dict(MINIMAL, generation={"max_new_tokens": 4, "chat": False}, vectors=str(vec))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    runner = CliRunner()
    args = ["validate", str(path), "--prompts", str(prompts), "--out", str(tmp_path / "o"), "--json"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == {"suite", "n", "claims", "conditions"} and out["n"] == 3
    assert out["claims"][0]["verdict"] == "inconclusive"  # random weights
    assert set(out["claims"][0]) == {"name", "verdict", "effect", "ci", "p"}
    assert runner.invoke(cli, [*args, "--strict"]).exit_code == 1
    path.write_text(yaml.safe_dump(dict(suite, claims=[{"name": "c"}])))
    bad = runner.invoke(cli, args)
    assert bad.exit_code != 0 and "claims[0].condition" in str(bad.exception)


# --- the embedded model ----------------------------------------------------------------------


@pytest.mark.slow
def test_suite_end_to_end_on_embedded_model(embedded: LoadedModel, tmp_path: Path) -> None:
    from steerlab.vectors import load_vectors
    from tests.conftest import SHIPPED

    path = SHIPPED if SHIPPED.exists() else Path("/tmp/v/emotions.safetensors")
    if not path.exists():
        pytest.skip("no vectors for the embedded model: run `steerlab extract`")
    suite = V.load_suite(SUITES / "desperate_to_hopeful.yaml")
    suite = dataclasses.replace(
        suite,
        generation=dataclasses.replace(suite.generation, max_new_tokens=12),
        conditions=tuple(c for c in suite.conditions if c.op in ("baseline", "ablate", "random_ablate"))[:3],
        claims=suite.claims[:1],
    )
    suite = dataclasses.replace(suite, claims=(dataclasses.replace(suite.claims[0], controls=("random_ablate",)),))
    result = V.run_suite(suite, embedded, load_vectors(path), V.RunOptions(n=4))
    assert result.is_claim and len(result.prompts) == 4
    assert result.claims[0]["verdict"] in ("pass", "fail", "inconclusive") and result.claims[0]["n"] >= 2
    assert all(np.isfinite(row["ppl_ratio"]) for row in result.coherence)
    V.write_outputs(result, tmp_path)
    assert (tmp_path / "summary.md").read_text().startswith("# desperate_to_hopeful")


def test_reply_perplexity_matches_an_unpadded_pass(tiny: LoadedModel) -> None:
    import math

    contexts, replies = ["hello there", "a much longer context here", "x"], ["abc def", "xy", ""]
    got = V.reply_perplexity(tiny, contexts, replies)
    for ctx, reply, value in zip(contexts[:2], replies[:2], got[:2]):
        a = tiny.tokenizer(ctx)["input_ids"]
        b = tiny.tokenizer(" " + reply, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([a + b])
        with torch.inference_mode():
            logp = torch.log_softmax(tiny.model(ids).logits[0, :-1].float(), -1)
        nll = -logp[len(a) - 1 :].gather(-1, ids[0, len(a) :, None]).mean()
        assert value == pytest.approx(math.exp(float(nll)), rel=1e-4)
    assert np.isnan(got[2])
