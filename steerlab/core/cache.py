"""The model cache: one process builds an entry, the others wait; complete or rebuilt, never half.

An entry is a folder built in a private ``<name>.tmp-<pid>`` folder under a file lock, then marked
complete (``steerlab-cache.json``: every file's size) and renamed into place. A folder whose marker is
missing or disagrees is rebuilt; leftovers of aborted builds are removed before the next build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

Progress = Callable[[str], None]
Convert = Callable[[Path, "Progress | None"], None]  # (folder to fill, progress)
CACHE_MARKER = "steerlab-cache.json"  # written last: the cache is complete only if it matches
CACHE_FORMAT = 1
HEARTBEAT_S = 30.0  # a silent step reports that it is alive this often
BUILD_TYPICAL_S = 70.0  # a built-in model's cache build on a busy 2-core machine (de-quantising dominates)
STALE_BUILD_S = 3600  # a build leftover of a live pid older than this is abandoned


def cache_dir() -> Path:
    """``$STEERLAB_CACHE``, else ``$XDG_CACHE_HOME/steerlab``, else ``~/.cache/steerlab``."""
    if os.environ.get("STEERLAB_CACHE"):
        folder = Path(os.environ["STEERLAB_CACHE"])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "steerlab"
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        from steerlab.core.errors import SteerlabError

        where = "is a file, not a folder" if existing == folder else f"lies under the file {str(existing)!r}"
        raise SteerlabError(f"the cache {str(folder)!r} {where}: set STEERLAB_CACHE to a folder")
    return folder


def cache_problem(target: Path) -> str | None:
    """Why the cache folder ``target`` is not complete, or None when its marker and sizes match."""
    files = (marker(target) or {}).get("files")
    if not isinstance(files, dict) or not files:
        return "no completeness marker" if target.exists() else "missing"
    for name, size in files.items():
        path = target / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def marker(target: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads((target / CACHE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT else None


@contextmanager
def heartbeat(progress: Progress | None, what: str, typical: float, every: float = HEARTBEAT_S) -> Iterator[None]:
    """While the block runs, ``progress`` hears every ``every`` seconds how long ``what`` has taken and
    about how long is left (from its ``typical`` duration): a long step that reports nothing itself
    still shows, in a log, that it is alive."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            spent = time.monotonic() - start
            left = f"about {typical - spent:.0f}s left" if spent < typical else "taking longer than usual"
            progress(f"{what}: {spent:.0f}s so far, {left}")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def say(progress: Progress | None, message: str) -> None:
    if progress:
        progress(message)


def ensure_cache(
    target: Path, convert: Convert, source: str, progress: Progress | None, corrupt_build: str | None = None
) -> None:
    """Make ``target`` a complete cache: one process builds it with ``convert(folder, progress)``,
    concurrent ones wait and reuse it; ``source`` is recorded in the marker.

    ``corrupt_build``: the marker's build id of a cache that failed to load; it is rebuilt unless
    another process has replaced it meanwhile.
    """
    if corrupt_build is None and cache_problem(target) is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.with_name(f"{target.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(progress, f"waiting for another process that is building the {target.name} cache in {target}")
        lock.acquire()
    try:
        problem = cache_problem(target)
        replaced = (marker(target) or {}).get("build") != corrupt_build
        if problem is None and (corrupt_build is None or replaced):
            return  # complete, possibly built by the process we waited for
        if problem not in (None, "missing"):
            say(progress, f"the {target.name} cache in {target} is incomplete ({problem}): rebuilding it")
        _remove(target)
        _remove_leftovers(target, progress)
        _build(target, convert, source, progress)
    finally:
        lock.release()


def _remove_leftovers(target: Path, progress: Progress | None) -> None:
    """Delete ``<target>.tmp-<pid>`` of aborted builds; the caller holds the lock, so none is running."""
    pattern = re.compile(rf"{re.escape(target.name)}\.tmp-(\d+)")
    for path in target.parent.iterdir():
        found = pattern.match(path.name)
        if found and _abandoned(int(found.group(1)), path):
            say(progress, f"removing {path}, left over by an aborted build")
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _abandoned(pid: int, path: Path) -> bool:
    """Our pid or a dead one; a live pid may be reused, someone else's or on another host: age decides."""
    if pid == os.getpid():
        return True
    if os.name != "nt":  # there os.kill(pid, 0) would terminate the process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # PermissionError: alive, another user's
    return time.time() - path.lstat().st_mtime > STALE_BUILD_S


def _build(target: Path, convert: Convert, source: str, progress: Progress | None) -> None:
    """Convert into a private ``<target>.tmp-<pid>``, mark it complete, and rename it into place."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        say(progress, f"first use: building the {target.name} cache in {target} (once)")
        with heartbeat(progress, f"building the {target.name} cache", BUILD_TYPICAL_S):
            convert(tmp, progress)
        _write_marker(tmp, source)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # also on Ctrl-C; a SIGKILL leaves it to the next build


def _write_marker(folder: Path, source: str) -> None:
    from steerlab import __version__

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:  # the marker must not reach the disk before the data it vouches for
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    entry = {
        "format": CACHE_FORMAT,
        "build": uuid.uuid4().hex,
        "steerlab": __version__,
        "source": source,
        "files": {p.relative_to(folder).as_posix(): p.stat().st_size for p in files},
    }
    (folder / CACHE_MARKER).write_text(json.dumps(entry, indent=1) + "\n")
