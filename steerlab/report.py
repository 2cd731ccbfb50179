"""Figures (matplotlib, Agg backend) and the self-contained HTML report."""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .probes import LayerScore

if TYPE_CHECKING:
    from .models import LoadedModel
    from .scope import Correlation, DualSpeaker, Geometry, Intensity, Reading
    from .vectors import EmotionVectors



def _save(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Lay out, write and close a figure (figures are never left open)."""
    fig.tight_layout()
    fig.savefig(path, **kwargs)
    plt.close(fig)
    return Path(path)

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
    return _save(fig, path)


# --- scope, geometry, dual speaker, intensity (steerlab scope / steerlab report) -----------------

SPEAKER_COLORS = {"user": "#4c72b0", "assistant": "#dd8452", "system": "#8c8c8c", "template": "#e0e0e0", "text": "#9ecae1"}


def _short(token: str) -> str:
    t = token.replace("\n", "⏎").replace(" ", "·")
    return t if len(t) <= 10 else t[:9] + "…"


def plot_scope(reading: Reading, path: str | Path, layer: int | None = None, top: int = 5, title: str = "") -> Path:
    """Tokens x emotions heatmap (speaker strip above) and the trajectory of the top emotions."""
    s = reading.layer_scores(layer)
    li = reading.layers.index(layer) if layer is not None else 0
    floor = float(reading.noise_floor[li])
    n_tok, n_emo = s.shape
    fig = plt.figure(figsize=(min(4 + 0.16 * n_tok, 26), 2.2 + 0.17 * n_emo + 2.6), dpi=110)
    grid = fig.add_gridspec(3, 2, height_ratios=[0.25, 0.17 * n_emo, 2.4], width_ratios=[1, 0.015], hspace=0.08, wspace=0.02)
    strip, ax, tr, cax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[1, 1])
    colors = [SPEAKER_COLORS.get(r, "#cccccc") for r in reading.roles]
    strip.bar(range(n_tok), 1, width=1.0, color=colors)
    strip.set(xlim=(-0.5, n_tok - 0.5), yticks=[], xticks=[])
    strip.set_title(title or f"emotion scores per token · layer {reading.layers[li]} · cosine with centred activations", fontsize=9)
    for role in dict.fromkeys(reading.roles):
        strip.bar([0], 0, color=SPEAKER_COLORS.get(role, "#cccccc"), label=role)
    strip.legend(fontsize=7, ncol=5, loc="lower right", bbox_to_anchor=(1, 1.0), frameon=False)
    lim = max(float(np.abs(s).max()), floor * 2, 1e-3)
    im = ax.imshow(s.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(n_emo))
    ax.set_yticklabels(reading.emotions, fontsize=7)
    step = max(1, n_tok // 90)
    ax.set_xticks(range(0, n_tok, step))
    ax.set_xticklabels([_short(reading.tokens[i]) for i in range(0, n_tok, step)], rotation=90, fontsize=6)
    fig.colorbar(im, cax=cax).set_label(f"cosine (noise floor ±{floor:.2f})", fontsize=7)
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
    sc = ax.scatter(geom.coords[:, 0], geom.coords[:, 1], c=val, cmap="coolwarm_r", vmin=-1, vmax=1, s=40, edgecolor="k", lw=0.4)
    for (x, y), e in zip(geom.coords, geom.emotions):
        ax.annotate(e, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    r1, r2 = geom.r["pc1_valence"], geom.r["pc2_arousal"]
    ax.set(xlabel=f"PC1 ({geom.explained[0]:.0%}) · r with valence {r1.r:+.2f} (p={r1.p:.2g})",
           ylabel=f"PC2 ({geom.explained[1]:.0%}) · r with arousal {r2.r:+.2f} (p={r2.p:.2g})",
           title=title or f"emotion directions, layer {geom.layer}")
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
    return _save(fig, path)


def plot_geometry_sweep(geoms: list[Geometry], path: str | Path) -> Path:
    """|r| of PC1/PC2 with valence/arousal at every layer."""
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    layers = [g.layer for g in geoms]
    for key, style in (("pc1_valence", "-o"), ("pc2_arousal", "-s"), ("pc1_arousal", ":"), ("pc2_valence", ":")):
        ax.plot(layers, [g.r[key].r for g in geoms], style, ms=3, label=key.replace("_", " vs "))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="layer", ylabel="Pearson r (PC signs oriented to the labels)", ylim=(-1, 1), title="emotion geometry across layers")
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


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
    bx.bar(range(len(order)), ds.cos[order], color=["#4c72b0" if c > hi else "#9db4d6" for c in ds.cos[order]], zorder=3)
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
    return _save(fig, path)


def plot_intensity(result: Intensity, path: str | Path, title: str = "") -> Path:
    """One panel per scale: expected emotions' scores along the scale, with Spearman rho."""
    names = list(result.curves)
    cols = min(4, max(1, len(names)))
    rows_n = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 2.8 * rows_n), dpi=110, squeeze=False)
    rho = {(r.scale, r.emotion): r for r in result.rows}
    for ax, name in zip(axes.flat, names):
        values, curve = result.curves[name]
        for k, (emotion, ys) in enumerate(curve.items()):
            r = rho[(name, emotion)]
            mark = "✓" if r.agrees else "✗"
            ax.plot(range(len(ys)), ys, "-o", ms=3, color=plt.get_cmap("tab10")(k),
                    label=f"{emotion} ({'+' if r.expected > 0 else '−'}) ρ={r.rho:+.2f} {mark}")
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(values, rotation=45, fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title or f"intensity scales · score at the response-preparation token · layer {result.layer}", fontsize=10)
    return _save(fig, path)


# --- the self-contained HTML report ---------------------------------------------------------------

EXAMPLES: tuple[tuple[str, tuple[dict[str, str], ...]], ...] = (
    ("desperate user, reply generated by the model", (
        {"role": "user", "content": "I lost my job last month, the rent is due on Friday and I have nothing left. "
                                    "I've tried everything and I don't know what to do anymore. Please, I need help."},
    )),
    ("desperate user, hopeful written reply", (
        {"role": "user", "content": "Everything is falling apart. I failed the exam again and I can't see any way out."},
        {"role": "assistant", "content": "I hear how exhausted you are. One exam does not decide your future: there is a retake, "
                                         "and with a calmer plan you can get there. Things can get better from here."},
    )),
)


@dataclass(frozen=True)
class ReportConfig:
    external_scales: str | None = None  # EmotionScope-format scales file to add (skipped if absent)
    generate: bool = True  # let the model write the reply of the first scope example
    max_new_tokens: int = 40  # reply length for generated examples
    dialogues: str | None = None  # dialogue JSONL (default: package data)
    title: str = "steerlab report"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "nan" if not np.isfinite(v) else f"{v:.3g}" if abs(v) < 1e-3 and v else f"{v:.3f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _corr(c: Correlation) -> list[object]:
    return [c.r, c.p, c.n, "yes" if c.p < 0.05 else "no"]


def build_report(lm: LoadedModel, vectors: EmotionVectors, path: str | Path, config: ReportConfig = ReportConfig(),
                 progress: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Write one self-contained HTML file (inline PNGs, no network); returns it and the key numbers."""
    from . import scope

    note = progress or (lambda _m: None)
    path = Path(path)
    layer = vectors.chosen_layer
    numbers: dict[str, Any] = {"model": lm.spec, "chosen_layer": layer}
    parts = [f"<h1>{html.escape(config.title)}</h1>",
             (f"<p>model <b>{html.escape(lm.spec)}</b> ({html.escape(lm.model_id)}), vectors: {len(vectors.emotions)} emotions, "
             f"method {html.escape(str(vectors.meta.get('method')))}, chosen layer {layer}. Scores are cosines of the "
             "centred activation (minus the training grand mean at that layer) with unit emotion directions, so they are "
             "comparable across texts and positions; the noise floor is the same cosine for random directions.</p>")]
    if lm.is_random:
        parts.append('<p class="warn">Random weights: every number here tests the plumbing and says nothing about emotions.</p>')
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)

        sweep = vectors.meta.get("sweep") or []
        parts.append("<h2>Layer sweep</h2>")
        if sweep:
            rows = [LayerScore(**row) for row in sweep]
            parts.append(_img(plot_layer_sweep(rows, layer, len(vectors.emotions), tmp / "sweep.png", title=lm.spec)))
            parts.append(_table(["layer", "top-1", "top-3", "AUROC", "probe top-1", "valence d"],
                                [[r.layer, r.top1, r.top3, r.auroc, r.probe_top1, r.valence_sep] for r in rows]))
        else:
            parts.append("<p>The vector file holds no layer sweep.</p>")

        note("geometry")
        parts.append("<h2>Geometry</h2>")
        if len(vectors.emotions) >= 3:
            geoms = scope.geometry_sweep(vectors)
            g = geoms[layer]
            numbers["geometry"] = {k: {"r": c.r, "p": c.p} for k, c in g.r.items()}
            parts.append(_img(plot_geometry(g, tmp / "geometry.png")))
            parts.append(_img(plot_geometry_sweep(geoms, tmp / "geometry_sweep.png")))
            parts.append(_table(["layer", "PC1 var", "PC2 var", "r PC1~valence", "p", "r PC2~arousal", "p", "r PC1~arousal", "r PC2~valence"],
                                [[x.layer, float(x.explained[0]), float(x.explained[1]), x.r["pc1_valence"].r, x.r["pc1_valence"].p,
                                  x.r["pc2_arousal"].r, x.r["pc2_arousal"].p, x.r["pc1_arousal"].r, x.r["pc2_valence"].r] for x in geoms]))
        else:
            parts.append("<p>Fewer than 3 emotions: no geometry.</p>")

        note("intensity scales")
        parts.append("<h2>Intensity scales</h2><p>Spearman ρ between the position along each scale and the expected "
                     "emotion's score at the response-preparation token; ✓ = the sign the scale expects.</p>")
        sources: list[tuple[str, str | None]] = [("steerlab", None)]
        if config.external_scales and Path(config.external_scales).is_file():
            sources.append(("external", config.external_scales))
        elif config.external_scales:
            parts.append(f"<p>External scales {html.escape(config.external_scales)} not found: skipped.</p>")
        numbers["intensity"] = {}
        for label, src in sources:
            result = scope.intensity(lm, vectors, scope.load_scales(src))
            summary = result.summary()
            numbers["intensity"][label] = summary
            parts.append(f"<h3>{label} scales</h3>")
            if result.rows:
                parts.append(_img(plot_intensity(result, tmp / f"intensity_{label}.png")))
            parts.append(f"<p>{summary['right_sign']} of {summary['relations']} relations have the expected sign; "
                         f"{summary['significant_right']} significantly right, {summary['significant_wrong']} significantly "
                         f"wrong (p &lt; 0.05); mean signed ρ {summary['mean_signed_rho']:+.3f}.</p>")
            if result.skipped:
                parts.append(f"<p>Skipped (emotion not in the vectors): {html.escape(', '.join(result.skipped))}</p>")
            parts.append(_table(["scale", "emotion", "expected", "ρ", "p", "n", "as expected"],
                                [[r.scale, r.emotion, "+" if r.expected > 0 else "−", r.rho, r.p, r.n, "✓" if r.agrees else "✗"]
                                 for r in result.rows]))

        note("dual speaker (one pass over the dialogues)")
        ds = scope.dual_speaker(lm, vectors, scope.load_dialogues(config.dialogues) if config.dialogues else None)
        lo, hi = np.percentile(ds.mismatched, [2.5, 97.5])
        numbers["dual_speaker"] = {
            "layer": ds.layer, "mean_cos_matched": float(ds.cos.mean()), "mean_cos_mismatched": float(ds.mismatched.mean()),
            "mismatched_95": [float(lo), float(hi)], "random_bound": ds.random_bound,
            "above_mismatched": int((ds.cos > hi).sum()), "n_emotions": len(ds.emotions),
            "valence": {k: {"r": c.r, "p": c.p} for k, c in ds.valence.items()},
            "thermostat": {k: {"r": c.r, "p": c.p, "n": c.n} for k, c in ds.thermostat.items()},
            "role_grid": ds.role_grid.tolist(),
        }
        parts.append(f"<h2>Dual speaker</h2><p>{ds.n_dialogues} two-speaker dialogues. \"Current speaker\" vector of e: mean "
                     "activation of turns whose speaker expresses e minus the grand mean of all turns; \"other speaker\" vector: "
                     "turns whose <i>partner</i> expresses e. Baselines: cos between the current vector of e and the other "
                     "vectors of different emotions (mismatched pairs) and between random directions. Caveat: both sets "
                     "come from the same dialogues, so a shared topic alone can make them align.</p>")
        parts.append(_img(plot_dual_speaker(ds, tmp / "dual_speaker.png")))
        parts.append(f"<p>Layer {ds.layer}: mean cos(current, other) for the same emotion {ds.cos.mean():+.3f}; mismatched pairs "
                     f"{ds.mismatched.mean():+.3f} (95% {lo:+.3f}..{hi:+.3f}); random directions ±{ds.random_bound:.3f}. "
                     f"{int((ds.cos > hi).sum())} of {len(ds.emotions)} emotions lie above the mismatched 95% band.</p>")
        parts.append(_table(["emotion", "cos(current, other)", "cos(current, extracted vector)"],
                            [[e, float(ds.cos[k]), float(ds.with_vectors[k])] for k, e in enumerate(ds.emotions)]))
        parts.append("<h3>Valence within each set (PC1 of the set vs labelled valence)</h3>")
        parts.append(_table(["set", "r", "p", "n", "p &lt; 0.05"], [[k, *_corr(c)] for k, c in ds.valence.items()]))
        parts.append("<h3>Arousal thermostat</h3><p>Does the arousal read on the assistant's own turns move opposite to the "
                     "user's? <i>labelled</i>: vs the user's labelled arousal; <i>read</i>: vs the arousal read on the user's "
                     "turns; <i>script</i>: the assistant's <i>labelled</i> arousal vs the user's (what the dialogues were written "
                     "to do); <i>partial</i>: the read assistant arousal with the script regressed out, vs the user's labelled "
                     "arousal. A thermostat would show negative r; non-significant results are null results.</p>")
        if ds.thermostat:
            parts.append(_table(["comparison", "r", "p", "n", "p &lt; 0.05"], [[k, *_corr(c)] for k, c in ds.thermostat.items()]))
        for msg in ds.notes:
            parts.append(f"<p>{html.escape(msg)}</p>")

        note("scope examples")
        parts.append("<h2>Scope examples</h2>")
        numbers["examples"] = []
        for k, (name, msgs) in enumerate(EXAMPLES):
            conv = list(msgs)
            if conv[-1]["role"] == "user":
                if not config.generate:
                    continue
                conv = scope.generate_reply(lm, conv, config.max_new_tokens)
            reading = scope.read_conversation(lm, vectors, conv)
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts.append("".join(f"<p><b>{html.escape(m['role'])}:</b> {html.escape(m['content'])}</p>" for m in conv))
            parts.append(_img(plot_scope(reading, tmp / f"scope_{k}.png")))
            top = {p: _top(reading.readout(p), vectors.emotions) for p in reading.points}
            numbers["examples"].append({"name": name, "reply": conv[-1]["content"], "readouts": top})
            turns = [[f"turn {i} ({role}, mean)", _top(mean, vectors.emotions)] for i, role, mean in reading.turn_means()]
            parts.append(_table(["readout", "top emotions (cosine)"], [[p, t] for p, t in top.items()] + turns))
            parts.append(f"<p>noise floor ±{reading.noise_floor[0]:.3f}</p>")

    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(config.title)}</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
            "img{max-width:100%;display:block;margin:1em 0}table{border-collapse:collapse;font-size:12px;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}.warn{color:#b00}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp")
    tmp_path.write_text(page, encoding="utf-8")
    tmp_path.replace(path)
    return path, numbers


def _top(scores: np.ndarray, emotions: tuple[str, ...], k: int = 3) -> str:
    return ", ".join(f"{emotions[i]} {scores[i]:+.3f}" for i in np.argsort(-scores)[:k])



# --- validation suites (steerlab validate) --------------------------------------------------------


def plot_condition_means(means: list[dict], path: str | Path, title: str = "", degenerate: set[str] | None = None) -> Path:
    """One horizontal bar per condition: mean metric with its bootstrap 95% CI; degenerate ones hatched."""
    degenerate = degenerate or set()
    names = [m["condition"] for m in means]
    y = list(range(len(names)))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * len(names)), dpi=120)
    for yi, m in zip(y, means):
        bad = m["condition"] in degenerate
        ax.barh(yi, m["mean"], color="#bbbbbb" if bad else "#1f77b4", hatch="//" if bad else None, alpha=0.85)
        lo, hi = m["ci"]
        ax.plot([lo, hi], [yi, yi], color="black", lw=1.2)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7)
    ax.set(xlabel="mean over prompts (95% bootstrap CI); hatched = degenerate", title=title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


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
        pts = sorted([{"alpha": 0.0, "target_delta": 0.0, "offtarget_delta": 0.0, "ppl_ratio": 1.0}, *items],
                     key=lambda r: r["alpha"])
        a = [p["alpha"] for p in pts]
        color = cmap(k % 20)
        ax.plot(a, [p["target_delta"] for p in pts], "-o", ms=3, color=color, label=emotion)
        ax.plot(a, [p["offtarget_delta"] for p in pts], ":", color=color, lw=0.8)
        bx.plot(a, [p["ppl_ratio"] for p in pts], "-o", ms=3, color=color)
        for p in pts:
            if p.get("degenerate"):
                bx.plot(p["alpha"], p["ppl_ratio"], "x", color="black", ms=6)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="alpha (scale-free)", ylabel="reply reading change vs baseline", title=f"{title}: target (solid) vs mean off-target (dotted)")
    bx.set(xlabel="alpha (scale-free)", ylabel="perplexity ratio to baseline (log)", yscale="log", title="coherence (x = degenerate)")
    ax.grid(alpha=0.3)
    bx.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="best")
    return _save(fig, path)
