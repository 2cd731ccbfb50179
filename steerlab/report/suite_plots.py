"""Figures of the validation suites (``steerlab validate``): condition means and dose-response."""

from __future__ import annotations

from pathlib import Path

from steerlab.report.figures import plt, save


def plot_condition_means(
    means: list[dict], path: str | Path, title: str = "", degenerate: set[str] | None = None
) -> Path:
    """One horizontal bar per condition: mean metric with its bootstrap 95% CI; degenerate ones hatched."""
    degenerate = degenerate or set()
    names = [m["condition"] for m in means]
    y = list(range(len(names)))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * len(names)), dpi=120)
    for yi, m in zip(y, means, strict=True):
        bad = m["condition"] in degenerate
        ax.barh(yi, m["mean"], color="#bbbbbb" if bad else "#1f77b4", hatch="//" if bad else None, alpha=0.85)
        lo, hi = m["ci"]
        ax.plot([lo, hi], [yi, yi], color="black", lw=1.2)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7)
    ax.set(xlabel="mean over prompts (95% bootstrap CI); hatched = degenerate", title=title)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_dose_response(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Per emotion against alpha: target reading change (solid), mean off-target change (dotted), and
    the perplexity ratio to baseline (right panel); alpha 0 is the baseline (0 change, ratio 1)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r["alpha"] is not None and r["op"] == "add":
            by.setdefault(str(r["emotion"]), []).append(r)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=120)
    cmap = plt.get_cmap("tab20")
    for k, (emotion, items) in enumerate(sorted(by.items())):
        pts = sorted(
            [{"alpha": 0.0, "target_delta": 0.0, "offtarget_delta": 0.0, "ppl_ratio": 1.0}, *items],
            key=lambda r: r["alpha"],
        )
        a = [p["alpha"] for p in pts]
        color = cmap(k % 20)
        ax.plot(a, [p["target_delta"] for p in pts], "-o", ms=3, color=color, label=emotion)
        ax.plot(a, [p["offtarget_delta"] for p in pts], ":", color=color, lw=0.8)
        bx.plot(a, [p["ppl_ratio"] for p in pts], "-o", ms=3, color=color)
        for p in pts:
            if p.get("degenerate"):
                bx.plot(p["alpha"], p["ppl_ratio"], "x", color="black", ms=6)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(
        xlabel="alpha (scale-free)",
        ylabel="reply reading change vs baseline",
        title=f"{title}: target (solid) vs mean off-target (dotted)",
    )
    bx.set(
        xlabel="alpha (scale-free)",
        ylabel="perplexity ratio to baseline (log)",
        yscale="log",
        title="coherence (x = degenerate)",
    )
    ax.grid(alpha=0.3)
    bx.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="best")
    return save(fig, path)
