"""What gates are calibrated on: labelled user messages (package data ``gate_messages.jsonl`` or a file
of one's own), and the rule that turns neutral readings into a threshold (:func:`threshold_at`)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steerlab.core.corpus import data_path
from steerlab.core.errors import SteerlabError
from steerlab.core.files import jsonl_rows

GATE_FPR = 0.05  # the false-positive rate default thresholds are calibrated at, on neutral user messages
GATE_MESSAGES = "gate_messages.jsonl"  # built-in calibration messages (package data)


@dataclass(frozen=True)
class GateMessages:
    texts: list[str]
    labels: list[str]  # an emotion of the vectors, or "neutral"
    source: str
    sha256: str


def load_gate_messages(path: str | Path | None = None) -> GateMessages:
    """Labelled user messages (JSONL: text, label = EMOTION | neutral); default: the built-in ones."""
    where = data_path(GATE_MESSAGES) if path is None else Path(path)
    try:
        raw = where.read_bytes()
    except OSError as err:
        raise SteerlabError(
            f"cannot read gate messages {str(where)!r} ({err.strerror or err}): pass a JSONL file"
        ) from None
    texts, labels = [], []
    for n, obj in jsonl_rows(raw, str(where), SteerlabError):
        text, label = (obj.get("text"), obj.get("label")) if isinstance(obj, dict) else (None, None)
        if not isinstance(text, str) or not text.strip() or not isinstance(label, str) or not label.strip():
            raise SteerlabError(f"{where} line {n}: each line needs 'text' and 'label' (an emotion or 'neutral')")
        texts.append(text.strip())
        labels.append(label.strip().lower())
    source = f"builtin:{GATE_MESSAGES}" if path is None else str(where)
    return GateMessages(texts, labels, source, hashlib.sha256(raw).hexdigest())


def threshold_at(neutral: np.ndarray, fpr: float = GATE_FPR) -> float:
    """The lowest reading that at most ``fpr`` of ``neutral`` readings exceed (the k+1-th highest,
    k = floor(fpr * n)): a gate firing above it has a false-positive rate <= fpr on these readings."""
    if not 0 <= fpr < 1:
        raise SteerlabError(f"false-positive rate {fpr} must lie in [0, 1), e.g. 0.05")
    values = np.sort(np.asarray(neutral, dtype=float))[::-1]
    if values.size == 0 or not np.isfinite(values).all():
        raise SteerlabError("no finite neutral readings to calibrate a gate on: give neutral messages")
    return float(values[min(math.floor(fpr * values.size + 1e-9), values.size - 1)])
