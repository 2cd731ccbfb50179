"""Suite prompts: loading (JSONL with ``text`` or plain lines), stratified selection, path resolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steerlab.core.errors import SuiteError
from steerlab.core.files import existing_file, jsonl_rows
from steerlab.validate.spec import Suite


@dataclass(frozen=True)
class Prompt:
    text: str  # the prompt as written in the file
    label: str | None = None  # its emotion (or "neutral"), from an ``emotion`` or ``label`` field


def load_prompts(path: str | Path) -> list[Prompt]:
    """JSONL with a ``text`` field (``emotion``, else ``label``, kept as the label; other fields ignored) or
    plain text."""
    path = existing_file(path, "prompt file", "pass a JSONL file with a 'text' field or a text file", SuiteError)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(f"cannot read prompt file {str(path)!r} ({err}): pass a UTF-8 text or JSONL file") from None
    lines = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    lines = [(i, line) for i, line in lines if line]
    if not lines:
        raise SuiteError(f"prompt file {str(path)!r} is empty: give one prompt per line")
    if not lines[0][1].startswith("{"):
        return [Prompt(line) for _, line in lines]
    out = []
    for number, row in jsonl_rows(text, str(path), SuiteError):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise SuiteError(f"{path} line {number}: needs a non-empty 'text' field")
        label = row.get("emotion") or row.get("label")
        out.append(Prompt(row["text"].strip(), str(label) if label else None))
    return out


def select_prompts(prompts: Sequence[Prompt], n: int | None) -> list[Prompt]:
    """The first ``n`` prompts; labelled prompts are taken round-robin over labels (file order)."""
    if n is None or n >= len(prompts):
        return list(prompts)
    if all(p.label is None for p in prompts):
        return list(prompts[:n])
    queues: dict[str | None, list[Prompt]] = {}
    for p in prompts:
        queues.setdefault(p.label, []).append(p)
    out: list[Prompt] = []
    while len(out) < n:
        for queue in queues.values():
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


def suite_prompts(suite: Suite, override: str | None = None, n: int | None = None) -> list[Prompt]:
    if override:
        prompts = load_prompts(override)
    elif suite.prompts.file:
        prompts = load_prompts(resolve_path(suite.prompts.file, suite.path))
    else:
        prompts = [Prompt(t) for t in suite.prompts.inline]
    return select_prompts(prompts, n if n is not None else suite.n)


def resolve_path(name: str, suite_path: str) -> Path:
    """A relative path, tried against the current directory, then the suite's folder and its parents."""
    path = Path(name)
    if path.is_absolute() or path.exists() or not suite_path:
        return path
    for base in Path(suite_path).resolve().parents:
        if (base / path).exists():
            return base / path
    return path
