"""Readers: replies read in their conversation, one interface, validation figures that match sklearn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from steerlab.core.corpus import load_corpus
from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors, load_vectors, save_vectors
from steerlab.model.activations import PoolingConfig, pad_batch, pooled_activations, token_activations
from steerlab.model.chat import format_chat
from steerlab.model.models import LoadedModel
from steerlab.read.extraction import ExtractConfig, extract
from steerlab.read.reader_choice import evaluate_reader, score_readings
from steerlab.read.readers import READERS, read_texts

REPLY = "the puppy wagged its tail"
CONTEXT = "nobody came to the door"


def test_context_pools_exactly_the_reply_tokens(tiny: LoadedModel) -> None:
    pooled = pooled_activations(tiny, [REPLY], PoolingConfig(skip_tokens=0), contexts=[CONTEXT])
    chat = format_chat(
        tiny.tokenizer,
        [{"role": "user", "content": CONTEXT}, {"role": "assistant", "content": REPLY}],
        add_generation_prompt=False,
    )
    ids = tiny.tokenizer(chat.text)["input_ids"]
    start = chat.text.index(REPLY)
    # The byte tokenizer has BOS then one token per byte: the reply is tokens start+1 .. start+len.
    acts = token_activations(tiny, pad_batch(tiny, [ids]), range(tiny.n_layers))
    for layer in range(tiny.n_layers):
        want = acts[layer][0, 1 + start : 1 + start + len(REPLY)].mean(dim=0).numpy()
        np.testing.assert_allclose(pooled.features[0, layer], want, atol=1e-5)
    assert pooled.n_tokens == len(REPLY)


def test_context_changes_the_reading_but_alone_equals_plain(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    alone = read_texts(tiny, tiny_vectors, [REPLY], 2, "vector")
    plain = tiny_vectors.read(torch.from_numpy(pooled_activations(tiny, [REPLY]).features[:, 2]), 2).numpy()
    np.testing.assert_allclose(alone, plain, atol=1e-6)
    in_context = read_texts(tiny, tiny_vectors, [REPLY], 2, "vector", contexts=[CONTEXT])
    assert not np.allclose(alone, in_context)


def test_batched_context_reading_equals_one_by_one(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    replies = [REPLY, "ok", "a long grey winter night and the letter never arrived"]
    contexts = [CONTEXT, "who is knocking at this hour, tell me now please", "hi"]
    batched = read_texts(tiny, tiny_vectors, replies, 1, "probe", contexts=contexts, batch_size=3)
    alone = np.concatenate(
        [read_texts(tiny, tiny_vectors, [r], 1, "probe", contexts=[c]) for r, c in zip(replies, contexts, strict=True)]
    )
    np.testing.assert_allclose(batched, alone, atol=1e-4)


def test_auroc_matches_sklearn_and_neutral_rows_are_negatives() -> None:
    rng = np.random.default_rng(0)
    emotions = ["hopeful", "desperate", "calm"]
    labels = ["hopeful"] * 10 + ["desperate"] * 10 + ["neutral"] * 10
    scores = rng.normal(size=(30, 3))
    scores[:10, 0] += 1.0
    texts = [" ".join(["w"] * (3 + i % 7)) for i in range(30)]
    res = score_readings(scores, labels, emotions, texts, layer=4)
    truth = np.array(labels)
    assert res.auroc["hopeful"] == pytest.approx(roc_auc_score(truth == "hopeful", scores[:, 0]))
    assert res.auroc["desperate"] == pytest.approx(roc_auc_score(truth == "desperate", scores[:, 1]))
    assert "calm" not in res.auroc  # not present as a label
    assert res.n == 20  # neutral rows count as negatives, not in top-1
    two = scores[:20, :2]
    want = np.mean(np.argmax(two, axis=1) == np.array([0] * 10 + [1] * 10))
    assert res.top1 == pytest.approx(want)


def test_length_adjustment_removes_a_pure_length_signal() -> None:
    rng = np.random.default_rng(0)
    labels = ["hopeful"] * 20 + ["neutral"] * 20
    texts = [" ".join(["w"] * (30 + i)) for i in range(20)] + [" ".join(["w"] * (2 + i)) for i in range(20)]
    lengths = np.log1p([len(t.split()) for t in texts])
    noise = rng.normal(0, 0.01, size=40)
    scores = np.stack([lengths + noise, -lengths], axis=1)  # reads length (and noise) only
    res = score_readings(scores, labels, ["hopeful", "sad"], texts, layer=0)
    assert res.auroc["hopeful"] == 1.0
    assert res.auroc_length_adjusted["hopeful"] == pytest.approx(0.5, abs=0.2)
    # With lengths balanced across labels, a real signal survives the adjustment.
    balanced = [" ".join(["w"] * (2 + i % 20)) for i in range(40)]
    signal = np.array([1.0] * 20 + [0.0] * 20) + np.log1p([2 + i % 20 for i in range(40)]) + noise
    res = score_readings(np.stack([signal, -signal], axis=1), labels, ["hopeful", "sad"], balanced, layer=0)
    assert res.auroc_length_adjusted["hopeful"] == 1.0


def test_lexicon_reader_works_offline(tiny_vectors: EmotionVectors, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*_a: object, **_k: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    meta = {**tiny_vectors.meta, "valence": {"joyful": 0.8, "grim": -0.7, "edgy": -0.4}}
    v = EmotionVectors(**{**tiny_vectors.__dict__, "meta": meta})
    scores = READERS["lexicon"].score(v, None, ["What a wonderful, lovely day!", "This is awful and horrible."], 0)
    joy = v.emotions.index("joyful")
    assert scores[0, joy] > 0 > scores[1, joy]


def test_unknown_reader_and_layer_are_one_line_errors(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    with pytest.raises(SteerlabError, match="unknown reader 'nope'"):
        read_texts(tiny, tiny_vectors, ["x"], 1, "nope")
    with pytest.raises(SteerlabError, match="reader layer 99"):
        read_texts(tiny, tiny_vectors, ["x"], 99, "vector")
    with pytest.raises(SteerlabError, match="contexts"):
        read_texts(tiny, tiny_vectors, ["x", "y"], 1, "vector", contexts=["only one"])


def test_evaluate_reader_one_row_per_layer(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    texts = ["sun and cake", "rain on the grave", "the bus leaves at nine"]
    rows = evaluate_reader(tiny, tiny_vectors, texts, ["joyful", "grim", "neutral"], "vector")
    assert [r.layer for r in rows] == list(range(tiny.n_layers))
    assert all(set(r.auroc) == {"joyful", "grim"} for r in rows)


def write_replies(path: Path) -> Path:
    rows = []
    for i, ctx in enumerate(["my cat is lost", "the rent is due", "the exam is at nine", "my car broke down"]):
        for label, reply in [
            ("joyful", f"we laughed all day {i}"),
            ("grim", f"rain on the cold grave {i}"),
            ("neutral", f"the file is saved {i}"),
        ]:
            rows.append({"context": ctx, "text": reply, "emotion": label})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_extract_ships_a_reply_reader_and_records_the_choice(
    tiny: LoadedModel, tiny_corpus_path: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "replies.jsonl")
    v = extract(tiny, load_corpus(tiny_corpus_path), ExtractConfig(seed=0, replies=str(replies))).vectors
    assert v.reply_weight is not None and v.reply_weight.shape == (tiny.n_layers, 3, tiny.hidden_size)
    assert v.meta["reply_reader"]["labels"] == ["grim", "joyful", "neutral"]
    assert v.meta["reply_reader"]["n_messages"] == 4
    reading = v.meta["reading"]
    assert reading["reader"] in READERS and v.default_reader == reading["reader"]
    assert v.reading_layer == reading["layer"]
    assert set(reading["selection_macro_auroc"]) == {n for n, spec in READERS.items() if spec.every_emotion}
    back = load_vectors(save_vectors(v, tmp_path / "v.safetensors"))
    assert back.reply_weight is not None and torch.equal(back.reply_weight, v.reply_weight)
    scores = read_texts(tiny, back, ["we laughed"], None, "reply", contexts=["my cat is lost"])
    assert np.isfinite(scores[0, back.index("joyful")]) and np.isnan(scores[0, back.index("edgy")])
