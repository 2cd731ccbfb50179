"""Errors that need no model answer before torch is imported: each runs in a fresh process, which
reports at exit whether torch was ever imported."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SHIPPED, one_line_error

# Runs the CLI; at exit (also after sys.exit(2)) prints whether torch was imported, on its own line.
RUNNER = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr))\n"
    "from steerlab.cli import main\n"
    "sys.argv = ['steerlab', *sys.argv[1:]]\n"
    "main()\n"
)
SUITE = REPO / "eval" / "suites" / "necessity.yaml"


def run_fresh(argv: list[str], cwd: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HOME": str(cwd)},
    )
    return done.returncode, done.stderr


def suite_file(folder: Path, vectors: str, emotion: str = "label") -> Path:
    """A copy of the necessity suite naming ``vectors`` (relative to its own folder) and ``emotion``."""
    text = SUITE.read_text().replace("model: gemma-3-270m", f"model: gemma-3-270m\nvectors: {vectors}")
    text = text.replace("emotions: [label]", f"emotions: [{emotion}]", 1)
    path = folder / "suites" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    data = folder / "eval" / "data"  # the suite's prompts, found from its folder
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "eval" / "data" / "heldout_emotions.jsonl", data / "heldout_emotions.jsonl")
    return path


def cases(tmp: Path) -> list[tuple[list[str], list[str]]]:
    broken = tmp / "broken.safetensors"
    broken.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    (tmp / "suites").mkdir(exist_ok=True)
    shutil.copy(SHIPPED, tmp / "suites" / "v.safetensors")
    vec = str(SHIPPED)
    keep = tmp / "keep.png"
    keep.write_bytes(b"not replaced")
    return [
        (["steer", "hi", "--vectors", str(tmp / "none.safetensors"), "--emotion", "hopeful"], ["not found"]),
        (["steer", "hi", "--vectors", str(broken), "--emotion", "hopeful"], ["cannot read vector file"]),
        (["steer", "hi", "--vectors", vec, "--emotion", "hopefull"], ["did you mean 'hopeful'"]),
        (["steer", "hi", "--vectors", vec, "--ablate", "calmm"], ["unknown emotion 'calmm'"]),
        (["steer", "hi", "--vectors", vec, "--emotion", "calm", "--layers", "99"], ["layer 99 is out of range"]),
        (["steer", "hi", "--vectors", vec, "--emotion", "calm", "--reader-layer", "99"], ["--reader-layer 99"]),
        (["scope", "hi", "--vectors", str(tmp / "none.safetensors")], ["not found"]),
        (["scope", "hi", "--vectors", vec, "--layers", "40"], ["layer 40 is out of range"]),
        (["scope", "hi", "--vectors", vec, "--plot", "out.txt"], ["'out.txt' must end in .png, .svg or .pdf"]),
        (["scope", "hi", "--vectors", vec, "--plot", str(keep)], ["keep.png' already exists", "--force"]),
        (["evaluate", "--vectors", str(broken), "--corpus", "x.jsonl"], ["cannot read vector file"]),
        (["extract", "--corpus", str(tmp / "none.jsonl"), "--out", str(tmp / "o.safetensors")], ["none.jsonl"]),
        (["extract", "--out", str(tmp / "o.bin")], ["must end in .safetensors"]),
        (["validate", str(SUITE), "--n", "1", "--out", str(tmp / "run")], ["--n 1", "use --n 4"]),
        (["validate", str(SUITE), "--out", str(tmp / "r2"), "--replies-from", str(tmp)], ["has no rows.csv", "--out"]),
        (["validate", str(suite_file(tmp / "a", "missing.safetensors"))], ["missing.safetensors", "not found"]),
        (["validate", str(suite_file(tmp, "v.safetensors", "hopefull")), "--out", str(tmp / "r")], ["'hopefull'"]),
    ]


def test_model_free_errors_answer_before_torch(tmp_path: Path) -> None:
    for argv, needles in cases(tmp_path):
        code, err = run_fresh(argv, tmp_path)
        *shown, torch_line = err.strip().splitlines()
        assert torch_line == "NO-TORCH", (argv, err)
        one_line_error(code, "\n".join(shown), *needles)
    assert (tmp_path / "keep.png").read_bytes() == b"not replaced" and not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("relative", [True, False])
def test_a_suites_vectors_resolve_beside_it(tmp_path: Path, relative: bool) -> None:
    """The suite's ``vectors:`` is found from another working directory, as its prompts are: the run
    gets past every model-free check (to the unknown emotion planted here)."""
    name = "v.safetensors" if relative else str(tmp_path / "suites" / "v.safetensors")
    (tmp_path / "suites").mkdir()
    shutil.copy(SHIPPED, tmp_path / "suites" / "v.safetensors")
    suite = suite_file(tmp_path, name, "hopefull")
    (tmp_path / "elsewhere").mkdir()
    code, err = run_fresh(["validate", str(suite), "--out", str(tmp_path / "r")], tmp_path / "elsewhere")
    *shown, torch_line = err.strip().splitlines()
    assert torch_line == "NO-TORCH", err
    one_line_error(code, "\n".join(shown), "unknown emotion 'hopefull'", "did you mean 'hopeful'")
