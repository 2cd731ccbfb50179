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

from steerlab.vectors import TENSORS, load_vectors

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
    assert json.dumps(a.meta, sort_keys=True) == json.dumps(b.meta, sort_keys=True)
    n_texts = len(tiny_corpus_path.read_text().splitlines())
    assert extra["world_size"] == 2 and sum(extra["texts_per_rank"]) == n_texts
    assert all(0 < n < n_texts for n in extra["texts_per_rank"])  # each rank ran only its share
    assert done.stdout.count("wrote") == 1  # rank 0 alone prints and writes
