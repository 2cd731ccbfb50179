"""The embedded-model cache: one builder under a lock, a completeness marker, no leftovers."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Gemma2ForCausalLM

from steerlab.core.cache import CACHE_MARKER, cache_problem
from steerlab.model import models
from steerlab.model.models import EMBEDDED, byte_tokenizer, is_cached, tiny_gemma2_config

BUILDS = "builds.log"  # one line per (fake) conversion, next to the cache


def fake_convert(out: Path, progress: Callable[[str], None] | None, delay: float = 0.0) -> None:
    """Stands in for the 1-minute GGUF conversion: a tiny Gemma 2 with the byte tokenizer."""
    out.mkdir(parents=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        Gemma2ForCausalLM(tiny_gemma2_config()).save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    with open(out.parent / BUILDS, "a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(delay)


def n_builds(cache: Path) -> int:
    path = cache / BUILDS
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "cache"
    monkeypatch.setenv("STEERLAB_CACHE", str(root))
    monkeypatch.setattr(models, "_convert", fake_convert)
    models._load.cache_clear()
    yield root
    models._load.cache_clear()


def load(messages: list[str]) -> models.LoadedModel:
    return models._load_builtin(EMBEDDED, None, messages.append)


def tmp_leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if ".tmp-" in p.name)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_first_use_builds_a_marked_cache(cache: Path) -> None:
    assert not is_cached(EMBEDDED)
    messages: list[str] = []
    lm = load(messages)
    assert lm.n_layers == 4 and lm.spec == EMBEDDED
    assert is_cached(EMBEDDED) and n_builds(cache) == 1
    marker = json.loads((cache / EMBEDDED / CACHE_MARKER).read_text())
    assert marker["files"]["model.safetensors"] == (cache / EMBEDDED / "model.safetensors").stat().st_size
    assert marker["steerlab"] and marker["build"]
    assert [m for m in messages if "first use:" in m] and tmp_leftovers(cache) == []
    load(messages)
    assert n_builds(cache) == 1  # complete: reused, not rebuilt


def test_leftovers_of_dead_builds_are_removed(cache: Path) -> None:
    cache.mkdir()
    dead_dir = cache / f"{EMBEDDED}.tmp-{dead_pid()}"
    (dead_dir / "gguf").mkdir(parents=True)
    (dead_dir / "model.safetensors").write_bytes(b"half")
    dead_file = cache / f"{EMBEDDED}.tmp-{dead_pid()}"
    dead_file.write_bytes(b"x")
    live_recent = cache / f"{EMBEDDED}.tmp-{os.getppid()}"  # alive, not ours, young: maybe building
    live_recent.mkdir()
    live_stale = cache / f"{EMBEDDED}.tmp-1"  # alive (pid 1) but two hours old: abandoned
    live_stale.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(live_stale, (two_hours_ago, two_hours_ago))
    messages: list[str] = []
    load(messages)
    assert tmp_leftovers(cache) == [live_recent.name]
    assert sum("left over" in m for m in messages) == 3
    assert is_cached(EMBEDDED)


def test_folder_without_marker_is_not_cached_and_is_rebuilt(cache: Path) -> None:
    fake_convert(cache / EMBEDDED, None)  # complete files, but no marker: e.g. an older steerlab
    assert not is_cached(EMBEDDED)
    assert cache_problem(cache / EMBEDDED) == "no completeness marker"
    messages: list[str] = []
    load(messages)
    assert any("incomplete (no completeness marker): rebuilding" in m for m in messages)
    assert is_cached(EMBEDDED) and n_builds(cache) == 2


def test_wrong_size_is_incomplete_and_rebuilt(cache: Path) -> None:
    load([])
    weights = cache / EMBEDDED / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    assert not is_cached(EMBEDDED)
    assert "model.safetensors" in str(cache_problem(cache / EMBEDDED))
    messages: list[str] = []
    assert load(messages).n_layers == 4
    assert any("incomplete" in m and "rebuilding" in m for m in messages)
    assert n_builds(cache) == 2 and is_cached(EMBEDDED)


def test_corrupt_file_of_the_right_size_is_rebuilt(cache: Path) -> None:
    load([])
    weights = cache / EMBEDDED / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    assert is_cached(EMBEDDED)  # sizes match; only loading finds it
    messages: list[str] = []
    assert load(messages).n_layers == 4
    assert any("corrupt (SafetensorError): rebuilding" in m for m in messages)
    assert n_builds(cache) == 2 and is_cached(EMBEDDED)


def test_interrupted_build_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(out: Path, progress: Callable[[str], None] | None) -> None:
        fake_convert(out, progress)
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load([])
    assert tmp_leftovers(cache) == [] and not (cache / EMBEDDED).exists()
    monkeypatch.setattr(models, "_convert", fake_convert)
    load([])  # the lock was released
    assert is_cached(EMBEDDED)


def _first_use(cache: str, barrier: Any, results: Any) -> None:
    os.environ["STEERLAB_CACHE"] = cache
    models._convert = functools.partial(fake_convert, delay=3.0)
    messages: list[str] = []
    barrier.wait()
    lm = models.load_model(progress=messages.append)
    results.put((os.getpid(), messages, is_cached(EMBEDDED), lm.n_layers))


def test_concurrent_first_use_builds_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    cache = tmp_path / "cache"
    procs = [ctx.Process(target=_first_use, args=(str(cache), barrier, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert n_builds(cache) == 1
    assert all(cached and layers == 4 for _, _, cached, layers in outcomes)
    messages = [m for _, ms, _, _ in outcomes for m in ms]
    assert sum("first use:" in m for m in messages) == 1
    assert sum("waiting for another process" in m for m in messages) == 2
    assert tmp_leftovers(cache) == []


# --- the real conversion (slow: ~1-2 minutes each; the two tests' conversions overlap) ----------------

LOAD = "from steerlab.model.models import load_model; load_model(progress=print)"


def start_load(cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "STEERLAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", LOAD], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@dataclass
class KilledBuild:
    cache: Path
    leftover: Path
    left_after_kill: bool  # the killed build's tmp folder was there, the cache was not
    recovery: subprocess.Popen[str]  # the next load_model(), running in the background


@pytest.fixture(scope="module")
def killed_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KilledBuild]:
    """A real build SIGKILLed midway, then the load that must recover, started without waiting.

    Module-scoped and requested by both slow tests, so its conversion overlaps the other one's.
    """
    cache = tmp_path_factory.mktemp("killed") / "cache"
    doomed = start_load(cache)
    leftover = cache / f"{EMBEDDED}.tmp-{doomed.pid}"
    deadline = time.monotonic() + 180
    while not (leftover / "gguf").exists() and doomed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # into the assembly / de-quantisation
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    left = leftover.is_dir() and not (cache / EMBEDDED).exists()
    recovery = start_load(cache)
    yield KilledBuild(cache, leftover, left, recovery)
    recovery.kill()
    recovery.communicate()
    shutil.rmtree(cache, ignore_errors=True)  # ~1 GB


@pytest.mark.slow
def test_real_concurrent_first_use(tmp_path: Path, killed_build: KilledBuild) -> None:
    cache = tmp_path / "cache"
    try:
        procs = [start_load(cache) for _ in range(3)]
        outputs = [proc.communicate(timeout=400) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
        out = "".join(out for out, _ in outputs)
        assert out.count("first use:") == 1, out
        assert out.count("waiting for another process") == 2, out
        assert cache_problem(cache / EMBEDDED) is None
        assert tmp_leftovers(cache) == []
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # ~1 GB


@pytest.mark.slow
def test_real_build_killed_midway_is_cleaned_up(killed_build: KilledBuild) -> None:
    assert killed_build.left_after_kill
    out, err = killed_build.recovery.communicate(timeout=400)
    assert killed_build.recovery.returncode == 0, err[-2000:]
    assert f"removing {killed_build.leftover}, left over by an aborted build" in out
    assert cache_problem(killed_build.cache / EMBEDDED) is None
    assert tmp_leftovers(killed_build.cache) == []


def test_a_silent_step_reports_that_it_is_alive_until_it_ends() -> None:
    import time

    from steerlab.core.cache import heartbeat

    heard: list[str] = []
    with heartbeat(heard.append, "building x", typical=60.0, every=0.02):
        time.sleep(0.15)
    after = len(heard)
    time.sleep(0.1)
    assert after >= 1 and len(heard) == after  # beats while the block runs, none after it
    assert heard[0].startswith("building x: ") and "left" in heard[0]
    with heartbeat(None, "quiet", typical=1.0):  # no listener: no thread, nothing to say
        pass
