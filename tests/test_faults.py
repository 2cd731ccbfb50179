"""Fault injection: every bad input and fault a user met gives one line on stderr, exit code 2, no
traceback, and leaves no file behind. Each case builds its fault in a fresh folder, runs the CLI in a
subprocess-free call of ``main()``, and checks the folder afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .conftest import run

Case = Callable[[Path, Path], list[str]]  # (tiny vector file, scratch folder) -> argv


def _rewrite(
    src: Path,
    dst: Path,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
    meta: Callable[[dict], str] | None = None,
) -> Path:
    """A copy of a vector file with its tensors or metadata damaged."""
    with safe_open(str(src), framework="pt") as f:
        header = (f.metadata() or {})["steerlab"]
        data = {k: f.get_tensor(k) for k in f.keys()}
    if tensors:
        tensors(data)
    text = meta(json.loads(header)) if meta else header
    save_file(data, str(dst), metadata={"steerlab": text})
    return dst


def _few_emotions(data: dict[str, torch.Tensor]) -> None:
    for name in ("directions", "raw_norms", "probe_weight", "probe_bias"):
        data[name] = data[name][:, :2].contiguous()


def _nan(data: dict[str, torch.Tensor]) -> None:
    data["directions"][:] = float("nan")


def _zero(data: dict[str, torch.Tensor]) -> None:
    data["directions"][:] = 0.0


def _meta(**changes: object) -> Callable[[dict], str]:
    return lambda m: json.dumps({**m, **changes})


def _vec(tensors=None, meta=None) -> Callable[[Path, Path], str]:  # type: ignore[no-untyped-def]
    return lambda v, d: str(_rewrite(v, d / "bad.safetensors", tensors, meta))


STEER = ["steer", "hello", "--max-new-tokens", "2"]
CASES: dict[str, tuple[Case, str]] = {
    # vector files that are wrong in a way a loader could miss
    "vectors: 2 emotions' tensors, 3 in the metadata": (
        lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", _vec(_few_emotions)(v, d)],
        "directions have shape",
    ),
    "vectors: metadata not JSON": (
        lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", _vec(meta=lambda m: "{not json")(v, d)],
        "not valid JSON",
    ),
    "vectors: NaN directions": (lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", _vec(_nan)(v, d)], "NaN"),
    "vectors: all-zero directions": (
        lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", _vec(_zero)(v, d)],
        "unit vectors",
    ),
    "vectors: layer 99": (
        lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", _vec(meta=_meta(chosen_layer=99))(v, d)],
        "99",
    ),
    "vectors: not safetensors": (
        lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", str(_write(d / "x.safetensors", "junk"))],
        "cannot read",
    ),
    # strengths that are finite as text but not as an edit
    "steer --alpha 1e30": (
        lambda v, d: [*STEER, "--vectors", str(v), "--emotion", "joyful", "--alpha", "1e30"],
        "1e+30",
    ),
    "steer --sweep-alpha 0,1e39": (
        lambda v, d: [*STEER, "--vectors", str(v), "--emotion", "joyful", "--sweep-alpha", "0,1e39"],
        "1e+39",
    ),
    "steer --clamp calm=nan": (lambda v, d: [*STEER, "--vectors", str(v), "--clamp", "joyful=nan"], "finite"),
    "steer --alpha inf": (
        lambda v, d: [*STEER, "--vectors", str(v), "--emotion", "joyful", "--alpha", "inf"],
        "finite",
    ),
    # inputs longer than the model reads
    "steer: prompt beyond the context": (
        lambda v, d: ["steer", "word " * 600, "--vectors", str(v), "--emotion", "joyful"],
        "context",
    ),
    "scope: text beyond the context": (lambda v, d: ["scope", "word " * 600, "--vectors", str(v)], "context"),
    # outputs that cannot be written, caught before any work
    "extract --out under a file": (
        lambda v, d: ["extract", "--model", "random:tiny-gemma2", "--out", str(_write(d / "f", "x") / "v.safetensors")],
        "under the file",
    ),
    "extract --out is a folder": (
        lambda v, d: ["extract", "--model", "random:tiny-gemma2", "--out", str(_mkdir(d / "dir.safetensors"))],
        "a folder",
    ),
    "extract --out exists": (
        lambda v, d: ["extract", "--model", "random:tiny-gemma2", "--out", str(_write(d / "v.safetensors", "x"))],
        "--force",
    ),
    "extract --out under /proc": (
        lambda v, d: ["extract", "--model", "random:tiny-gemma2", "--out", "/proc/steerlab/x.safetensors"],
        "not writable",
    ),
    "scope --plot under a file": (
        lambda v, d: ["scope", "hi", "--vectors", str(v), "--plot", str(_write(d / "f", "x") / "p.png")],
        "under the file",
    ),
    "scope --plot under /proc": (
        lambda v, d: ["scope", "hi", "--vectors", str(v), "--plot", "/proc/steerlab/p.png"],
        "not writable",
    ),
    "report --out under a file": (
        lambda v, d: ["report", "--vectors", str(v), "--out", str(_write(d / "f", "x") / "r.html")],
        "under the file",
    ),
    "report --out under /proc": (
        lambda v, d: ["report", "--vectors", str(v), "--out", "/proc/x/r.html"],
        "not writable",
    ),
    "validate --out under a file": (
        lambda v, d: ["validate", str(_suite(d)), "--vectors", str(v), "--out", str(_write(d / "f", "x") / "o")],
        "under the file",
    ),
    "validate --out exists": (
        lambda v, d: ["validate", str(_suite(d)), "--vectors", str(v), "--out", str(_results(d / "o"))],
        "--force",
    ),
    "validate: prompt beyond the context": (
        lambda v, d: ["validate", str(_suite(d, "word " * 600)), "--vectors", str(v), "--out", str(d / "o")],
        "context",
    ),
    # what a newcomer met
    "scope --plot out.txt": (lambda v, d: ["scope", "hi", "--vectors", str(v), "--plot", "out.txt"], ".png, .svg"),
    "scope --plot exists": (
        lambda v, d: ["scope", "hi", "--vectors", str(v), "--plot", str(_write(d / "keep.png", "x"))],
        "--force",
    ),
    "--vectors is a folder": (lambda v, d: [*STEER, "--emotion", "joyful", "--vectors", str(d)], "is a folder"),
    "--prompts-file is a folder": (
        lambda v, d: ["steer", "--prompts-file", str(d), "--vectors", str(v), "--emotion", "joyful"],
        "is a folder",
    ),
    "validate --prompts is a folder": (
        lambda v, d: ["validate", str(_suite(d)), "--vectors", str(v), "--prompts", str(d), "--out", str(d / "o")],
        "is a folder",
    ),
    "extract --corpus is a folder": (
        lambda v, d: ["extract", "--model", "random:tiny-gemma2", "--corpus", str(d), "--out", f"{d}/v.safetensors"],
        "is a folder",
    ),
    "validate: YAML syntax error": (
        lambda v, d: ["validate", str(_write(d / "s.yaml", "name: x\nprompts: [a, b\n")), "--vectors", str(v)],
        "at line",
    ),
    "extract: another run is writing --out": (
        lambda v, d: ["extract", "--model", "random:tiny-gemma2", "--out", str(_claim(d / "v.safetensors"))],
        "another steerlab run",
    ),
    "steer --model: an id neither on disk nor in the Hugging Face cache": (
        lambda v, d: [*STEER, "--emotion", "joyful", "--model", "no-such-org/no-such-model", "--vectors", str(v)],
        "hf download no-such-org/no-such-model",
    ),
    "steer --emotion Joyfull": (lambda v, d: [*STEER, "--vectors", str(v), "--emotion", "Joyfull"], "did you mean"),
    # usage errors from click: one line too
    "steer --max-new-tokens 0": (lambda v, d: [*STEER, "--max-new-tokens", "0"], "--max-new-tokens"),
    "unknown command": (lambda v, d: ["stear"], "stear"),
    "unknown option": (lambda v, d: ["scope", "hi", "--colour"], "--colour"),
    "bad choice": (lambda v, d: ["steer", "hi", "--positions", "everywhere"], "everywhere"),
    "extract --test-fraction 1.5": (lambda v, d: ["extract", "--test-fraction", "1.5"], "1.5"),
    "steer: nothing to steer": (lambda v, d: ["steer", "hi", "--vectors", str(v)], "nothing to steer"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _claim(path: Path) -> Path:
    """``path`` as held by a running steerlab (this test process is alive)."""
    path.with_name(f".{path.name}.claim").write_text(str(os.getpid()))
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _results(path: Path) -> Path:
    path.mkdir()
    (path / "summary.json").write_text("{}")
    return path


def _suite(folder: Path, prompt: str = "a long night") -> Path:
    path = folder / "suite.yaml"
    path.write_text(
        json.dumps(
            {  # JSON is YAML
                "name": "tiny",
                "prompts": ["a day at the sea", prompt],
                "generation": {"max_new_tokens": 2},
                "conditions": [
                    {"name": "baseline"},
                    {"name": "add", "op": "add", "emotions": ["joyful"], "alphas": [4]},
                ],
                "metrics": {"m": {"kind": "reply", "emotion": "joyful"}},
                "claims": [{"name": "c", "condition": "add", "metric": "m", "direction": "increase"}],
            }
        )
    )
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_fault_gives_one_line_and_leaves_nothing(
    case: str, tiny_vec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build, needle = CASES[case]
    argv = build(tiny_vec_file, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (case, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
    assert needle in lines[0], (case, needle, lines[0])
    assert "Traceback" not in err + out
    assert sorted(tmp_path.rglob("*")) == before, f"{case} left files behind"


@pytest.mark.parametrize(("below", "needle"), [("", "is a file"), ("sub/dir", "lies under the file")])
@pytest.mark.parametrize("argv", [["steer", "hi", "--emotion", "hopeful"], ["models"]])
def test_a_cache_that_is_a_file_is_one_error(
    below: str,
    needle: str,
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STEERLAB_CACHE", str(_write(tmp_path / "cache", "x") / below))
    code, out, err = run(argv, capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert out == "" and "Traceback" not in err


def test_emotion_names_are_stored_as_the_file_spells_them(
    tiny_vec_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [*STEER, "--vectors", str(tiny_vec_file), "--emotion", "Joyful", "--json"]
    code, out, err = run(argv, capsys, monkeypatch)
    assert code == 0, err
    assert "Joyful" not in out and '"joyful"' in out
    argv = [*STEER, "--vectors", str(tiny_vec_file), "--ablate", "Grim:zero", "--clamp", "EDGY=1"]
    code, out, err = run(argv, capsys, monkeypatch)
    assert code == 0 and "-grim:zero edgy=1;" in err and "Grim" not in err + out and "EDGY" not in err + out, err
    assert "edit at layers" in out and "alpha" not in out, out  # an ablation or a clamp has no alpha


def test_greedy_samples_warn(
    tiny_vec_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(
        [*STEER, "--vectors", str(tiny_vec_file), "--emotion", "joyful", "--samples", "2"], capsys, monkeypatch
    )
    assert code == 0 and "identical" in err


def test_empty_reply_is_reported_not_scored(tiny_vec_file: Path) -> None:
    from steerlab.read.comparison import Comparison

    row = Comparison("p", 0, 4.0, (1,), 1.0, "a reply", "  ", torch.zeros(3).numpy(), torch.zeros(3).numpy())
    steered = row.to_json(("a", "b", "c"))["steered"]
    assert steered == {"text": "  ", "empty": True, "incoherent": False, "scores": None}
    broken = Comparison("p", 0, 4.0, (1,), 1.0, "a", "la la", np.zeros(3), np.full(3, np.nan), False, True)
    assert broken.to_json(("a", "b", "c"))["steered"] == {
        "text": "la la",
        "empty": False,
        "incoherent": True,
        "scores": None,
    }


def test_parsing_arguments_imports_neither_torch_nor_transformers() -> None:
    """--help and argument errors answer at once: parsing must not import the heavy stack."""
    code = (
        "import sys\nfrom steerlab.cli import main\nsys.argv = ['steerlab', 'steer', 'x', '--max-new-tokens', '0']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'pyvene', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "", f"imported at parse time: {done.stdout}"
    assert "error: " in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["steer", "hi", "--emotion", "hopeful", "--vectors", "missing.safetensors"],
        ["steer", "hi", "--emotion", "hopeful", "--prompts-file", "missing.jsonl"],
        ["validate", "SUITE", "--vectors", "missing.safetensors"],
        ["validate", "SUITE", "--prompts", "missing.jsonl"],
        ["validate", "missing.yaml"],
    ],
)
def test_errors_that_need_no_model_come_before_torch(argv: list[str], tmp_path: Path) -> None:
    """Files that do not exist are refused in the command's body before the heavy stack is imported."""
    argv = [str(_suite(tmp_path)) if a == "SUITE" else a for a in argv]
    code = (
        f"import sys\nfrom steerlab.cli import main\nsys.argv = ['steerlab', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "heavy = [m for m in ('torch', 'transformers', 'pyvene', 'sklearn') if m in sys.modules]\n"
        "print('heavy', ','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    )
    assert "exit 2" in done.stdout and "heavy \n" in done.stdout + "\n", (done.stdout, done.stderr)
    assert "not found" in done.stderr


def test_a_claim_left_by_an_ended_run_is_taken_over(tmp_path: Path) -> None:
    from steerlab.core.errors import SteerlabError
    from steerlab.core.files import claimed

    out = tmp_path / "new" / "v.safetensors"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out.parent.mkdir()
    marker = out.with_name(".v.safetensors.claim")
    marker.write_text(ended.stdout.strip())
    with claimed(out):
        assert marker.read_text() == str(os.getpid())
        with pytest.raises(SteerlabError, match="another steerlab run"):
            with claimed(out):
                pass
        assert marker.exists(), "a refused claim must not release the holder's"
    assert not marker.exists()
    with claimed(tmp_path / "a" / "b" / "v.safetensors"):
        assert (tmp_path / "a" / "b").is_dir()
    assert not (tmp_path / "a").exists(), "folders made for a claim are removed when nothing was written"


def test_models_before_first_use_and_the_emotion_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path))  # nothing built yet
    code, out, _ = run(["models"], capsys, monkeypatch)
    assert code == 0 and "?" not in out, out
    assert "gemma-3-270m               18    640  no" in out, out
    code, out, _ = run(["emotions", "--json"], capsys, monkeypatch)
    table = json.loads(out)
    assert code == 0 and len(table) == 20 and table["hopeful"]["valence"] > 0 > table["desperate"]["valence"]


def test_a_missing_extra_is_one_line_naming_it(
    tiny_vec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from steerlab.core import extras

    real = extras.missing
    monkeypatch.setattr(extras, "missing", lambda extra: EXTRAS_GONE.get(extra, ()) or real(extra))
    argv = [*STEER, "--vectors", str(tiny_vec_file), "--emotion", "joyful", "--reader", "lexicon"]
    code, _, err = run(argv, capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "pip install 'steerlab[lexicon]'" in err, err
    code, _, err = run(["scope", "hi", "--vectors", str(tiny_vec_file), "--plot", str(tmp_path / "p.png")], capsys,
                       monkeypatch)  # fmt: skip
    assert code == 2 and "pip install 'steerlab[plots]'" in err and not (tmp_path / "p.png").exists(), err
    from steerlab.core.vectors import side_files

    assert "sweep_png" not in side_files(tmp_path / "v.safetensors")  # extract writes the table, not the figure


EXTRAS_GONE = {"lexicon": ("vaderSentiment",), "plots": ("matplotlib",)}
