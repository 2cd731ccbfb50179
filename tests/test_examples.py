"""Examples use only the public API and must keep running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args"), [("steer_and_read.py", ["--tokens", "12"]), ("custom_corpus.py", [])])
def test_example_runs(script: str, args: list[str], tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path / "v" / "emotions.safetensors")] if script == "custom_corpus.py" else []
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
