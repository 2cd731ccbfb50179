"""Extraction: corpus checks, pooling, the layer convention, methods, files and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steerlab.core.corpus import Record, load_corpus, names_own_emotion, stratified_split
from steerlab.core.errors import CorpusError, SteerlabError, VectorsError
from steerlab.core.vectors import load_vectors, save_vectors
from steerlab.model.activations import (
    PoolingConfig,
    content_mask,
    pooled_activations,
    token_activations,
    tokenize_replies,
)
from steerlab.read.extraction import ExtractConfig, extract
from steerlab.read.methods import METHODS, MethodInput

from .conftest import planted_direction_cosine


def test_builtin_corpus_meets_the_spec() -> None:
    c = load_corpus()
    required = {
        "happy",
        "sad",
        "afraid",
        "angry",
        "calm",
        "desperate",
        "hopeful",
        "frustrated",
        "curious",
        "proud",
        "guilty",
        "surprised",
        "loving",
        "hostile",
        "nervous",
        "confident",
        "brooding",
        "enthusiastic",
        "reflective",
        "gloomy",
    }
    assert required <= set(c.emotions)
    styles = {"vignette", "diary", "dialogue", "story"}
    for e in [*c.emotions, "neutral"]:
        rows = [r for r in c.records if r.emotion == e]
        assert len(rows) >= 60, e
        assert {r.style for r in rows} == styles, e
        assert all(sum(r.style == s for r in rows) >= 10 for s in styles), e
        assert len({r.topic for r in rows}) >= 20, e
    assert len(set(c.texts)) == len(c.texts)
    naming = [(r.emotion, names_own_emotion(r)) for r in c.records if r.emotion != "neutral" and names_own_emotion(r)]
    assert naming == []


def test_synonym_check_catches_self_naming() -> None:
    assert names_own_emotion(Record("She felt a wave of despair.", "desperate")) == "despair"
    assert names_own_emotion(Record("Terrified, he ran.", "afraid")) == "Terrified"
    assert names_own_emotion(Record("He rode a saddle.", "sad")) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a", "emotion": "x"}\n{"text": oops}\n', "line 2"),
        ("", "no texts"),
        ('{"text": "a", "emotion": "x"}\n{"text": "b", "emotion": "y"}\n', "only 1 texts"),
        ('{"text": "", "emotion": "x"}\n', "non-empty"),
    ],
)
def test_bad_corpora_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


def test_missing_corpus_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="cannot read corpus"):
        load_corpus(tmp_path / "nope.jsonl")


def test_split_is_stratified_and_seeded() -> None:
    labels = ["a"] * 20 + ["b"] * 8
    m1, m2 = stratified_split(labels, 0.25, 3), stratified_split(labels, 0.25, 3)
    assert (m1 == m2).all()
    assert m1[:20].sum() == 5 and m1[20:].sum() == 2


def test_layer_i_is_hidden_states_i_plus_1(tiny) -> None:  # type: ignore[no-untyped-def]
    enc = tiny.tokenizer(["the cat sat on the mat"], return_tensors="pt")
    hooked = token_activations(tiny, enc, range(tiny.n_layers))
    with torch.inference_mode():
        hs = tiny.model(**enc, output_hidden_states=True).hidden_states
    for i in range(tiny.n_layers - 1):
        assert torch.equal(hooked[i], hs[i + 1].float())
    # The last hidden_states entry is after the final norm: it is NOT the last layer's output.
    assert not torch.allclose(hooked[tiny.n_layers - 1], hs[-1].float())


@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_ignores_padding(tiny, side: str) -> None:  # type: ignore[no-untyped-def]
    texts = ["short one", "a much longer sentence with many more bytes in it"]
    alone = [pooled_activations(tiny, [t]).features[0] for t in texts]  # the default skips the first tokens
    tiny.tokenizer.padding_side = side
    try:
        enc = tiny.tokenizer(texts, return_tensors="pt", padding=True, return_special_tokens_mask=True)
    finally:
        tiny.tokenizer.padding_side = "left"
    acts = token_activations(tiny, enc, range(tiny.n_layers))
    mask = content_mask(enc, PoolingConfig().skip_tokens).float()
    for row in range(2):
        for layer in range(tiny.n_layers):
            pooled = (acts[layer][row] * mask[row, :, None]).sum(0) / mask[row].sum()
            assert torch.allclose(pooled, torch.from_numpy(alone[row][layer]), atol=1e-4)
    batched = pooled_activations(tiny, texts, PoolingConfig(batch_size=2)).features
    assert np.allclose(batched, np.stack(alone), atol=1e-4)


def test_texts_are_never_cut(tiny) -> None:  # type: ignore[no-untyped-def]
    long = "word " * 80  # > 64 tokens
    with pytest.raises(SteerlabError, match=r"text 2 is \d+ tokens, more than the 64 read per text"):
        pooled_activations(tiny, ["short", long], PoolingConfig(max_length=64))
    with pytest.raises(SteerlabError, match="never cuts"):  # a reply read in its conversation too
        tokenize_replies(tiny, [long], ["hi"], 64)


def test_content_mask_excludes_bos_padding_and_skip(tiny) -> None:  # type: ignore[no-untyped-def]
    enc = tiny.tokenizer(["abc", "a"], return_tensors="pt", padding=True, return_special_tokens_mask=True)
    assert content_mask(enc).sum(1).tolist() == [3, 1]
    assert content_mask(enc, skip_tokens=1).sum(1).tolist() == [2, 1]  # a text keeps its last token
    assert content_mask(enc, skip_tokens=9).sum(1).tolist() == [1, 1]


def test_readouts_pool_the_named_positions_in_one_pass(tiny) -> None:  # type: ignore[no-untyped-def]
    from steerlab.model.activations import pooled_readouts, tokenize

    texts = ["short one", "a much longer sentence with many more bytes in it"]
    configs = [
        PoolingConfig(batch_size=2),
        PoolingConfig(batch_size=2, skip_tokens=2),
        PoolingConfig(batch_size=2, readout="last"),
    ]
    together = pooled_readouts(tiny, texts, configs)
    for config, pooled in zip(configs, together, strict=True):  # one pass = separate passes
        assert np.allclose(pooled.features, pooled_activations(tiny, texts, config).features, atol=1e-5)
    for row, text in enumerate(texts):  # "last" is the final token; "prep" the last token of the reply prompt
        enc = tiny.tokenizer([text], return_tensors="pt", return_special_tokens_mask=True)
        acts = token_activations(tiny, enc, [1])
        assert np.allclose(together[2].features[row, 1], acts[1][0, -1].numpy(), atol=1e-5)
        prep_ids = tokenize(tiny, [text], 256, prep=True)[0]
        assert tiny.tokenizer.decode(prep_ids).count(text) == 1 and len(prep_ids) > len(enc["input_ids"][0])
        ids = torch.tensor([prep_ids])
        prep_acts = token_activations(tiny, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, [1])  # type: ignore[arg-type]
        prep = pooled_activations(tiny, [text], PoolingConfig(readout="prep")).features[0, 1]
        assert np.allclose(prep, prep_acts[1][0, -1].numpy(), atol=1e-5)


def test_layers_are_chosen_on_styles_left_out(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import TINY_TEXTS

    rows = [
        {"text": t if i % 2 else f"dear diary, {t}", "emotion": e, "style": "diary" if i % 2 == 0 else "plain"}
        for e, texts in TINY_TEXTS.items()
        for i, t in enumerate(texts)
    ]
    rows += [{"text": "the bus leaves at nine", "emotion": "neutral", "style": "plain"}]
    path = tmp_path / "styled.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = extract(tiny, load_corpus(path), ExtractConfig(seed=0, replies=None))
    meta, sweep = result.vectors.meta, result.sweep
    assert meta["selection"] == "out-of-style" and meta["styles"] == {"diary": 9, "plain": 9}
    oos = [r.oos_top1 for r in sweep]
    assert all(0 <= x <= 1 for x in oos) and len(meta["oos_top1_per_style"]) == tiny.n_layers
    best = max(sweep, key=lambda r: (r.oos_top1, r.oos_top3, -r.layer))
    assert result.vectors.reading_layer == best.layer
    assert result.vectors.steering_layer == min(r.layer for r in sweep if r.oos_top1 >= best.oos_top1_lo)
    # each style's score comes from vectors fitted without that style
    for layer, per_style in enumerate(meta["oos_top1_per_style"]):
        assert np.isclose(np.mean(list(per_style.values())), oos[layer])
    unstyled = tmp_path / "unstyled.jsonl"
    unstyled.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "style"}) for r in rows) + "\n")
    v = extract(tiny, load_corpus(unstyled), ExtractConfig(seed=0, replies=None)).vectors
    assert v.meta["selection"].startswith("in-style") and v.reading_layer == v.meta["best_layer"]


def _planted(seed: int = 0, n: int = 200, d: int = 64, e: int = 4) -> tuple[MethodInput, np.ndarray]:
    """Emotion directions plus two large nuisance directions that neutral text also varies along."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, e + 2)))[0].T
    truth, nuisance = basis[:e], basis[e:]
    labels = np.repeat(np.arange(e), n)
    feats = 0.3 * rng.normal(size=(e * n, d)) + 3.0 * truth[labels] + 5.0
    feats += 4.0 * rng.normal(size=(e * n, 2)) @ nuisance
    neutral = 0.3 * rng.normal(size=(100, d)) + 4.0 * rng.normal(size=(100, 2)) @ nuisance + 5.0
    return MethodInput(feats, labels, e, neutral, seed, {}), truth


@pytest.mark.parametrize(
    ("name", "params"),
    [("diffmean", {"neutral_variance": 0.5}), ("pca", {"pairs": 200, "neutral_variance": 0.5}), ("probe", {"c": 1.0})],
)
def test_methods_recover_planted_directions(name: str, params: dict[str, float]) -> None:
    inp, truth = _planted()
    inp = MethodInput(inp.features, inp.labels, inp.n_emotions, inp.neutral, 0, params)
    dirs, norms = METHODS[name](inp)
    centred_truth = truth - truth.mean(axis=0)  # diffmean subtracts the grand mean of class means
    target = centred_truth / np.linalg.norm(centred_truth, axis=1, keepdims=True) if name != "probe" else truth
    cos = np.sum(dirs * target, axis=1)
    # Probe weights separate classes but are not the class-mean offsets (regularised, multinomial).
    floor = {"diffmean": 0.99, "pca": 0.95, "probe": 0.6}[name]
    assert (cos > floor).all(), cos
    assert (norms > 0).all()


def test_diffmean_recovers_direction_planted_in_the_model(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert planted_direction_cosine(tiny, tmp_path) > 0.99


def test_save_load_round_trip_and_same_seed_same_bytes(tiny, tiny_corpus_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = load_corpus(tiny_corpus_path)
    a = save_vectors(extract(tiny, c, ExtractConfig(seed=1)).vectors, tmp_path / "a" / "emotions.safetensors")
    b = save_vectors(extract(tiny, c, ExtractConfig(seed=1)).vectors, tmp_path / "b" / "emotions.safetensors")
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    assert a.stat().st_mode & 0o777 == a.with_suffix(".json").stat().st_mode & 0o777  # not private
    v = load_vectors(a)
    again = save_vectors(v, tmp_path / "c" / "emotions.safetensors")
    assert again.read_bytes() == a.read_bytes()
    meta = json.loads(a.with_suffix(".json").read_text())
    for key in (
        "format_version",
        "model_id",
        "revision",
        "hidden_size",
        "site",
        "layer_convention",
        "method",
        "method_params",
        "corpus_sha256",
        "seed",
        "chosen_layer",
        "sweep",
        "steerlab_version",
        "is_random",
    ):
        assert key in meta, key
    assert meta["is_random"] is True and len(meta["sweep"]) == tiny.n_layers
    assert sorted(p.name for p in a.parent.iterdir()) == ["emotions.json", "emotions.safetensors"]


def test_vectors_refuse_another_model(tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VectorsError, match="built for"):
        tiny_vectors.check_compatible("google/gemma-2-2b-it", 2304, 26)


def test_corrupt_vector_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a tensor file")
    with pytest.raises(VectorsError, match="cannot read"):
        load_vectors(bad)


def test_shipped_vectors_chose_their_layers_out_of_style() -> None:
    from steerlab.read.probes import LayerScore, choose_layer

    from .conftest import SHIPPED

    v = load_vectors(SHIPPED)
    assert v.meta["selection"] == "out-of-style"
    assert set(v.meta["styles"]) == {"vignette", "diary", "dialogue", "story"}
    rows = [LayerScore(**r) for r in v.meta["sweep"]]
    assert all(np.isfinite([r.top1, r.oos_top1, r.oos_top3, r.oos_probe_top1]).all() for r in rows)
    assert (v.steering_layer, v.reading_layer) == choose_layer(rows, out_of_style=True)
    assert v.meta["pooling"]["skip_tokens"] == PoolingConfig().skip_tokens  # built with today's defaults


def test_shipped_vectors_record_where_their_time_went() -> None:
    from .conftest import SHIPPED

    paths = sorted(SHIPPED.parent.parent.glob("*/emotions.safetensors"))
    assert len(paths) >= 2, paths
    for path in paths:
        timing = load_vectors(path).meta["timing"]
        assert timing["forward"] > 0 and timing["total"] >= timing["forward"], (path, timing)
        after = timing["total"] - timing["forward"] - timing.get("reply_forward", 0.0)
        assert after <= 0.25 * timing["total"], (path, timing)  # fitting costs ≤ 25 % of the run
