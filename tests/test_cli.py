"""The command line: exit codes, one-line errors, JSON shapes, nothing half-written."""

from __future__ import annotations

import json
import math

import pytest

from steerlab.core.vectors import load_vectors
from steerlab.read.coherence import degenerate_reasons

from .conftest import SHIPPED, TINY_TEXTS, one_line_error, run


def test_extract_on_tiny_model_writes_everything(tiny_corpus_path, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "v" / "emotions.safetensors"
    code, stdout, _ = run(
        ["extract", "--model", "random:tiny-gemma2", "--corpus", str(tiny_corpus_path), "--out", str(out)],
        capsys,
        monkeypatch,
    )
    assert code == 0
    names = {"emotions.safetensors", "emotions.json", "emotions.layer_sweep.csv", "emotions.layer_sweep.png"}
    assert names == {p.name for p in out.parent.iterdir()}
    timing = json.loads(out.with_suffix(".json").read_text())["timing"]
    phases = {"load", "forward", "directions", "probes", "reader_choice", "gate", "total"}  # no reply reader here
    assert phases <= set(timing) and all(s >= 0 for s in timing.values()), timing
    assert timing["total"] >= sum(s for k, s in timing.items() if k != "total") - 0.05
    second = out.with_name("other.safetensors")  # a second file in the same folder has its own side files
    code, _, err = run(
        ["extract", "--model", "random:tiny-gemma2", "--corpus", str(tiny_corpus_path), "--out", str(second)],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert {"other.json", "other.layer_sweep.csv", "other.layer_sweep.png"} <= {p.name for p in out.parent.iterdir()}
    assert "steering layer" in stdout and "reading layer" in stdout and "random weights" in stdout


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["extract", "--model", "no-such/model-xyz"], ["no-such/model-xyz", "hf download"]),
        (["extract", "--model", "random:tiny-gemma2", "--corpus", "/nonexistent/c.jsonl"], ["/nonexistent/c.jsonl"]),
        (["extract", "--model", "random:tiny-gemma2", "--out", "/proc/steerlab/x.safetensors"], ["not writable"]),
        (["extract", "--model", "random:tiny-gemma2", "--out", "x.bin"], ["must end in .safetensors"]),
        (["evaluate", "--vectors", "/nonexistent.safetensors", "--corpus", "x"], ["not found"]),
    ],
)
def test_bad_inputs_exit_2_with_one_line(argv, needles, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: take the offline path without retries
    code, _, err = run(argv, capsys, monkeypatch)
    one_line_error(code, err, *needles)


def test_malformed_corpus_names_the_line(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "emotion": "x"}\n{"text": "b", "emotion": "y"}\n{broken\n')
    out = tmp_path / "o" / "emotions.safetensors"
    code, _, err = run(
        ["extract", "--model", "random:tiny-gemma2", "--corpus", str(bad), "--out", str(out)], capsys, monkeypatch
    )
    one_line_error(code, err, "line 3")
    assert not out.parent.exists()


def test_logs_get_no_transformers_progress_bars(tiny, tiny_corpus_path, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A model loaded from a folder (from_pretrained) with stderr not a terminal: no "Loading weights" bar."""
    from transformers.utils import logging as hf_logging

    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    capsys.readouterr()  # save_pretrained's own bar
    hf_logging.enable_progress_bar()  # as in a fresh process
    argv = ["extract", "--model", str(tmp_path / "m"), "--corpus", str(tiny_corpus_path), "--out", "v.safetensors"]
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys, monkeypatch)
    assert code == 0 and "Loading weights" not in err and "it/s]" not in err, err


def test_evaluate_json_shape(tiny_vec_file, tiny_corpus_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(
        ["evaluate", "--vectors", str(tiny_vec_file), "--corpus", str(tiny_corpus_path), "--json"], capsys, monkeypatch
    )
    assert code == 0
    obj = json.loads(out)
    assert set(obj) == {"reader", "reading_layer", "layered", "steering_layer", "in_context", "layers"}
    assert obj["reading_layer"] == load_vectors(tiny_vec_file).reading_layer and obj["layered"]
    assert obj["reader"] == "vector" and not obj["in_context"]
    assert [r["layer"] for r in obj["layers"]] == [0, 1, 2, 3]
    assert all(
        {"layer", "top1", "top3", "n", "auroc", "auroc_length_adjusted"} <= set(r) and r["n"] == 18
        for r in obj["layers"]
    )
    assert all(set(r["auroc"]) == set(TINY_TEXTS) for r in obj["layers"])
    code, out, _ = run(
        [
            "evaluate",
            "--vectors",
            str(tiny_vec_file),
            "--corpus",
            str(tiny_corpus_path),
            "--json",
            "--reader",
            "lexicon",
        ],
        capsys,
        monkeypatch,
    )
    lex = json.loads(out)
    assert code == 0 and not lex["layered"] and [r["layer"] for r in lex["layers"]] == [None]
    assert lex["reading_layer"] == obj["reading_layer"]  # the file's reading layer, whichever reader


def test_evaluate_refuses_a_reader_that_cannot_score_the_labels(  # type: ignore[no-untyped-def]
    tiny_vec_file, tiny_corpus_path, capsys, monkeypatch
) -> None:
    """A file without a reply reader cannot judge one: the error names the readers that can."""
    argv = ["evaluate", "--vectors", str(tiny_vec_file), "--corpus", str(tiny_corpus_path), "--reader", "reply"]
    code, _, err = run(argv, capsys, monkeypatch)
    one_line_error(code, err, "reader 'reply' does not score 3 of the corpus's 3 emotions", "--reader vector")


def test_steer_tiny_json(tiny_vec_file, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(
        [
            "steer",
            "a day at the sea",
            "--vectors",
            str(tiny_vec_file),
            "--emotion",
            "joyful",
            "--alpha",
            "4",
            "--max-new-tokens",
            "6",
            "--json",
            "--sweep-alpha",
            "0,4",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["alpha"] for r in rows] == [0.0, 4.0]
    for r in rows:
        assert set(r) == {"model", "prompt", "alpha", "layers", "displacement", "baseline", "steered"}
        for side in (r["baseline"], r["steered"]):  # the tiny model loops: a loop is counted, not read
            assert side["incoherent"] == bool(degenerate_reasons(side["text"]))
            assert (side["scores"] is None) == side["incoherent"]
            assert side["incoherent"] or set(side["scores"]) == set(TINY_TEXTS)
    assert rows[0]["steered"]["text"] == rows[0]["baseline"]["text"]  # alpha 0 changes nothing


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--emotion", "joyfull"], ["joyfull", "did you mean 'joyful'"]),
        (["--emotion", "joyful", "--alpha", "nan"], ["not a finite number"]),
        (["--emotion", "joyful", "--layers", "9"], ["layer 9 is out of range"]),
        (["--ablate", "joyful", "--prompts-file", "/nonexistent/p.txt"], ["/nonexistent/p.txt"]),
        (["--clamp", "joyful"], ["EMOTION=VALUE"]),
    ],
)
def test_steer_bad_inputs(tiny_vec_file, extra, needles, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(["steer", "hello", "--vectors", str(tiny_vec_file), *extra], capsys, monkeypatch)
    one_line_error(code, err, *needles)


def test_steer_empty_prompt(tiny_vec_file, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(["steer", "  ", "--vectors", str(tiny_vec_file), "--emotion", "joyful"], capsys, monkeypatch)
    one_line_error(code, err, "empty prompt")


@pytest.mark.slow
def test_steer_embedded_hopeful_alpha_4_json(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert SHIPPED.exists(), "shipped vectors missing: run `steerlab extract`"
    code, out, err = run(
        [
            "steer",
            "I lost my job and I can't pay rent.",
            "--chat",
            "--emotion",
            "hopeful",
            "--alpha",
            "4",
            "--max-new-tokens",
            "16",
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    row = json.loads(out.splitlines()[0])
    assert row["alpha"] == 4.0 and row["layers"] == [
        json.loads(SHIPPED.with_suffix(".json").read_text())["chosen_layer"]
    ]
    assert row["displacement"] > 0
    # The default reader reads every emotion; a reply judged incoherent is counted and not read at all.
    for side in (row["baseline"], row["steered"]):
        assert (side["scores"] is None) == side["incoherent"]
        if side["scores"] is not None:
            assert {e for e, x in side["scores"].items() if x is not None and math.isfinite(x)} == set(side["scores"])
            assert len(side["scores"]) == 20
    assert row["baseline"]["text"] and row["steered"]["text"]


@pytest.mark.slow
def test_extract_end_to_end_on_embedded_model(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from steerlab.core.corpus import load_corpus

    records = load_corpus().records
    keep = {"happy": 0, "afraid": 0, "calm": 0, "angry": 0, "neutral": 0}
    lines = []
    for r in records:
        if r.emotion in keep and keep[r.emotion] < 8:
            keep[r.emotion] += 1
            lines.append(json.dumps({"text": r.text, "emotion": r.emotion}))
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(lines) + "\n")
    out = tmp_path / "emb" / "emotions.safetensors"
    code, _, err = run(["extract", "--corpus", str(small), "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["n_layers"] == 18 and meta["hidden_size"] == 640 and meta["is_random"] is False
    assert set(meta["emotions"]) == {"happy", "afraid", "calm", "angry"}
    assert 0 <= meta["chosen_layer"] < 18


def test_steer_named_ablation_modes(tiny_vec_file, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for spec in ("grim", "grim:zero", "grim:directional"):
        code, out, err = run(
            [
                "steer",
                "a day at the sea",
                "--vectors",
                str(tiny_vec_file),
                "--ablate",
                spec,
                "--max-new-tokens",
                "4",
                "--json",
            ],
            capsys,
            monkeypatch,
        )
        assert code == 0, err
        assert json.loads(out.splitlines()[0])["displacement"] > 0
    code, _, err = run(["steer", "x", "--vectors", str(tiny_vec_file), "--ablate", "grim:half"], capsys, monkeypatch)
    one_line_error(code, err, "grim:half")


def test_a_quiet_phase_still_reports_in_logs(capsys) -> None:  # type: ignore[no-untyped-def]
    """Off a terminal, a phase that makes no progress calls (one long call) still prints a line with its
    name and elapsed time every `every` seconds; the heartbeat stops when the phase closes."""
    import time

    from steerlab.cli.common import Progress

    with Progress(1, "re-read", unit="step", every=0.05):
        deadline = time.monotonic() + 5
        while "re-read: 0/1 steps" not in capsys.readouterr().err and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() < deadline, "no heartbeat line within 5 s"
    time.sleep(0.2)
    capsys.readouterr()
    time.sleep(0.2)
    assert capsys.readouterr().err == ""
