"""How numbers are shown to people: one rule per kind of number, shared by the CLI, pages and figures."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def fmt_p(value: float | None, missing: str = "nan") -> str:
    """A p-value: four decimals when ordinary, two significant digits when tiny (< 0.001)."""
    if value is None or not math.isfinite(value):
        return missing
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.2g}"


def strongest(
    emotions: Sequence[str], scores: Sequence[float | None] | np.ndarray | None, k: int = 3
) -> list[tuple[str, float]]:
    """The ``k`` highest-scoring emotions, strongest first; emotions a reader does not read (NaN, None)
    are left out. The one ranking every display uses (steer, scope, the report, the live view)."""
    if scores is None:
        return []
    pairs = [(float(s), e) for e, s in zip(emotions, scores, strict=True) if s is not None and np.isfinite(s)]
    return [(e, s) for s, e in sorted(pairs, key=lambda p: -p[0])[:k]]


def strongest_text(emotions: Sequence[str], scores: Sequence[float | None] | np.ndarray | None, k: int = 3) -> str:
    """:func:`strongest` as text: ``"hopeful +0.412, calm +0.101"``."""
    return ", ".join(f"{e} {s:+.3f}" for e, s in strongest(emotions, scores, k))
