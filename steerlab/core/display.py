"""How numbers are shown to people: one rule per kind of number, shared by the CLI, pages and figures."""

from __future__ import annotations

import math


def fmt_p(value: float | None, missing: str = "nan") -> str:
    """A p-value: four decimals when ordinary, two significant digits when tiny (< 0.001)."""
    if value is None or not math.isfinite(value):
        return missing
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.2g}"
