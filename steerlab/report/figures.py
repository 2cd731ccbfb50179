"""The matplotlib setup every figure shares: the Agg backend (no display needed) and one way to save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["plt", "save"]


def save(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Lay out, write and close a figure (figures are never left open)."""
    fig.tight_layout()
    fig.savefig(path, **kwargs)
    plt.close(fig)
    return Path(path)
