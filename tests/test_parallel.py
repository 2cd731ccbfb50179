"""torchrun data parallelism: two CPU ranks (gloo) write the file one process writes, each running
only its share of the forward passes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from steerlab.core.vectors import TENSORS, load_vectors

from .conftest import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_write_what_one_process_writes(
    tiny_corpus_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ["extract", "--model", "random:tiny-gemma2", "--corpus", str(tiny_corpus_path), "--batch-size", "4"]
    one, two = tmp_path / "one" / "emotions.safetensors", tmp_path / "two" / "emotions.safetensors"
    code, _, err = run([*common, "--out", str(one)], capsys, monkeypatch)
    assert code == 0, err
    ranks = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    done = subprocess.run(
        [*ranks, "-m", "steerlab", *common, "--out", str(two)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = load_vectors(one), load_vectors(two)
    for name in TENSORS:
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6, rtol=0), name
    extra = {k: b.meta.pop(k) for k in ("world_size", "texts_per_rank")}
    a.meta.pop("timing"), b.meta.pop("timing")  # wall times of each run
    assert json.dumps(a.meta, sort_keys=True) == json.dumps(b.meta, sort_keys=True)
    n_texts = len(tiny_corpus_path.read_text().splitlines())
    assert extra["world_size"] == 2 and sum(extra["texts_per_rank"]) == n_texts
    assert all(0 < n < n_texts for n in extra["texts_per_rank"])  # each rank ran only its share
    assert done.stdout.count("wrote") == 1  # rank 0 alone prints and writes


def test_device_map_offload_keeps_edits_on_their_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers 2-3 of a checkpoint offloaded to disk by accelerate: the same edit at layer 2 gives the
    same logits as on the model held whole, and readings of the offloaded layer are the same."""
    from transformers import Gemma2ForCausalLM

    from steerlab.model.activations import pad_batch, token_activations
    from steerlab.model.models import byte_tokenizer, load_model, tiny_gemma2_config
    from steerlab.steer.edits import Edit, random_direction
    from steerlab.steer.interventions import steering

    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    torch.manual_seed(0)
    Gemma2ForCausalLM(tiny_gemma2_config()).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    layout = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "cpu",
        "model.layers.2": "disk",
        "model.layers.3": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    whole = load_model(str(folder), dtype="float32")
    split = load_model(str(folder), dtype="float32", device_map=json.dumps(layout))
    assert getattr(split.model, "hf_device_map", {}).get("model.layers.2") == "disk"
    enc = whole.tokenizer(["a day at the sea"], return_tensors="pt")
    edit = Edit("add", 2, random_direction(whole.hidden_size, 0), 25.0, "x")
    logits = []
    for lm in (whole, split):
        with steering(lm, edits=[edit]) as s:
            logits.append(s.logits(enc))
    with steering(whole) as s:
        plain = s.logits(enc)
    assert torch.allclose(logits[0], logits[1], atol=1e-4)
    assert not torch.allclose(logits[0], plain, atol=1e-3)  # the edit did something
    ids = [list(enc["input_ids"][0])]
    a, b = (token_activations(lm, pad_batch(lm, ids), [3])[3] for lm in (whole, split))
    assert torch.allclose(a, b, atol=1e-5)


def test_two_ranks_run_a_suite_as_one_process_does(
    tiny_vec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        json.dumps(
            {  # JSON is YAML
                "name": "ranks",
                "prompts": ["a day at the sea", "a long night", "the phone rang", "sun and cake"],
                "generation": {"max_new_tokens": 4, "batch_size": 2},
                "conditions": [
                    {"name": "baseline"},
                    {"name": "add", "op": "add", "emotions": ["joyful"], "alphas": [4]},
                ],
                "metrics": {"m": {"kind": "reply", "emotion": "joyful"}},
                "claims": [{"name": "c", "condition": "add", "metric": "m", "direction": "increase"}],
            }
        )
    )
    common = ["validate", str(suite), "--vectors", str(tiny_vec_file)]
    code, _, err = run([*common, "--out", str(tmp_path / "one")], capsys, monkeypatch)
    assert code == 0, err
    ranks = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port())]
    done = subprocess.run(
        [*ranks, "-m", "steerlab", *common, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "one" / "rows.csv").read_text() == (tmp_path / "two" / "rows.csv").read_text()
