"""Gates: the --when syntax, the calibration rule, and the token-identical property where a gate is shut."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from steerlab.core.errors import InterventionError, SteerlabError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.models import LoadedModel
from steerlab.read.comparison import compare
from steerlab.read.gate import (
    Gate,
    GateMessages,
    TokenGate,
    calibrate_gates,
    gate_for,
    generate_gated,
    load_gate_messages,
    parse_when,
    read_gate,
    refresh_gates,
    threshold_at,
    token_gate_for,
    token_gated,
)
from steerlab.steer.edits import build_edits
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.steer.interventions import Displacement

from .conftest import REPO, one_line_error, run

PROMPTS = ["rain on the cold grave at night", "we laughed all day in the park", "the bus leaves at nine"]
GRIM = ["nobody came to the door again", "dust on the empty table", "a long grey winter", "the letter never came"]
NEUTRAL = [f"the meeting moved to room {k} at {k % 12 + 1} o'clock" for k in range(24)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("desperate", ("desperate", None)),
        ("desperate>0.2", ("desperate", 0.2)),
        (" Desperate > -1.5 ", ("desperate", -1.5)),
        ("calm>1e-3", ("calm", 0.001)),
    ],
)
def test_when_syntax(spec: str, expected: tuple[str, float | None]) -> None:
    assert parse_when(spec) == expected


@pytest.mark.parametrize("spec", ["", "desperate>", "desperate>abc", ">0.2", "desperate<0.2", "desperate>nan", "a b"])
def test_bad_when_is_one_error_naming_it(spec: str) -> None:
    with pytest.raises(SteerlabError, match="cannot parse --when"):
        parse_when(spec)


def test_threshold_leaves_at_most_the_rate_above_it() -> None:
    readings = np.random.default_rng(0).normal(size=60)
    t = threshold_at(readings, 0.05)
    assert (readings > t).sum() == 3  # floor(0.05 * 60): exactly the allowed number, not fewer
    assert t == np.sort(readings)[-4]
    assert threshold_at(np.arange(100.0), 0.05) == 94.0
    assert threshold_at(np.arange(10.0), 0.0) == 9.0  # no false alarm allowed: the highest reading
    assert (np.arange(10.0) > threshold_at(np.arange(10.0), 0.25)).sum() == 2
    for bad in (np.array([]), np.array([1.0, np.nan])):
        with pytest.raises(SteerlabError, match="neutral"):
            threshold_at(bad)
    with pytest.raises(SteerlabError, match="false-positive rate"):
        threshold_at(readings, 1.0)


def test_builtin_messages_are_labelled_and_distinct_from_the_hidden_set() -> None:
    msgs = load_gate_messages()
    assert msgs.labels.count("desperate") >= 60 and msgs.labels.count("neutral") >= 60
    hidden = [json.loads(line) for line in (REPO / "eval/data/gate_hidden.jsonl").read_text().splitlines()]
    suites = [
        json.loads(line)["text"]
        for name in ("desperate_users.jsonl", "neutral_prompts.jsonl")
        for line in (REPO / "eval/data" / name).read_text().splitlines()
    ]
    assert sum(h["label"] == "desperate" for h in hidden) >= 40 and sum(h["label"] == "neutral" for h in hidden) >= 40
    assert not set(msgs.texts) & ({h["text"] for h in hidden} | set(suites))
    assert len(set(msgs.texts)) == len(msgs.texts)


def test_bad_messages_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "hi"}\n')
    with pytest.raises(SteerlabError, match="line 1"):
        load_gate_messages(path)
    with pytest.raises(SteerlabError, match="cannot read"):
        load_gate_messages(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def gated_vectors(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> EmotionVectors:
    texts = GRIM * 3 + NEUTRAL
    msgs = GateMessages(texts, ["grim"] * 12 + ["neutral"] * 24, "test", "0" * 64)
    return calibrate_gates(tiny, tiny_vectors, msgs)


def test_calibration_is_stored_with_its_provenance_and_holds(
    tiny: LoadedModel, tiny_vectors: EmotionVectors, gated_vectors: EmotionVectors
) -> None:
    rec = gated_vectors.meta["gates"]["grim"]
    assert set(gated_vectors.meta["gates"]) == {"grim"}  # only labelled emotions get a gate
    assert rec["messages"] == "test" and rec["n_neutral"] == 24 and rec["fpr"] == 0.05 and "rule" in rec
    assert (rec["reader"], rec["layer"], rec["token_layer"]) == (
        tiny_vectors.default_reader,
        tiny_vectors.reading_layer,
        tiny_vectors.steering_layer,
    )
    gate = gate_for(gated_vectors, "grim")
    assert gate == Gate("grim", rec["threshold"], rec["reader"], rec["layer"], "calibrated")
    fired = [d.fired for d in read_gate(tiny, gated_vectors, gate, NEUTRAL)]
    assert sum(fired) == round(rec["calibration_false_alarm_rate"] * 24) <= 0.05 * 24
    assert token_gate_for(gated_vectors, "grim").threshold == rec["token_threshold"]
    for name in ("directions", "probe_weight", "center"):  # calibration adds metadata only
        assert getattr(gated_vectors, name) is getattr(tiny_vectors, name)


def test_missing_threshold_and_unknown_emotion(tiny_vectors: EmotionVectors, gated_vectors: EmotionVectors) -> None:
    with pytest.raises(SteerlabError, match=r"no calibrated gate threshold.*calibrate-gate"):
        gate_for(tiny_vectors, "grim")
    with pytest.raises(SteerlabError, match="no calibrated gate threshold"):
        token_gate_for(gated_vectors, "joyful")
    with pytest.raises(SteerlabError, match="unknown emotion"):
        gate_for(gated_vectors, "desperat>0.1")
    given = gate_for(tiny_vectors, "joyful>0.3")
    assert (given.threshold, given.source, given.reader) == (0.3, "given", tiny_vectors.default_reader)


def _midway_gate(lm: LoadedModel, v: EmotionVectors, prompts: list[str]) -> tuple[Gate, list[bool]]:
    """A gate whose threshold lies between the readings, so some prompts fire and some do not."""
    probe = Gate("grim", float("-inf"), v.default_reader, v.reading_layer)
    readings = sorted(d.reading for d in read_gate(lm, v, probe, prompts))
    gate = replace(probe, threshold=(readings[0] + readings[1]) / 2, source="given")
    return gate, [d.fired for d in read_gate(lm, v, gate, prompts)]


def test_unfired_rows_are_the_baseline_token_for_token(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    gate, fired = _midway_gate(tiny, tiny_vectors, PROMPTS)
    assert 0 < sum(fired) < len(PROMPTS)
    config = GenerationConfig(max_new_tokens=8, batch_size=2)  # rows cross a batch boundary
    rows = compare(tiny, tiny_vectors, PROMPTS, add={"joyful": 40}, config=config, gate=gate)
    always = compare(tiny, tiny_vectors, PROMPTS, add={"joyful": 40}, config=config)
    for row, fired_row, on in zip(always, rows, fired, strict=True):
        assert fired_row.gate is not None and fired_row.gate.fired == on
        if on:
            assert fired_row.steered == row.steered != row.baseline  # the edit acts as when always on
            assert fired_row.displacement > 0
        else:
            assert fired_row.steered == fired_row.baseline  # the shut gate's reply is the baseline's
            assert fired_row.displacement == 0.0
        assert fired_row.to_json(tiny_vectors.emotions)["gate"]["fired"] == on


def test_generate_gated_is_the_api_of_the_same_property(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    gate, fired = _midway_gate(tiny, tiny_vectors, PROMPTS)
    edits = build_edits(tiny_vectors, [1], add={"joyful": 40})
    config = GenerationConfig(max_new_tokens=6, batch_size=2)
    replies, decisions = generate_gated(tiny, tiny_vectors, gate, PROMPTS, config, edits)
    base, steered = generate(tiny, PROMPTS, config), generate(tiny, PROMPTS, config, edits)
    assert [d.fired for d in decisions] == fired
    assert replies == [s if on else b for b, s, on in zip(base, steered, fired, strict=True)]


def test_edit_rows_index_prompts_across_batches(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    edits = build_edits(tiny_vectors, [1], add={"joyful": 40})
    config = GenerationConfig(max_new_tokens=6, batch_size=1)
    base = generate(tiny, PROMPTS, config)
    steered = generate(tiny, PROMPTS, config, edits)
    only_last = generate(tiny, PROMPTS, config, [replace(e, rows=(2,)) for e in edits])
    assert only_last == [base[0], base[1], steered[2]] and steered[2] != base[2]


def test_running_gate_switches_per_token(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    edits = build_edits(tiny_vectors, [1], add={"joyful": 40})
    config = GenerationConfig(max_new_tokens=6)
    base, steered = generate(tiny, PROMPTS, config), generate(tiny, PROMPTS, config, edits)
    reader = tiny_vectors.default_reader
    for threshold, expected in ((-1e9, steered), (1e9, base)):
        record = Displacement()
        gate = TokenGate("grim", threshold, reader)
        assert generate(tiny, PROMPTS, config, token_gated(tiny_vectors, edits, gate), record=record) == expected
        flags = [record.gated[row] for row in range(len(PROMPTS))]
        assert all(len(f) == 5 for f in flags)  # each generated token read back, all but the last
        assert all(all(f) if threshold < 0 else not any(f) for f in flags)


def test_running_gate_needs_one_site_and_its_calibrated_layer(gated_vectors: EmotionVectors) -> None:
    gate = token_gate_for(gated_vectors, "grim")
    with pytest.raises(InterventionError, match="one layer"):
        token_gated(gated_vectors, build_edits(gated_vectors, [0, 1], add={"joyful": 4}), gate)
    other = next(la for la in range(gated_vectors.n_layers) if la != gate.layer)
    with pytest.raises(InterventionError, match="calibrated at layer"):
        token_gated(gated_vectors, build_edits(gated_vectors, [other], add={"joyful": 4}), gate)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--when", "grim>"], "cannot parse --when"),
        (["--when-token", "grim<2"], "cannot parse --when-token"),
        (["--when", "grim"], "no calibrated gate threshold"),
        (["--when", "grum>0.1"], "unknown emotion"),
    ],
)
def test_gate_cli_errors(
    extra: list[str],
    needle: str,
    tiny_vec_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["steer", "a cold wind", "--emotion", "joyful", "--vectors", str(tiny_vec_file), *extra]
    code, _, err = run(argv, capsys, monkeypatch)
    one_line_error(code, err, needle)
    assert "loading" not in err.lower()  # refused before the model loads


def test_calibrate_gate_command(
    tiny_vec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from steerlab.core.vectors import load_vectors

    msgs = tmp_path / "m.jsonl"
    rows = [{"text": t, "label": "grim"} for t in GRIM] + [{"text": t, "label": "neutral"} for t in NEUTRAL]
    msgs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "gated.safetensors"
    argv = ["calibrate-gate", "--vectors", str(tiny_vec_file), "--messages", str(msgs), "--out", str(out)]
    code, stdout, err = run(argv, capsys, monkeypatch)
    assert code == 0, err
    gates = load_vectors(out).meta["gates"]
    assert set(gates) == {"grim"} and f"grim: threshold {gates['grim']['threshold']:+.4f}" in stdout
    assert json.loads(out.with_suffix(".json").read_text())["gates"]["grim"]["sha256"] == gates["grim"]["sha256"]
    code, _, err = run(argv, capsys, monkeypatch)  # an existing output needs --force
    one_line_error(code, err, "--force")
    few = tmp_path / "few.jsonl"
    few.write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))
    bad_out = tmp_path / "bad.safetensors"
    argv = ["calibrate-gate", "--vectors", str(tiny_vec_file), "--messages", str(few), "--out", str(bad_out)]
    code, _, err = run(argv, capsys, monkeypatch)
    one_line_error(code, err, ">= 20 neutral")
    assert not bad_out.exists()


def test_fit_reader_drops_gates_it_cannot_recalibrate(tiny: LoadedModel, gated_vectors: EmotionVectors) -> None:
    notes: list[str] = []
    refreshed = refresh_gates(tiny, gated_vectors, note=notes.append)
    assert refreshed.meta["gates"] == {} and "grim" in notes[0] and "calibrate-gate" in notes[0]


def test_extract_records_why_a_file_has_no_gate(tiny_vectors: EmotionVectors) -> None:
    assert tiny_vectors.meta["gates"] == {} and "calibrate-gate" in tiny_vectors.meta["gate_note"]


SHIPPED_GEMMA = REPO / "vectors" / "gemma-3-270m" / "emotions.safetensors"
REAL = [
    "I lost my job and can't pay rent next week, I don't know what to do.",
    "Describe the sound of a forest in the early morning.",
]


@pytest.mark.slow
def test_gated_steer_on_the_embedded_model(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped gate fires on the desperate message only; the shut gate's reply is the baseline's, and
    a running gate that lets every token through reproduces the message gate's steered reply exactly."""
    from steerlab.core.vectors import load_vectors

    base = ["steer", *REAL, "--vectors", str(SHIPPED_GEMMA), "--emotion", "hopeful", "--max-new-tokens", "12", "--json"]
    code, out, err = run([*base, "--when", "desperate"], capsys, monkeypatch)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    threshold = load_vectors(SHIPPED_GEMMA).meta["gates"]["desperate"]["threshold"]
    assert [r["gate"]["fired"] for r in rows] == [True, False]
    for r in rows:
        assert r["gate"]["threshold"] == round(threshold, 4)
        assert (r["gate"]["reading"] > r["gate"]["threshold"]) == r["gate"]["fired"]
    assert rows[0]["steered"]["text"] != rows[0]["baseline"]["text"]
    assert rows[1]["steered"]["text"] == rows[1]["baseline"]["text"] and rows[1]["displacement"] == 0
    code, out, err = run([*base, "--when", "desperate", "--when-token", "desperate>-1e9"], capsys, monkeypatch)
    assert code == 0, err
    tokens = [json.loads(line) for line in out.splitlines()]
    assert tokens[0]["steered"]["text"] == rows[0]["steered"]["text"]
    assert tokens[0]["token_gate"]["edited_tokens"] == tokens[0]["token_gate"]["read_tokens"] > 0
    assert tokens[1]["token_gate"]["edited_tokens"] == 0  # its message gate stayed shut
