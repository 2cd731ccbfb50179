"""Vector files without torch: where they live and what their header says.

A ``.safetensors`` file starts with an 8-byte little-endian length and that many bytes of JSON; steerlab
keeps its metadata there (``__metadata__["steerlab"]``). Reading it needs neither torch nor the
tensors, so the CLI checks a vector file (and the emotions a command names) before it imports the
model stack; :func:`vectors.load_vectors` reads the same header through :func:`read_meta`.
"""

from __future__ import annotations

import json
import struct
from importlib.resources import files
from pathlib import Path
from typing import Any

from steerlab.core.cache import cache_dir
from steerlab.core.errors import VectorsError
from steerlab.core.files import existing_file
from steerlab.core.names import spec_folder

FORMAT_VERSION = 2
MAX_HEADER = 100_000_000  # safetensors' own limit on the header's length


def side_files(path: Path) -> dict[str, Path]:
    """The files written beside a vector file, named after it so several files can share a folder (the
    figure only where the ``plots`` extra is installed)."""
    from steerlab.core.extras import has

    sides = {
        "json": path.with_suffix(".json"),
        "sweep_csv": path.with_name(f"{path.stem}.layer_sweep.csv"),
        "sweep_png": path.with_name(f"{path.stem}.layer_sweep.png"),
    }
    if not has("plots"):
        del sides["sweep_png"]
    return sides


def user_vectors(spec: str) -> Path:
    """Where ``steerlab extract`` saves vectors for ``spec`` when no ``--out`` is given."""
    return cache_dir() / "vectors" / spec_folder(spec) / "emotions.safetensors"


def shipped_vectors(spec: str) -> Path | None:
    """The vector file for ``spec``: the one shipped with steerlab (package data), else the one
    ``steerlab extract`` saved in the cache by default (:func:`user_vectors`); None when neither exists."""
    shipped = Path(str(files("steerlab.shipped") / spec_folder(spec) / "emotions.safetensors"))
    for path in (shipped, user_vectors(spec)):
        if path.is_file():
            return path
    return None


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors header of ``path`` (tensor entries and ``__metadata__``), read without torch."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER:
                raise ValueError(f"header length {length}")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as err:
        raise VectorsError(f"cannot read vector file {str(path)!r} ({err}): re-run `steerlab extract`") from None
    if not isinstance(header, dict):
        raise VectorsError(f"cannot read vector file {str(path)!r} (no header): re-run `steerlab extract`")
    return header


def read_meta(path: str | Path, tensors: tuple[str, ...] = ()) -> dict[str, Any]:
    """The steerlab metadata of a vector file (``emotions`` included), every problem one line; ``tensors``
    must all be present."""
    path = existing_file(path, "vector file", "run `steerlab extract` or pass --vectors FILE.safetensors", VectorsError)
    header = read_header(path)
    extra = header.get("__metadata__") or {}
    if "steerlab" not in extra or any(name not in header for name in tensors):
        raise VectorsError(f"{str(path)!r} has no steerlab metadata: it was not written by steerlab")
    try:
        meta = json.loads(extra["steerlab"])
    except json.JSONDecodeError as err:
        raise VectorsError(
            f"{str(path)!r}: its metadata is not valid JSON ({err.msg}): re-run `steerlab extract`"
        ) from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise VectorsError(
            f"{str(path)!r} has format version {version}, this steerlab reads {FORMAT_VERSION}: "
            "re-run `steerlab extract`"
        )
    emotions = meta.get("emotions")
    if not isinstance(emotions, list) or not emotions or not all(isinstance(e, str) for e in emotions):
        raise VectorsError(f"{str(path)!r}: metadata lists no emotions: re-run `steerlab extract`")
    return meta
