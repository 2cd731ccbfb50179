"""Shared fixtures: a tiny seeded random Gemma 2 (fast, hermetic) and the real embedded model (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from steerlab.cli import main
from steerlab.core.corpus import load_corpus
from steerlab.core.vectors import EmotionVectors, shipped_vectors
from steerlab.model.models import EMBEDDED, LoadedModel, load_model
from steerlab.read.extraction import ExtractConfig, extract

TINY_TEXTS = {
    "joyful": [
        "sun and cake and songs",
        "we laughed all day long",
        "a picnic in the warm park",
        "music, dancing and friends",
        "bright flowers everywhere",
        "the puppy wagged its tail",
    ],
    "grim": [
        "rain on the cold grave",
        "the lights went out for good",
        "nobody came to the door",
        "dust on the empty table",
        "a long grey winter night",
        "the letter never arrived",
    ],
    "edgy": [
        "the floor creaked behind me",
        "who is knocking at this hour",
        "my hands would not stop",
        "the exam starts in a minute",
        "sirens came closer and closer",
        "the phone rang twice",
    ],
}


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return load_model("random:tiny-gemma2")


@pytest.fixture(scope="session")
def tiny_corpus_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tiny.jsonl"
    rows = [{"text": t, "emotion": e} for e, texts in TINY_TEXTS.items() for t in texts]
    rows += [
        {"text": t, "emotion": "neutral"}
        for t in ["the bus leaves at nine", "add two cups of flour", "the file is saved"]
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_vectors(tiny: LoadedModel, tiny_corpus_path: Path) -> EmotionVectors:
    return extract(tiny, load_corpus(tiny_corpus_path), ExtractConfig(seed=0)).vectors


@pytest.fixture(scope="session")
def embedded() -> LoadedModel:
    return load_model("gemma-3-270m")


REPO = Path(__file__).resolve().parents[1]  # the checkout: suites and eval data live there
SHIPPED = shipped_vectors(EMBEDDED) or Path("shipped vectors missing: run `steerlab extract`")


def run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["steerlab", *argv])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny_vec_file(tmp_path_factory: pytest.TempPathFactory, tiny_corpus_path: Path) -> Path:
    from steerlab.core.corpus import load_corpus
    from steerlab.core.vectors import save_vectors
    from steerlab.model.models import load_model
    from steerlab.read.extraction import ExtractConfig, extract

    vec = extract(load_model("random:tiny-gemma2"), load_corpus(tiny_corpus_path), ExtractConfig()).vectors
    return save_vectors(vec, tmp_path_factory.mktemp("vec") / "emotions.safetensors")


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("error: "), err
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


def planted_direction_cosine(lm: LoadedModel, tmp_path: Path) -> float:
    """Plant a direction in the embeddings of letters a-m; the cosine of diffmean's direction for
    those texts at layer 0 with it."""
    emb = lm.model.get_input_embeddings().weight
    assert isinstance(emb, torch.Tensor)
    saved = emb.detach().clone()
    v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(7))
    v /= v.norm()
    ids_a = [lm.tokenizer.convert_tokens_to_ids(c) for c in "abcdefghijklm"]
    rng = np.random.default_rng(0)
    texts = {
        "alpha": ["".join(rng.choice(list("abcdefghijklm"), 20)) for _ in range(12)],
        "omega": ["".join(rng.choice(list("nopqrstuvwxyz"), 20)) for _ in range(12)],
    }
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps({"text": t, "emotion": e}) + "\n" for e, ts in texts.items() for t in ts))
    try:
        with torch.no_grad():
            emb[ids_a] += 100.0 * emb.norm(dim=1).mean() * v  # dominate the random sublayer outputs
        vec = extract(lm, load_corpus(path), ExtractConfig(params={"neutral_variance": 0.0})).vectors
    finally:
        with torch.no_grad():
            emb.copy_(saved)
    return float(vec.direction("alpha", 0) @ v)
