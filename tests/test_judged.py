"""Readers validated on judged model replies; incoherent replies are counted, never read as an emotion."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from steerlab.core.corpus import load_corpus
from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.models import LoadedModel
from steerlab.read.coherence import incoherence_threshold
from steerlab.read.judged import Judged, fit_on_judged, judged_figures, load_judged
from steerlab.read.judged_set import SCALES, tie_ceiling
from steerlab.read.reader_choice import reply_targets
from steerlab.read.readers import INCOHERENT, READERS, incoherent, read_replies

from .conftest import TINY_TEXTS, one_line_error, run

USERS = [f"message number {i} about my week" for i in range(8)]
LOOP = "la la la la la la la la la la la la la la la la"


def _judged_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i, user in enumerate(USERS):
        for e, texts in TINY_TEXTS.items():
            rows.append(
                {"user": user, "reply": texts[i % len(texts)], "label": e, "hopeful": 3 if e == "joyful" else 1}
            )
        rows.append({"user": user, "reply": LOOP, "label": INCOHERENT, "hopeful": 1})
    for r in rows:
        r.update(desperate=1, calm=1, coherence=1 if r["label"] == INCOHERENT else 4)
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_figures_skip_incoherent_and_flagged_replies() -> None:
    emotions = ["hopeful", "desperate", "calm"]
    n = 40
    rng = np.random.default_rng(0)
    hopeful = rng.integers(1, 6, n).astype(float)
    labels = ["hopeful" if h >= 4 else "neutral" for h in hopeful]
    labels[:5] = [INCOHERENT] * 5
    judged = Judged(
        ["u"] * n, ["r"] * n, labels, {"hopeful": hopeful, "desperate": np.ones(n), "calm": np.ones(n)}, "t", "0"
    )
    scores = np.zeros((n, 3))
    scores[:, 0] = hopeful  # a perfect hopeful reader
    scores[:5, 0] = 100.0  # ...that would read the broken replies as most hopeful: they must not count
    flagged = np.zeros(n, dtype=bool)
    flagged[5] = True
    f = judged_figures(scores, flagged, judged, np.ones(n, dtype=bool), emotions)
    assert f["n"] == n - 6 and f["coverage"] == pytest.approx((n - 6) / (n - 5))
    assert f["spearman_hopeful"] == pytest.approx(1.0) and f["auroc_hopeful_3plus"] == pytest.approx(1.0)
    assert f["auroc"]["hopeful"]["auroc"] == pytest.approx(1.0) and f["spearman_desperate"] is None


def test_a_scale_rated_1_for_most_replies_caps_the_spearman_of_any_continuous_score() -> None:
    n = 100
    spread = np.repeat(np.arange(1.0, 6.0), n // 5)  # every level equally often
    skewed = np.ones(n)
    skewed[:10] = [2, 2, 2, 2, 3, 3, 3, 4, 4, 5]  # the desperate scale of the models' own replies
    labels = ["neutral"] * n
    labels[-1] = INCOHERENT  # left out, as every figure leaves it out
    judged = Judged(
        ["u"] * n, ["r"] * n, labels, {"hopeful": spread, "desperate": skewed, "calm": np.ones(n)}, "t", "0"
    )
    ceiling = tie_ceiling(judged, np.ones(n, dtype=bool))
    assert ceiling["hopeful"] is not None and ceiling["hopeful"] > 0.95
    assert ceiling["desperate"] is not None and 0.3 < ceiling["desperate"] < 0.7
    assert ceiling["calm"] is None  # one level only: no correlation is defined
    read = np.array(labels) != INCOHERENT
    rng = np.random.default_rng(0)
    for _ in range(3):  # any score that orders the levels perfectly, ties broken anyhow, reaches exactly the ceiling
        score = skewed[read] + rng.random(int(read.sum())) * 0.5
        assert spearmanr(score, skewed[read]).statistic == pytest.approx(ceiling["desperate"], abs=1e-12)


def test_judged_files_are_checked_line_by_line(tmp_path: Path) -> None:
    rows = _judged_rows()
    good = _write(tmp_path / "good.jsonl", rows)
    assert len(load_judged([good], list(TINY_TEXTS)).replies) == len(rows)
    bad = _write(tmp_path / "bad.jsonl", [*rows[:3], {**rows[3], "label": "joyous"}])
    with pytest.raises(SteerlabError, match=r"bad.jsonl:4: label 'joyous'"):
        load_judged([bad], list(TINY_TEXTS))
    scale = _write(tmp_path / "scale.jsonl", [{**rows[0], "hopeful": 7}])
    with pytest.raises(SteerlabError, match=r"scale.jsonl:1: hopeful 7 is not on the 1-5 scale"):
        load_judged([scale], list(TINY_TEXTS))
    scale.write_text("{not json\n")
    with pytest.raises(SteerlabError, match=r"scale.jsonl line 1: malformed JSON"):  # the one JSONL reader's error
        load_judged([scale], list(TINY_TEXTS))


def test_fit_on_judged_records_validation_and_reads_every_label(
    tiny: LoadedModel, tiny_vectors: EmotionVectors, tmp_path: Path
) -> None:
    written = _write(
        tmp_path / "written.jsonl",
        [
            {"context": f"how was your day {i}", "text": t, "emotion": e}
            for e, texts in TINY_TEXTS.items()
            for i, t in enumerate(texts)
        ],
    )
    judged = load_judged([_write(tmp_path / "judged.jsonl", _judged_rows())], tiny_vectors.emotions)
    fitted, record = fit_on_judged(tiny, tiny_vectors, load_corpus(written, min_per_emotion=1), judged, seed=0)
    assert fitted.meta["judged_validation"] == record
    assert record["chosen"] == fitted.default_reader and record["chosen"] in READERS
    assert set(fitted.meta["reply_reader"]["labels"]) == {*TINY_TEXTS, INCOHERENT, *SCALES}  # the rated scales too
    assert {"bag of words", "length", "reply (written)", "reply (written + judged)"} <= set(record["readers"])
    assert record["incoherence"]["rule"]["recall"] == 1.0  # the loops are caught (by the detector at least)
    assert 0.1 <= fitted.meta["reply_reader"]["incoherent_at"] < 0.9  # the cut chosen on out-of-fold predictions
    assert set(record["reply_per_layer"]) == {str(i) for i in range(tiny_vectors.n_layers)}
    assert "judge" in record["readers"] and record["chosen"] != "judge"  # validated beside, never the default
    assert set(record["judge_per_layer"]) == set(record["reply_per_layer"])
    assert fitted.judge_weight is not None and fitted.judge_weight.shape[:2] == (tiny_vectors.n_layers, 3)
    assert fitted.meta["judge_reader"]["n_replies"] == len(USERS) * len(TINY_TEXTS)  # the loops left out
    read = read_replies(tiny, fitted, ["sun and cake", LOOP], ["hi", "hi"], chat=True, reader="reply")
    assert read.incoherent.tolist() == [False, True]
    assert np.isfinite(read.scores[0]).all() and np.isnan(read.scores[1]).all()


def test_the_reply_readers_incoherent_class_marks_a_reply_unread(tiny_vectors: EmotionVectors) -> None:
    n_layers, hidden = tiny_vectors.n_layers, tiny_vectors.directions.shape[-1]
    weight = torch.zeros(n_layers, 2, hidden)
    bias = torch.tensor([[0.0, -1.0]] * n_layers)  # coherent unless the feature says otherwise
    weight[:, 1, 0] = 1.0  # incoherent when the first feature is large
    v = replace(
        tiny_vectors,
        reply_weight=weight,
        reply_bias=bias,
        meta={**tiny_vectors.meta, "reply_reader": {"labels": ["joyful", INCOHERENT], "predicts": "..."}},
    )
    feats = np.zeros((2, hidden), dtype=np.float32)
    feats[1, 0] = 5.0
    assert incoherent(v, feats, ["a fine reply", "another fine reply"]).tolist() == [False, True]
    assert incoherent(v, None, ["a fine reply", LOOP]).tolist() == [False, True]  # no features: the detector
    stricter = replace(v, meta={**v.meta, "reply_reader": {**v.meta["reply_reader"], "incoherent_at": 4.5}})
    assert incoherent(stricter, feats, ["a fine reply", "another fine reply"]).tolist() == [False, False]  # 4 < 4.5
    old = replace(v, meta={**v.meta, "reply_reader": {"labels": ["joyful", INCOHERENT]}})  # an older classifier
    with pytest.raises(SteerlabError, match="classifier of an older steerlab: run `steerlab fit-reader`"):
        incoherent(old, feats, ["a fine reply", "another fine reply"])


def test_reply_targets_are_labels_and_the_judged_ratings_on_0_1() -> None:
    targets, classes = reply_targets(
        ["hopeful", "joyful", INCOHERENT], {"hopeful": np.array([np.nan, 5.0, 2.0]), "calm": np.array([np.nan, 1, 3])}
    )
    assert classes == ["calm", "hopeful", INCOHERENT, "joyful"]  # a rated scale is a class, labelled or not
    assert targets.tolist() == [[0, 1, 0, 0], [0, 1, 0, 1], [0.5, 0.25, 1, 0]]  # written row: its label alone


def test_fit_reader_and_evaluate_judged_commands(
    tiny_vec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _write(
        tmp_path / "written.jsonl",
        [{"context": "how was it", "text": t, "emotion": e} for e, texts in TINY_TEXTS.items() for t in texts],
    )
    judged = _write(tmp_path / "judged.jsonl", _judged_rows())
    out = tmp_path / "fitted.safetensors"
    argv = ["fit-reader", "--vectors", str(tiny_vec_file), "--judged", str(judged), "--replies", str(written)]
    code, stdout, err = run([*argv, "--out", str(out), "--report", str(tmp_path / "r.json")], capsys, monkeypatch)
    assert code == 0, err
    assert "default reader:" in stdout and out.exists()
    assert json.loads((tmp_path / "r.json").read_text())["n"] == len(_judged_rows())
    code, _, err = run([*argv, "--out", str(out)], capsys, monkeypatch)
    one_line_error(code, err, "already exists", "--force")
    code, stdout, err = run(["evaluate", "--vectors", str(out), "--judged", str(judged), "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert "in-sample" in err
    layers = json.loads(stdout)["layers"]
    assert len(layers) == 4 and all(r["n"] == 3 * len(USERS) for r in layers)  # loops are not read
    code, _, err = run(["evaluate", "--vectors", str(out)], capsys, monkeypatch)
    one_line_error(code, err, "--corpus", "--judged")


def test_a_known_incoherence_verdict_is_reused_not_judged_again(
    tiny: LoadedModel, tiny_vectors: EmotionVectors
) -> None:
    replies, prompts = ["sun and cake", LOOP, "sun and cake"], ["hi", "hi", "hi"]
    known = np.array([True, False, True])  # a primary reader's verdict, whatever the detector would say
    read = read_replies(tiny, tiny_vectors, replies, prompts, chat=True, reader="lexicon", known=known)
    assert read.incoherent.tolist() == [True, False, True]
    assert np.isnan(read.scores[0]).all() and np.isfinite(read.scores[1]).all()


def test_the_incoherence_cut_is_the_one_that_finds_the_judged_broken_replies_best() -> None:
    predicted = np.array([0.05, 0.12, 0.33, 0.35, 0.6, 0.2])
    broken = np.array([False, False, True, True, True, False])
    detector = np.array([False, False, False, False, False, True])  # a loop the detector catches, judged fine
    cut = incoherence_threshold(predicted, detector, broken)
    assert cut == 0.32  # the highest cut that flags every broken reply and nothing else
    assert incoherence_threshold(predicted, detector, np.zeros(6, dtype=bool)) is None
