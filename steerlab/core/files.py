"""Files the user names: numbered JSONL lines, outputs checked before the work, atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steerlab.core.errors import SteerlabError


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


@contextmanager
def claimed(path: Path, what: str = "--out") -> Iterator[None]:
    """Hold ``path`` for this process while it works: a second run writing the same output is refused at
    once (not both told "wrote"). The claim is a ``.<name>.claim`` file holding our pid, made atomically
    (a hard link, which fails when it exists); one left by a process that has ended is taken over.
    Folders made for it are removed again when nothing was written into them."""
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = path.with_name(f".{path.name}.claim")
    mine = path.with_name(f".{path.name}.claim-{os.getpid()}")
    held = False
    try:
        mine.write_text(str(os.getpid()))
        held = _take(mine, marker, path, what)
        mine.unlink()
        yield
    finally:
        mine.unlink(missing_ok=True)
        if held:
            marker.unlink(missing_ok=True)
        for folder in made:  # innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _take(mine: Path, marker: Path, path: Path, what: str) -> bool:
    for _ in range(2):
        try:
            os.link(mine, marker)  # atomic, and the marker never exists half-written
            return True
        except FileExistsError:
            owner = _claim_owner(marker)
            if owner is not None:
                raise SteerlabError(
                    f"{what} {str(path)!r} is being written by another steerlab run (pid {owner}): "
                    f"wait for it to finish, or choose another {what}"
                ) from None
            marker.unlink(missing_ok=True)  # its process has ended
    raise SteerlabError(f"{what} {str(path)!r} is claimed by another steerlab run: choose another {what}")


def _claim_owner(marker: Path) -> int | None:
    """The live pid holding ``marker``, or None when the claim is stale (its process has ended)."""
    try:
        pid = int(marker.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid
