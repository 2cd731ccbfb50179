"""Files the user names: numbered JSONL lines, outputs checked before the work, atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import SteerlabError


def jsonl_rows(raw: bytes | str, name: str, error: type[SteerlabError] = SteerlabError) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) for every non-blank line; a bad line raises ``error`` naming it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise error(f"{name!r} is not UTF-8 text: save it as UTF-8 JSONL") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise error(f"{name} line {number}: malformed JSON ({err.msg}): one JSON object per line") from None
    return rows


def existing_file(path: str | Path, what: str, fix: str, error: type[SteerlabError] = SteerlabError) -> Path:
    """``path`` as an existing file; a folder or a missing path is one error naming it and ``fix``."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a folder, not a file: {fix}")
    if not path.is_file():
        raise error(f"{what} {str(path)!r} not found: {fix}")
    return path


def check_writable(path: str | Path, what: str = "--out", *, directory: bool = False, force: bool = True) -> Path:
    """Fail before the expensive work when ``path`` cannot be written (or exists and ``force`` is off)."""
    path = Path(path)
    if path.exists() and directory != path.is_dir():
        kind = "a folder" if path.is_dir() else "a file"
        raise SteerlabError(f"{what} {str(path)!r} is {kind}: choose another {what}")
    if path.exists() and not force and not directory:
        raise SteerlabError(
            f"{what} {str(path)!r} already exists: pass --force to overwrite it, or choose another {what}"
        )
    parent = path if directory and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SteerlabError(f"{what} {str(path)!r} lies under the file {str(parent)!r}: choose another {what}")
    probe = parent / f".steerlab-write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise SteerlabError(
            f"{what} {str(path)!r} is not writable ({err.strerror or err}): choose another {what}"
        ) from None
    return path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` then rename over ``path``: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # some writers (safetensors) create their files private
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
