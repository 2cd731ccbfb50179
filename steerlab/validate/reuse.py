"""A finished run's replies, read again: ``validate --replies-from DIR`` takes the replies, perplexities and
displacements of an earlier run of the same suite (its ``rows.csv`` and ``summary.json``) instead of
generating them, then re-reads, measures and decides as usual. A new reader costs a reading pass, not a
generation; the replies are exactly those of the earlier run, so only the reading differs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steerlab.core.errors import SuiteError

if TYPE_CHECKING:
    from steerlab.read.gate import GateDecision
    from steerlab.steer.interventions import Displacement
    from steerlab.validate.rows import Rows

NEEDED = ("rows.csv", "summary.json")


def check_replies_from(folder: str | Path) -> Path:
    """The folder of an earlier run (``rows.csv`` and ``summary.json`` inside); checked before any model work."""
    path = Path(folder)
    missing = [name for name in NEEDED if not (path / name).is_file()]
    if missing:
        raise SuiteError(
            f"--replies-from {str(path)!r} has no {' or '.join(missing)}: give the --out folder of an earlier "
            "`steerlab validate` run of this suite"
        )
    return path


def reused_rows(
    folder: Path, rows: Rows, gates: dict[str, list[GateDecision]]
) -> tuple[list[list[list[str]]], Displacement, np.ndarray]:
    """The earlier run's replies ([condition][prompt][sample]), the displacement each condition caused, and
    every row's perplexity (job order, nan where it was not measured); every row of ``rows`` must be there,
    with the same prompt, and every gate must fire as often as it did then, or the run is refused
    (another suite, another --n, other prompts, a changed gate)."""
    summary = json.loads((folder / "summary.json").read_text())
    if summary.get("suite") != rows.suite.name:
        raise SuiteError(
            f"--replies-from {str(folder)!r} holds suite {summary.get('suite')!r}, not {rows.suite.name!r}: "
            "give a run of this suite"
        )
    _check_gates(folder, summary, rows, gates)
    found: dict[tuple[str, int, int], dict[str, Any]] = {}
    with (folder / "rows.csv").open(newline="") as f:
        for line in csv.DictReader(f):
            found[(line["condition"], int(line["prompt_index"]), int(line["sample"]))] = line
    replies: list[list[list[str]]] = [[[] for _ in rows.prompts] for _ in rows.conditions]
    ppl = np.full(len(rows.jobs), np.nan)
    for j, (c, p, s) in enumerate(rows.jobs):
        key = (rows.conditions[c].name, p, s)
        row = found.get(key)
        if row is None or row["prompt"] != rows.prompts[p].text:
            what = "has no row" if row is None else "holds another prompt"
            raise SuiteError(
                f"--replies-from {str(folder)!r} {what} for condition {key[0]!r}, prompt {p}, sample {s}: "
                "it was run with other prompts, --n or conditions; run without --replies-from"
            )
        replies[c][p].append(row["reply"])
        ppl[j] = float(row["ppl"]) if row["ppl"] not in ("", "nan") else math.nan
    from steerlab.steer.interventions import Displacement

    record = Displacement()
    for q in summary.get("quality", []):
        moved = q.get("displacement")
        if isinstance(moved, int | float) and math.isfinite(moved):
            record.merge({q["name"]: float(moved)}, {q["name"]: 1})
    return replies, record, ppl


def _check_gates(folder: Path, summary: dict[str, Any], rows: Rows, gates: dict[str, list[GateDecision]]) -> None:
    """A gated condition's replies are only the earlier run's if its gate fires as it did then."""
    then = {(g["condition"], g["label"]): g["fired"] for g in summary.get("gates") or []}
    for name, decisions in gates.items():
        for label in sorted({p.label or "-" for p in rows.prompts}):
            now = sum(d.fired for d, p in zip(decisions, rows.prompts, strict=True) if (p.label or "-") == label)
            if then.get((name, label)) != now:
                raise SuiteError(
                    f"--replies-from {str(folder)!r}: the gate of {name!r} fires on {now} {label} messages now, on "
                    f"{then.get((name, label))} then (the vector file's gate changed): run without --replies-from"
                )
