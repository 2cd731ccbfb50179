"""Figures (matplotlib, Agg backend) shared by the commands and the HTML report: layer sweep, scope,
geometry, dual speaker and intensity; the validation suites' figures are :mod:`steerlab.report.suite_plots`.
Every figure is written and closed (:func:`figures.save`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steerlab.core.display import fmt_p
from steerlab.report.figures import plt, save
from steerlab.report.suite_plots import (
    plot_condition_means as plot_condition_means,  # re-exported: validate.outputs uses it
)
from steerlab.report.suite_plots import plot_dose_response as plot_dose_response

if TYPE_CHECKING:
    from steerlab.read.dual_speaker import DualSpeaker
    from steerlab.read.geometry import Geometry
    from steerlab.read.intensity import Intensity
    from steerlab.read.probes import LayerScore
    from steerlab.read.scope import Reading


def plot_layer_sweep(
    rows: list[LayerScore],
    steering: int,
    n_emotions: int,
    path: str | Path,
    title: str = "",
    reading: int | None = None,
) -> Path:
    """Held-out top-1 (with 95% CI), top-3, AUROC and probe top-1 across layers, in-style and (when the
    corpus has styles) on styles left out of fitting; the ``steering``
    layer (the sweep's layer rule) and, when given and different, the ``reading`` layer are marked."""
    layers = [r.layer for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    ax.fill_between(layers, [r.top1_lo for r in rows], [r.top1_hi for r in rows], color="#1f77b4", alpha=0.18, lw=0)
    ax.plot(layers, [r.top1 for r in rows], "-o", color="#1f77b4", ms=4, label="top-1 (vectors, 95% CI)")
    ax.plot(layers, [r.top3 for r in rows], "--", color="#1f77b4", label="top-3 (vectors)")
    ax.plot(layers, [r.probe_top1 for r in rows], "-s", color="#ff7f0e", ms=3, label="top-1 (logistic probe)")
    if any(np.isfinite(r.oos_top1) for r in rows):
        ax.fill_between(
            layers, [r.oos_top1_lo for r in rows], [r.oos_top1_hi for r in rows], color="#8c564b", alpha=0.15, lw=0
        )
        ax.plot(layers, [r.oos_top1 for r in rows], "-D", color="#8c564b", ms=3, label="top-1, style left out (95% CI)")
        ax.plot(layers, [r.oos_top3 for r in rows], "--", color="#8c564b", label="top-3, style left out")
    ax.plot(layers, [r.auroc for r in rows], ":", color="#2ca02c", label="macro AUROC")
    ax.axhline(1 / n_emotions, color="grey", lw=0.8, ls="-.", label=f"chance ({1 / n_emotions:.2f})")
    ax.axvline(steering, color="#d62728", lw=1, alpha=0.6, label=f"steering layer {steering}")
    ax.set(xlabel="layer (output of decoder block i)", ylabel="held-out score", ylim=(0, 1.02), title=title)
    if reading is not None and reading != steering:
        ax.axvline(reading, color="#9467bd", lw=1, ls="--", alpha=0.7, label=f"reading layer {reading}")
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    return save(fig, path)


# --- scope, geometry, dual speaker, intensity (steerlab scope / steerlab report) -----------------

SPEAKER_COLORS = {
    "user": "#4c72b0",
    "assistant": "#dd8452",
    "system": "#8c8c8c",
    "template": "#e0e0e0",
    "text": "#9ecae1",
}


def _short(token: str) -> str:
    t = token.replace("\n", "⏎").replace(" ", "·")
    return t if len(t) <= 10 else t[:9] + "…"


def plot_scope(reading: Reading, path: str | Path, layer: int | None = None, top: int = 5, title: str = "") -> Path:
    """Tokens x emotions heatmap (speaker strip above) and the trajectory of the top emotions.

    The figure widens with the number of tokens (capped), and token labels are thinned so that each
    8-point label keeps its own column: long texts label every k-th token rather than shrink the font.
    """
    s = reading.layer_scores(layer)
    li = reading.layers.index(layer) if layer is not None else 0
    floor = float(reading.noise_floor[li])
    n_tok, n_emo = s.shape
    width = min(max(8.0, 3.0 + 0.2 * n_tok), 24.0)
    step = max(1, math.ceil(n_tok / ((width - 2.5) / 0.16)))  # an 8-pt label needs ~0.16 in
    label_room = 0.75  # inches below the heatmap for the rotated token labels (the trajectory would cover them)
    fig = plt.figure(figsize=(width, 1.6 + 0.2 * n_emo + label_room + 2.6), dpi=110)
    grid = fig.add_gridspec(
        4, 2, height_ratios=[0.25, 0.2 * n_emo, label_room, 2.4], width_ratios=[1, 0.015], hspace=0.04, wspace=0.02
    )
    strip, ax, tr, cax = (
        fig.add_subplot(grid[0, 0]),
        fig.add_subplot(grid[1, 0]),
        fig.add_subplot(grid[3, 0]),
        fig.add_subplot(grid[1, 1]),
    )
    colors = [SPEAKER_COLORS.get(r, "#cccccc") for r in reading.roles]
    strip.bar(range(n_tok), 1, width=1.0, color=colors)
    strip.set(xlim=(-0.5, n_tok - 0.5), yticks=[], xticks=[])
    strip.set_title(
        title or f"emotion scores per token · layer {reading.layers[li]} · cosine with centred activations", fontsize=9
    )
    for role in dict.fromkeys(reading.roles):
        strip.bar([0], 0, color=SPEAKER_COLORS.get(role, "#cccccc"), label=role)
    strip.legend(fontsize=7, ncol=5, loc="lower right", bbox_to_anchor=(1, 1.0), frameon=False)
    lim = max(float(np.abs(s).max()), floor * 2, 1e-3)
    im = ax.imshow(s.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(n_emo))
    ax.set_yticklabels(reading.emotions, fontsize=8)
    ax.set_xticks(range(0, n_tok, step))
    ax.set_xticklabels([_short(reading.tokens[i]) for i in range(0, n_tok, step)], rotation=90, fontsize=8)
    fig.colorbar(im, cax=cax).set_label(f"cosine (noise floor ±{floor:.2f})", fontsize=8)
    reply = np.array(reading.roles) == "assistant"
    ranking = s[reply].mean(axis=0) if reply.any() else s.mean(axis=0)
    smooth = np.apply_along_axis(lambda c: np.convolve(np.pad(c, 1, mode="edge"), np.ones(3) / 3, mode="valid"), 0, s)
    cmap = plt.get_cmap("tab10")
    for k, e in enumerate(np.argsort(-ranking)[:top]):
        tr.plot(range(n_tok), smooth[:, e], color=cmap(k), lw=1.6, label=reading.emotions[e])
    tr.axhspan(-floor, floor, color="grey", alpha=0.15, lw=0, label="noise floor (random directions, 95%)")
    for name, pos in reading.points.items():
        if name in ("prep", "user_last", "last"):
            tr.axvline(pos[0], color="black", ls="--" if name == "prep" else ":", lw=0.9)
            tr.text(pos[0], tr.get_ylim()[1], f" {name}", fontsize=7, va="top")
    tr.set(xlim=(-0.5, n_tok - 0.5), xlabel="token position (3-token moving average)", ylabel="score")
    tr.legend(fontsize=7, ncol=3, loc="lower left")
    tr.grid(alpha=0.3)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_geometry(geom: Geometry, path: str | Path, title: str = "") -> Path:
    """PCA scatter (coloured by valence) and the cosine matrix sorted by valence."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.2), dpi=110, gridspec_kw={"width_ratios": [1, 1.1]})
    val = np.nan_to_num(geom.valence)
    sc = ax.scatter(
        geom.coords[:, 0], geom.coords[:, 1], c=val, cmap="coolwarm_r", vmin=-1, vmax=1, s=40, edgecolor="k", lw=0.4
    )
    for (x, y), e in zip(geom.coords, geom.emotions, strict=True):
        ax.annotate(e, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    r1, r2 = geom.r["pc1_valence"], geom.r["pc2_arousal"]
    ax.set(
        xlabel=f"PC1 ({geom.explained[0]:.0%}) · r with valence {r1.r:+.2f} (p={fmt_p(r1.p)})",
        ylabel=f"PC2 ({geom.explained[1]:.0%}) · r with arousal {r2.r:+.2f} (p={fmt_p(r2.p)})",
        title=title or f"emotion directions, layer {geom.layer}",
    )
    ax.grid(alpha=0.3)
    fig.colorbar(sc, ax=ax, fraction=0.04).set_label("labelled valence", fontsize=7)
    names = [geom.emotions[i] for i in geom.order]
    im = bx.imshow(geom.cosine, cmap="RdBu_r", vmin=-1, vmax=1)
    bx.set_xticks(range(len(names)))
    bx.set_xticklabels(names, rotation=90, fontsize=7)
    bx.set_yticks(range(len(names)))
    bx.set_yticklabels(names, fontsize=7)
    bx.set_title("cosine similarity, sorted by valence (positive first)", fontsize=9)
    fig.colorbar(im, ax=bx, fraction=0.045)
    return save(fig, path)


def plot_geometry_sweep(geoms: list[Geometry], path: str | Path) -> Path:
    """|r| of PC1/PC2 with valence/arousal at every layer."""
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    layers = [g.layer for g in geoms]
    for key, style in (("pc1_valence", "-o"), ("pc2_arousal", "-s"), ("pc1_arousal", ":"), ("pc2_valence", ":")):
        ax.plot(layers, [g.r[key].r for g in geoms], style, ms=3, label=key.replace("_", " vs "))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(
        xlabel="layer",
        ylabel="Pearson r (PC signs oriented to the labels)",
        ylim=(-1, 1),
        title="emotion geometry across layers",
    )
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_dual_speaker(ds: DualSpeaker, path: str | Path) -> Path:
    """Token role x whose emotion (2x2), per-emotion cos(current, other) against baselines, per layer."""
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.6), dpi=110, gridspec_kw={"width_ratios": [0.8, 1.6, 1]})
    lim = max(float(np.nanmax(np.abs(ds.role_grid))) if np.isfinite(ds.role_grid).any() else 0.1, 0.01)
    ax.imshow(np.nan_to_num(ds.role_grid), cmap="RdBu_r", vmin=-lim, vmax=lim)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{ds.role_grid[i, j]:+.3f}\nn={ds.role_grid_n[i, j]}", ha="center", va="center", fontsize=9)
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["user's emotion", "assistant's emotion"], fontsize=8)
    ax.set_yticks([0, 1])
    ax.set_yticklabels(["user tokens", "assistant tokens"], fontsize=8)
    ax.set_title(f"labelled emotion's score minus mean\n(extracted vectors, layer {ds.layer})", fontsize=9)
    order = np.argsort(-ds.cos)
    lo, hi = np.percentile(ds.mismatched, [2.5, 97.5])
    bx.bar(
        range(len(order)), ds.cos[order], color=["#4c72b0" if c > hi else "#9db4d6" for c in ds.cos[order]], zorder=3
    )
    bx.axhspan(lo, hi, color="orange", alpha=0.2, lw=0, label="mismatched pairs (95%)")
    bx.axhspan(-ds.random_bound, ds.random_bound, color="grey", alpha=0.25, lw=0, label="random directions (95%)")
    bx.set_xticks(range(len(order)))
    bx.set_xticklabels([ds.emotions[i] for i in order], rotation=90, fontsize=7)
    bx.set(ylabel="cos(current speaker, other speaker)", title=f"same emotion, two speakers (layer {ds.layer})")
    bx.legend(fontsize=7)
    bx.grid(axis="y", alpha=0.3)
    layers = [row["layer"] for row in ds.by_layer]
    cx.plot(layers, [row["matched"] for row in ds.by_layer], "-o", ms=3, label="same emotion")
    cx.plot(layers, [row["mismatched"] for row in ds.by_layer], "-s", ms=3, label="different emotions")
    cx.axvline(ds.layer, color="#d62728", lw=1, alpha=0.6)
    cx.set(xlabel="layer", ylabel="mean cos(current, other)", title="by layer")
    cx.grid(alpha=0.3)
    cx.legend(fontsize=7)
    return save(fig, path)


def plot_intensity(result: Intensity, path: str | Path, point: str = "prep", title: str = "") -> Path:
    """One panel per scale: expected emotions' scores at readout ``point`` along the scale, with Spearman rho."""
    curves = result.curves[point]
    names = list(curves)
    cols = min(4, max(1, len(names)))
    rows_n = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 2.8 * rows_n), dpi=110, squeeze=False)
    rho = {(r.scale, r.emotion): r for r in result.rows if r.point == point}
    for ax, name in zip(axes.flat, names, strict=True):
        values, curve = curves[name]
        for k, (emotion, ys) in enumerate(curve.items()):
            r = rho[(name, emotion)]
            mark = "✓" if r.agrees else "✗"
            ax.plot(
                range(len(ys)),
                ys,
                "-o",
                ms=3,
                color=plt.get_cmap("tab10")(k),
                label=f"{emotion} ({'+' if r.expected > 0 else '−'}) ρ={r.rho:+.2f} {mark}",
            )
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(values, rotation=45, fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(title or f"intensity scales · score at readout point {point} · layer {result.layer}", fontsize=10)
    return save(fig, path)
