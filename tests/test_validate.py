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
from steerlab.core.errors import SuiteError
from steerlab.core.vectors import EmotionVectors, save_vectors
from steerlab.model.activations import pooled_activations
from steerlab.model.models import LoadedModel
from steerlab.steer.edits import build_edits, random_direction
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.validate import rule as R
from steerlab.validate.calibration import Calibration
from steerlab.validate.claims import evaluate_claims
from steerlab.validate.conditions import condition_edits
from steerlab.validate.decide import Readings, _outside
from steerlab.validate.outputs import CLAIM_KEYS

from .conftest import REPO

SUITES = REPO / "eval" / "suites"


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
        ("statistics", {"correction": "bonferoni"}, "'statistics.correction'"),
        ("statistics", {"alpha": 1.5}, "'statistics.alpha'"),
        ("claims.0.premise", "later", "'claims[0].premise'"),
        ("conditions.1.mode", "sideways", "'conditions[1].mode'"),
        ("metrics.m", {"kind": "specificity", "emotion": "grim"}, "'metrics.m.against'"),
        ("measurement", {"reader": "oracle"}, "'measurement.reader'"),
        ("generation", {"chat": False, "frame": [{"user": "hi", "assistant": "hello"}]}, "'generation.frame'"),
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


@pytest.mark.parametrize("name", sorted(p.stem for p in SUITES.glob("*.yaml")))
def test_shipped_suites_parse(name: str) -> None:
    suite = V.load_suite(SUITES / f"{name}.yaml")
    assert suite.claims and suite.name == name
    assert suite.vectors is None  # they run on the shipped vectors, never a pinned older file
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
    bad.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(SuiteError, match=r"bad.jsonl line 2: malformed JSON"):  # the one JSONL reader's error
        V.load_prompts(bad)


def test_select_prompts_is_stratified_by_label() -> None:
    prompts = [V.Prompt(f"{e}{i}", e) for e in "abc" for i in range(4)]
    assert [p.label for p in V.select_prompts(prompts, 5)] == ["a", "b", "c", "a", "b"]
    assert V.select_prompts([V.Prompt("x"), V.Prompt("y")], 1) == [V.Prompt("x")]


def test_expand_conditions_and_similar_emotion(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    suite = V.parse_suite(
        {
            **MINIMAL,
            "conditions": [
                {"name": "baseline"},
                {"name": "add", "op": "add", "emotions": ["joyful", "grim"], "alphas": [-2, 4]},
                {"name": "abl", "op": "ablate", "emotions": ["grim"]},
                {"name": "rand", "op": "random_ablate", "directions": 2, "match": "abl"},
                {"name": "other", "op": "ablate_similar", "like": "grim"},
                {"name": "ask", "op": "prompt", "instruction": "Be happy."},
            ],
            "claims": [],
        }
    )
    prompts = [V.Prompt("sun and cake"), V.Prompt("the phone rang twice"), V.Prompt("dust on the table")]
    reference = Calibration(tiny, tiny_vectors, ["a quiet walk to the shop", "the kettle is on"])
    cal = Calibration(tiny, tiny_vectors, [p.text for p in prompts], reference)
    conditions = V.expand_conditions(suite, tiny_vectors, prompts, cal)
    assert [c.name for c in conditions] == [
        "baseline",
        "add:joyful:-2",
        "add:joyful:4",
        "add:grim:-2",
        "add:grim:4",
        "abl",
        "rand:d0",
        "rand:d1",
        "other",
        "ask",
    ]
    other = conditions[-2]
    assert other.emotion in ("joyful", "edgy") and other.layers == (tiny_vectors.steering_layer,)
    # the population keeps, of the prompts' three pairs, the two whose ablation displaces tokens most
    # like the emotion ablation does; each direction is the unit difference of a pair's mean activations
    target = conditions[5].expected_displacement
    layer = tiny_vectors.steering_layer
    pairs = [(0, 1), (0, 2), (1, 2)]
    moved = {p: cal.displacement({layer: cal.direction(p, layer)}, "mean") for p in pairs}
    best = sorted(pairs, key=lambda p: abs(moved[p] - target))[:2]
    assert [c.pair for c in conditions[6:8]] == best
    for rand in conditions[6:8]:
        assert rand.pair is not None and rand.expected_displacement == pytest.approx(moved[rand.pair])
        assert float(rand.direction[layer].norm()) == pytest.approx(1.0)
    # mean-ablation sets the projection to the reference messages' mean, not the corpus class means
    d = tiny_vectors.direction("grim", layer)
    (edit,) = condition_edits(conditions[5], tiny_vectors, None)
    assert edit.value == pytest.approx(reference.mean_projection(d, layer, False))
    assert edit.value != pytest.approx(tiny_vectors.mean_projection(d, layer))
    (rand_edit,) = condition_edits(conditions[6], tiny_vectors, None)
    assert rand_edit.value == pytest.approx(reference.mean_projection(conditions[6].direction[layer], layer, False))


def test_matched_random_ablation_displaces_like_the_emotion_ablation(
    tiny: LoadedModel, tiny_vectors: EmotionVectors
) -> None:
    suite = V.parse_suite(
        {
            "name": "match",
            "prompts": [
                "sun and cake and songs all day",
                "the phone rang twice at night",
                "rain on the window again",
                "a letter came from the bank",
            ],
            "generation": {"max_new_tokens": 6, "chat": False},
            "conditions": [
                {"name": "baseline"},
                {"name": "abl", "op": "ablate", "emotions": ["grim"], "layers": [1]},
                {"name": "rand", "op": "random_ablate", "directions": 3, "match": "abl", "layers": [1]},
                {
                    "name": "two",
                    "op": "random_ablate",
                    "directions": 2,
                    "seed": 5,
                    "layers": [1],
                    "per_prompt": 1,
                    "samples": 1,
                },
            ],
            "metrics": {"m": {"kind": "reply", "emotion": "grim"}},
            "measurement": {"reader": "vector", "layer": 2},
            "claims": [{"name": "c", "condition": "abl", "metric": "m", "direction": "decrease", "controls": ["rand"]}],
        }
    )
    result = V.run_suite(suite, tiny, tiny_vectors, V.RunOptions(allow_random_claims=True))
    q = {row["name"]: row for row in result.quality}
    assert all(np.isfinite(row["displacement"]) and row["displacement"] > 0 for n, row in q.items() if n != "baseline")
    assert np.isnan(q["baseline"]["displacement"])
    for name in ("rand:d0", "rand:d1", "rand:d2"):
        assert q[name]["displacement"] == pytest.approx(q["abl"]["displacement"], rel=0.5)
    assert q["two:d0"]["pair"] != q["two:d1"]["pair"]
    # per_prompt 1: the prompts take the population's two directions in turn, one reply each
    two = [i for i, c in enumerate(result.conditions) if c.group == "two"]
    assert [result.conditions[i].prompts for i in two] == [(0, 2), (1, 3)]
    assert [[len(per) for per in result.replies[i]] for i in two] == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert (
        np.isnan(result.readings.replies[two[0], 1]).all() and np.isfinite(result.readings.replies[two[0], 0, 0]).any()
    )


# --- per-row edits ---------------------------------------------------------------------------


def test_mixed_condition_batch_matches_separate_runs(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    """A batch mixing conditions (Edit.rows) gives each row what a run of its condition alone gives."""
    prompts = ["abcdef", "ghijkl"]  # same length: identical padding in every batch
    layer = 1
    cfg = GenerationConfig(max_new_tokens=8, batch_size=8)
    add = build_edits(tiny_vectors, [layer], add={"joyful": 6.0})
    abl = build_edits(tiny_vectors, [layer], ablate=["grim"])
    want = (
        generate(tiny, prompts, cfg) + generate(tiny, prompts, cfg, edits=add) + generate(tiny, prompts, cfg, edits=abl)
    )
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
    dirs[EDIT_LAYER, 1] = random_direction(vectors.hidden_size, 99)
    return dataclasses.replace(vectors, directions=dirs)


def _planted_suite(min_distinct2: float) -> V.Suite:
    return V.parse_suite(_planted_dict(min_distinct2))


def _planted_dict(min_distinct2: float = 0.0) -> dict[str, Any]:
    return {
        "name": "planted",
        "prompts": [f"prompt number {i} says hi" for i in range(8)],
        "generation": {"max_new_tokens": 12, "chat": False},
        "conditions": [
            {"name": "baseline"},
            {"name": "add", "op": "add", "emotions": ["joyful", "grim"], "alphas": [8], "layers": [EDIT_LAYER]},
            {"name": "random_add", "op": "random_add", "alphas": [8], "directions": 6, "layers": [EDIT_LAYER]},
        ],
        "measurement": {"layer": READ_LAYER, "reader": "vector"},
        "metrics": {"joy": {"kind": "reply", "emotion": "joyful"}},
        # The random model writes loops: only the distinct-2 limit under test may flag a condition, and
        # the loop detector is off so that its replies are read.
        "coherence": {
            "min_distinct2": min_distinct2,
            "max_ppl_ratio": 100,
            "max_degenerate_share": 1.0,
            "max_repeat_share": 1.0,
            "min_compression": 0.0,
            "max_markup_share": 1.0,
        },
        "claims": [
            {
                "name": "planted",
                "condition": "add",
                "metric": "joy",
                "direction": "increase",
                "controls": ["random_add"],
            }
        ],
    }


@pytest.fixture(scope="module")
def planted_result(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> V.SuiteResult:
    return V.run_suite(_planted_suite(0.0), tiny, _planted(tiny, tiny_vectors), V.RunOptions(allow_random_claims=True))


def test_planted_direction_passes_and_null_direction_does_not(planted_result: V.SuiteResult) -> None:
    verdicts = {c["condition"]: c for c in planted_result.claims}
    assert verdicts["add:joyful"]["verdict"] == "pass", verdicts["add:joyful"]
    assert verdicts["add:joyful"]["ci"][0] > 0 and verdicts["add:joyful"]["p_adj"] < 0.05
    assert verdicts["add:grim"]["verdict"] != "pass"
    assert planted_result.note and not planted_result.is_claim  # random weights: never a claim


def test_every_phase_of_a_suite_is_reported(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    steps: list[tuple[str, int, int]] = []
    options = V.RunOptions(allow_random_claims=True)
    V.run_suite(_planted_suite(0.0), tiny, _planted(tiny, tiny_vectors), options, lambda *a: steps.append(a))
    names = list(dict.fromkeys(name for name, _, _ in steps))
    assert names == ["calibrate", "gates", "generate", "re-read", "measure", "validate readers", "decide"]
    for name in names:  # each phase opens and closes, so its line (and its heartbeat in logs) is its own
        mine = [(d, t) for n, d, t in steps if n == name]
        assert mine[-1][0] == mine[-1][1] > 0, (name, mine)


def test_degenerate_condition_cannot_pass(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    result = V.run_suite(
        _planted_suite(0.5), tiny, _planted(tiny, tiny_vectors), V.RunOptions(allow_random_claims=True)
    )
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
    assert {c["verdict"] for c in summary["claims"]} <= {"pass", "fail", "inconclusive", "not-testable"}
    assert all({"p", "p_adj", "ci", "premise", "reader"} <= set(c) for c in summary["claims"])
    assert all({"degenerate", "displacement", "echo_rate"} <= set(c) for c in summary["conditions"])
    import pandas as pd

    rows = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert len(rows) == 8 * 9 and "reply" in rows and "reply_joyful" in rows


def test_a_finished_run_read_again_gives_its_verdicts_without_generating(
    planted_result: V.SuiteResult,
    tiny: LoadedModel,
    tiny_vectors: EmotionVectors,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    V.write_outputs(planted_result, tmp_path / "first")
    import steerlab.validate.run as run_module

    def no_generation(*_: object, **__: object) -> None:
        raise AssertionError("--replies-from must not generate")

    monkeypatch.setattr(run_module, "generate_rows", no_generation)
    options = V.RunOptions(allow_random_claims=True, replies_from=str(tmp_path / "first"))
    again = V.run_suite(_planted_suite(0.0), tiny, _planted(tiny, tiny_vectors), options)
    assert again.replies == planted_result.replies
    for a, b in zip(again.claims, planted_result.claims, strict=True):
        assert (a["condition"], a["verdict"]) == (b["condition"], b["verdict"])
        assert a["effect"] == pytest.approx(b["effect"], abs=1e-4)
    moved = {q["name"]: q["displacement"] for q in planted_result.quality}
    assert all(q["displacement"] == pytest.approx(moved[q["name"]], nan_ok=True) for q in again.quality)
    assert "earlier run" in again.note
    other = V.parse_suite({**_planted_dict(), "name": "another"})
    with pytest.raises(SuiteError, match="holds suite 'planted', not 'another'"):
        V.run_suite(other, tiny, _planted(tiny, tiny_vectors), options)


def test_replies_from_a_run_whose_gate_fired_otherwise_are_refused(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from steerlab.read.gate import GateDecision
    from steerlab.validate.reuse import _check_gates

    rows: Any = SimpleNamespace(prompts=[SimpleNamespace(label="desperate"), SimpleNamespace(label="neutral")])
    then = {
        "gates": [
            {"condition": "g", "label": "desperate", "fired": 1},
            {"condition": "g", "label": "neutral", "fired": 0},
        ]
    }
    _check_gates(tmp_path, then, rows, {"g": [GateDecision(True, 1.0, 0.0), GateDecision(False, -1.0, 0.0)]})
    with pytest.raises(SuiteError, match="fires on 1 neutral messages now, on 0 then"):
        _check_gates(tmp_path, then, rows, {"g": [GateDecision(True, 1.0, 0.0), GateDecision(True, 1.0, 0.0)]})


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
    assert set(out) == {"suite", "n", "reader", "premises", "claims", "conditions", "warnings"} and out["n"] == 3
    assert out["claims"][0]["verdict"] == "inconclusive"  # random weights
    assert set(out["claims"][0]) == set(CLAIM_KEYS) >= {"p_family", "power", "mde", "controls"}
    refused = runner.invoke(cli, [*args, "--strict"])
    assert refused.exit_code != 0 and "--force" in str(refused.exception)  # --out exists
    assert runner.invoke(cli, [*args, "--strict", "--force"]).exit_code == 1
    path.write_text(yaml.safe_dump(dict(suite, claims=[{"name": "c"}])))
    bad = runner.invoke(cli, [*args, "--force"])
    assert bad.exit_code != 0 and "claims[0].condition" in str(bad.exception)


# --- the embedded model ----------------------------------------------------------------------


@pytest.mark.slow
def test_suite_end_to_end_on_embedded_model(embedded: LoadedModel, tmp_path: Path) -> None:
    from steerlab.core.vectors import load_vectors
    from tests.conftest import SHIPPED

    suite = V.load_suite(SUITES / "desperate_to_hopeful.yaml")
    keep = ("baseline", "baseline_premise", "ablate_desperate", "random_ablate")
    suite = dataclasses.replace(
        suite,
        generation=dataclasses.replace(suite.generation, max_new_tokens=12, samples=2),
        conditions=tuple(
            dataclasses.replace(c, directions=3) if c.name == "random_ablate" else c
            for c in suite.conditions
            if c.name in keep
        ),
        measurement=dataclasses.replace(suite.measurement, validate_on=None),
        claims=tuple(dataclasses.replace(c, controls=("random_ablate",)) for c in suite.claims[:2]),
    )
    result = V.run_suite(suite, embedded, load_vectors(SHIPPED), V.RunOptions(n=4))
    assert result.is_claim and len(result.prompts) == 4
    premise, claim = result.claims[0], result.claims[1]
    assert premise["compare_to"] == "none" and claim["premise"]["claim"] == premise["name"]
    assert claim["verdict"] in ("pass", "fail", "inconclusive", "not-testable")
    if premise["verdict"] != "pass":
        assert claim["verdict"] == "not-testable"
    shipped = load_vectors(SHIPPED)
    assert result.readings.reader == suite.measurement.reader == "judge"  # the reader validated on hopeful ratings
    assert result.readings.layer == shipped.reading_layer
    assert result.validation["judge"]["model_replies"]["n"] > 0  # validated on the model's own judged replies
    q = {row["name"]: row for row in result.quality}
    assert claim["controls"][0]["directions"] == 3
    # the calibration predicts what each ablation does to the user's message tokens while generating; the
    # population holds the pairs of prompts closest to the emotion ablation (4 prompts: 6 pairs to choose from)
    for name in ("ablate_desperate", "random_ablate:d0", "random_ablate:d1", "random_ablate:d2"):
        assert q[name]["displacement"] == pytest.approx(q[name]["expected_displacement"], rel=1e-3)
        assert q[name]["ablation_target"] is not None  # mean-ablation to the neutral messages' mean
    target = q["ablate_desperate"]["displacement"]
    gaps = [abs(q[f"random_ablate:d{j}"]["expected_displacement"] - target) for j in range(3)]
    assert gaps == sorted(gaps)
    assert all(np.isfinite(row["ppl_ratio"]) for row in result.quality)
    V.write_outputs(result, tmp_path)
    assert (tmp_path / "summary.md").read_text().startswith("# desperate_to_hopeful")


@pytest.mark.slow
def test_gate_suite_on_embedded_model(embedded: LoadedModel) -> None:
    from steerlab.core.vectors import load_vectors
    from tests.conftest import SHIPPED

    suite = V.load_suite(SUITES / "gate.yaml")
    suite = dataclasses.replace(
        suite,
        generation=dataclasses.replace(suite.generation, max_new_tokens=8),
        conditions=tuple(
            dataclasses.replace(c, directions=3, per_prompt=1) if c.name == "gated_random" else c
            for c in suite.conditions
        ),
        measurement=dataclasses.replace(suite.measurement, secondary=()),
    )
    result = V.run_suite(suite, embedded, load_vectors(SHIPPED), V.RunOptions(n=4))
    assert sorted(p.label or "" for p in result.prompts) == ["desperate", "desperate", "neutral", "neutral"]
    names = [c.name for c in result.conditions]
    base, gated = names.index("baseline"), names.index("gated_hopeful")
    for p, decision in enumerate(result.gates["gated_hopeful"]):
        if not decision.fired:  # greedy: an unfired gate gives the baseline's reply exactly
            assert result.replies[gated][p] == result.replies[base][p]
    assert {g["label"] for g in V.summary(result)["gates"]} == {"desperate", "neutral"}
    verdicts = {c["claim"]: c for c in result.claims}
    assert verdicts["gated steering leaves replies to neutral messages unchanged"]["prompts"] == "neutral"
    assert all(c["verdict"] in ("pass", "fail", "inconclusive") for c in result.claims)


def test_reply_perplexity_matches_an_unpadded_pass(tiny: LoadedModel) -> None:
    import math

    contexts, replies = ["hello there", "a much longer context here", "x"], ["abc def", "xy", ""]
    got = V.reply_perplexity(tiny, contexts, replies)
    for ctx, reply, value in zip(contexts[:2], replies[:2], got[:2], strict=True):
        a = tiny.tokenizer(ctx)["input_ids"]
        b = tiny.tokenizer(" " + reply, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([a + b])
        with torch.inference_mode():
            logp = torch.log_softmax(tiny.model(ids).logits[0, :-1].float(), -1)
        nll = -logp[len(a) - 1 :].gather(-1, ids[0, len(a) :, None]).mean()
        assert value == pytest.approx(math.exp(float(nll)), rel=1e-4)
    assert np.isnan(got[2])


# --- premises, correction, readers ---------------------------------------------------------------

GATED: dict[str, Any] = {
    "name": "gated",
    "prompts": ["x"],
    "conditions": [
        {"name": "baseline"},
        {"name": "add", "op": "add", "emotions": ["joyful"], "alphas": [4]},
        {"name": "premise_base", "op": "baseline"},
    ],
    "metrics": {"joy": {"kind": "reply", "emotion": "joyful"}},
    "claims": [
        {
            "name": "baseline replies read joyful",
            "condition": "premise_base",
            "compare_to": "none",
            "metric": "joy",
            "direction": "increase",
        },
        {
            "name": "adding joyful raises it",
            "condition": "add",
            "metric": "joy",
            "direction": "increase",
            "premise": "baseline replies read joyful",
        },
    ],
}


def _gated(baseline_level: float, correction: str = "holm") -> list[dict[str, Any]]:
    suite = V.parse_suite({**GATED, "statistics": {"correction": correction}})
    conditions = [
        V.Condition("baseline", "baseline", "baseline"),
        V.Condition("add", "add", "add", emotion="joyful", alpha=4.0, layers=(1,)),
        V.Condition("premise_base", "premise_base", "baseline"),
    ]
    prompts = [V.Prompt(f"p{i}") for i in range(16)]
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 0.1, size=(3, 16, 1, 3))
    scores[[0, 2], :, 0, 0] += baseline_level
    scores[1, :, 0, 0] = scores[0, :, 0, 0] + 1.0  # a large effect of adding
    readings = Readings("vector", 2, scores, np.zeros((16, 3)), np.zeros((3, 16, 1), dtype=bool))
    return evaluate_claims(suite, conditions, prompts, ["joyful", "grim", "edgy"], readings, [], set(), {}, True)


def test_a_premise_must_not_read_the_replies_of_the_claim_it_gates() -> None:
    shared = {**GATED, "claims": [{**GATED["claims"][0], "condition": "baseline"}, GATED["claims"][1]]}
    with pytest.raises(SuiteError, match="reads condition 'baseline' that this claim also reads"):
        V.parse_suite(shared)


def test_a_claim_whose_premise_fails_is_not_testable() -> None:
    premise, claim = _gated(-1.0)
    assert premise["verdict"] == "fail" and premise["compare_to"] == "none"
    assert claim["verdict"] == "not-testable" and "premise" in claim["reasons"][0]
    assert claim["p_adj"] < 0.05  # the effect itself is clear: only the missing premise blocks it
    premise, claim = _gated(+1.0)
    assert premise["verdict"] == "pass" and claim["verdict"] == "pass"
    assert claim["premise"] == {"claim": "baseline replies read joyful", "verdicts": ["pass"]}


def test_corrected_p_is_reported_beside_the_raw_p() -> None:
    for correction in ("holm", "bh", "none"):
        claims = _gated(+0.03, correction)
        for c in claims:
            assert c["p_adj"] >= c["p"] - 1e-12 and c["correction"] == correction
        if correction == "none":
            assert all(c["p_adj"] == pytest.approx(c["p"]) for c in claims)


def test_suite_reads_replies_in_context_with_the_named_reader(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    suite = V.parse_suite(
        {
            "name": "ctx",
            "prompts": ["sun and cake", "the phone rang twice"],
            "generation": {
                "max_new_tokens": 5,
                "chat": True,
                "frame": [{"user": "what time is it", "assistant": "about nine"}],
            },
            "conditions": [{"name": "baseline"}],
            "metrics": {"m": {"kind": "reply", "emotion": "grim"}},
            "measurement": {"reader": "vector", "layer": 2, "secondary": ["probe"]},
            "claims": [
                {"name": "c", "condition": "baseline", "compare_to": "none", "metric": "m", "direction": "increase"}
            ],
        }
    )
    result = V.run_suite(suite, tiny, tiny_vectors, V.RunOptions(allow_random_claims=True))
    from steerlab.read.readers import read_texts

    for p, prompt in enumerate(result.prompts):
        reply = result.replies[0][p][0]
        if reply.strip():
            want = read_texts(tiny, tiny_vectors, [reply], 2, "vector", contexts=[prompt.text])[0]
            np.testing.assert_allclose(result.readings.replies[0, p, 0], want, atol=1e-5)
    assert [r.reader for r in result.secondary] == ["probe"]
    assert "secondary" in result.claims[0] and set(result.claims[0]["secondary"]) == {"probe"}


def test_looping_is_judged_against_the_baseline() -> None:
    from steerlab.validate.measure import quality_table
    from steerlab.validate.spec import Coherence

    loop = "I'll be there. I'll be there. I'll be there. I'll be there."
    fine = ["The bus leaves at nine from the north stop.", "Add the flour slowly and keep stirring."]
    replies = [[[fine[0]], [loop]], [[loop], [fine[1]]], [[loop], [loop]]]  # baseline loops on half
    ppl = np.ones((3, 2, 1))
    rows = quality_table(
        ["baseline", "same", "worse"], replies, ["a", "b"], ppl, ppl, [np.nan, 1.0, 1.0], 0, Coherence()
    )
    assert [r["degenerate_replies"] for r in rows] == [0.5, 0.5, 1.0]
    assert [r["degenerate"] for r in rows] == [False, False, True]
    assert "vs 50% at baseline" in rows[2]["why"]


def test_a_suite_without_reader_or_layer_uses_the_vector_files_validated_choice(
    tiny: LoadedModel, tiny_vectors: EmotionVectors
) -> None:
    v = dataclasses.replace(
        tiny_vectors, meta={**tiny_vectors.meta, "reading": {"reader": "probe"}, "reading_layer": 2}
    )
    assert (v.default_reader, v.reading_layer) == ("probe", 2)
    suite = V.parse_suite({**MINIMAL, "generation": {"max_new_tokens": 3, "chat": False}})
    result = V.run_suite(suite, tiny, v, V.RunOptions(allow_random_claims=True))
    assert (result.readings.reader, result.readings.layer) == ("probe", 2)
    assert result.conditions[1].layers == (v.steering_layer,)


def test_a_reader_never_validated_on_the_models_replies_is_refused(
    tiny: LoadedModel, tiny_vectors: EmotionVectors
) -> None:
    real = dataclasses.replace(tiny, is_random=False)
    vectors = _planted(tiny, tiny_vectors)
    vectors = dataclasses.replace(vectors, meta={**vectors.meta, "is_random": False})
    with pytest.raises(SuiteError, match=r"never validated on random:tiny-gemma2's own replies.*--unvalidated-reader"):
        V.run_suite(_planted_suite(0.0), real, vectors)
    result = V.run_suite(_planted_suite(0.0), real, vectors, V.RunOptions(unvalidated_reader=True))
    assert any("never validated" in w for w in result.warnings)
    assert all(any("not validated on this model's own replies" in r for r in c["reasons"]) for c in result.claims)
    record = {"model": real.model_id, "readers": {"vector": {"n": 9, "macro_auroc": 0.7}}}
    record["incoherence"] = {"rule": {"recall": 0.5}}
    judged = dataclasses.replace(vectors, meta={**vectors.meta, "judged_validation": record})
    result = V.run_suite(_planted_suite(0.0), real, judged)
    assert result.validation["vector"]["model_replies"]["macro_auroc"] == 0.7
    assert not any("not validated" in r for c in result.claims for r in c["reasons"])


def test_pass_needs_a_non_degenerate_control_and_the_table_shows_the_deciding_p() -> None:
    spec = {
        **GATED,
        "conditions": [
            {"name": "baseline"},
            {"name": "add", "op": "add", "emotions": ["joyful"], "alphas": [4]},
            {"name": "random_add", "op": "random_add", "alphas": [4], "directions": 2},
        ],
        "claims": [{**GATED["claims"][1], "premise": None, "controls": ["random_add"]}],
    }
    spec["claims"][0].pop("premise")
    suite = V.parse_suite(spec)
    conditions = [
        V.Condition("baseline", "baseline", "baseline"),
        V.Condition("add", "add", "add", emotion="joyful", alpha=4.0, layers=(1,)),
        V.Condition("random_add:d0", "random_add", "random_add", alpha=4.0, layers=(1,)),
        V.Condition("random_add:d1", "random_add", "random_add", alpha=4.0, layers=(1,)),
    ]
    prompts = [V.Prompt(f"p{i}") for i in range(16)]
    scores = np.random.default_rng(0).normal(0, 0.1, size=(4, 16, 1, 3))
    scores[1, :, 0, 0] += 1.0  # adding joyful clearly raises joyful, the random additions do not
    readings = Readings("vector", 2, scores, np.zeros((16, 3)), np.zeros((4, 16, 1), dtype=bool))

    def verdict(degenerate: set[str]) -> dict[str, Any]:
        (claim,) = evaluate_claims(
            suite, conditions, prompts, ["joyful", "grim", "edgy"], readings, [], degenerate, {}, True
        )
        return claim

    controlled = verdict(set())
    assert controlled["verdict"] == "pass" and controlled["p_family"] == "pass"
    (family,) = controlled["controls"]
    assert (family["family"], family["directions"], family["non_degenerate"]) == ("random_add", 2, 2)
    assert [t["name"] for t in family["tests"]] == ["random_add"] and family["tests"][0]["directions"] == 2
    alone = verdict({"random_add:d0", "random_add:d1"})
    assert alone["verdict"] == "inconclusive" and alone["reasons"][0].startswith("uncontrolled")
    assert alone["controls"][0]["non_degenerate"] == 0
    scores[1, :, 0, 0] -= 2.0  # now adding joyful lowers it: a FAIL, whose own p is shown
    failed = verdict(set())
    assert failed["verdict"] == "fail" and failed["p_family"] == "fail"
    assert failed["p_adj"] == failed["p_fail_adj"] < 0.05 and failed["p_pass_adj"] > 0.5
    assert failed["effect"] < 0 and failed["ci"][1] < 0  # oriented: negative means against the claim
    suite = dataclasses.replace(suite, claims=(dataclasses.replace(suite.claims[0], direction="decrease"),))
    lowered = verdict(set())  # the same readings, claimed as "adding joyful lowers joyful": as claimed
    assert lowered["verdict"] == "pass" and lowered["effect"] == pytest.approx(-failed["effect"])
    assert lowered["ci"][0] > 0 and all(t["effect"] > 0 for t in lowered["controls"][0]["tests"])


def test_a_degenerate_condition_can_neither_pass_nor_fail() -> None:
    claims = [R.ClaimData("down", main=np.full(20, -1.0) + np.linspace(0, 0.1, 20), degenerate=("add",))]
    (j,) = R.judge(claims, n_boot=1000)
    assert j.verdict == "inconclusive" and j.fail_reasons == () and "would fail" in j.reasons[0]


def test_gated_conditions_edit_only_where_the_gate_fires_and_claims_read_their_label(
    tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path
) -> None:
    spec = {
        "name": "gated",
        "prompts": ["sun and cake and songs", "the phone rang twice", "rain on the window", "a letter came"],
        "generation": {"max_new_tokens": 6, "chat": False},
        "conditions": [
            {"name": "baseline"},
            {"name": "never", "op": "add", "emotions": ["joyful"], "alphas": [8], "when": "joyful>1e9"},
            {"name": "always", "op": "add", "emotions": ["joyful"], "alphas": [8], "when": "joyful>-1e9"},
        ],
        "metrics": {"joy": {"kind": "reply", "emotion": "joyful"}},
        "measurement": {"reader": "vector"},
        "coherence": {
            "max_degenerate_share": 1.0,
            "max_repeat_share": 1.0,
            "min_compression": 0.0,
            "max_markup_share": 1.0,
        },
        "claims": [
            {"name": "same", "condition": "never", "metric": "joy", "direction": "unchanged", "margin": 0.1},
            {"name": "same, default margin", "condition": "never", "metric": "joy", "direction": "unchanged"},
        ],
    }
    result = V.run_suite(V.parse_suite(spec), tiny, tiny_vectors, V.RunOptions(allow_random_claims=True))
    assert result.replies[1] == result.replies[0] and result.replies[2] != result.replies[0]
    assert [d.fired for d in result.gates["never"]] == [False] * 4 and all(d.fired for d in result.gates["always"])
    claim, default = result.claims
    assert claim["direction"] == "unchanged" and claim["margin"] == 0.1 and claim["effect"] == 0.0
    # identical replies: the default margin is half the baseline's spread between prompts, never the (zero)
    # spread of the changes under test, so equivalence can be shown
    baseline = result.readings.replies[0][:, 0, tiny_vectors.index("joyful")]  # one sample per prompt
    read = baseline[np.isfinite(baseline)]  # a reply too broken to read has no reading
    assert default["margin"] == pytest.approx(0.5 * np.std(read, ddof=1)) and default["margin"] > 0
    assert default["p_pass_adj"] < 0.05  # shown inside (the tiny model's loops keep it from a PASS)
    table = {(g["condition"], g["label"]): g["fired"] for g in V.summary(result)["gates"]}
    assert table == {("never", "-"): 0, ("always", "-"): 4}
    labelled = [V.Prompt("sun and cake", "joyful"), V.Prompt("the phone rang", "neutral")]
    with pytest.raises(SuiteError, match="no prompt has the label 'grim'"):
        _outside(dataclasses.replace(V.parse_suite(spec).claims[0], prompts="grim"), labelled)
    assert list(_outside(dataclasses.replace(V.parse_suite(spec).claims[0], prompts="neutral"), labelled)) == [
        True,
        False,
    ]
