"""Figures (matplotlib, Agg backend) and the self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from .probes import LayerScore


def plot_layer_sweep(rows: list[LayerScore], chosen: int, n_emotions: int, path: str | Path, title: str = "") -> Path:
    """Held-out top-1 (with 95% CI), top-3, AUROC and probe top-1 across layers."""
    layers = [r.layer for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    ax.fill_between(layers, [r.top1_lo for r in rows], [r.top1_hi for r in rows], color="#1f77b4", alpha=0.18, lw=0)
    ax.plot(layers, [r.top1 for r in rows], "-o", color="#1f77b4", ms=4, label="top-1 (vectors, 95% CI)")
    ax.plot(layers, [r.top3 for r in rows], "--", color="#1f77b4", label="top-3 (vectors)")
    ax.plot(layers, [r.probe_top1 for r in rows], "-s", color="#ff7f0e", ms=3, label="top-1 (logistic probe)")
    ax.plot(layers, [r.auroc for r in rows], ":", color="#2ca02c", label="macro AUROC")
    ax.axhline(1 / n_emotions, color="grey", lw=0.8, ls="-.", label=f"chance ({1 / n_emotions:.2f})")
    ax.axvline(chosen, color="#d62728", lw=1, alpha=0.6, label=f"chosen layer {chosen}")
    ax.set(xlabel="layer (output of decoder block i)", ylabel="held-out score", ylim=(0, 1.02), title=title)
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
