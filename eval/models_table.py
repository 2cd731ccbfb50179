"""The side-by-side tables of the built-in models, rendered from committed result files.

    python eval/models_table.py            # print the tables (markdown)

docs/render_results.py puts them on the documentation's results page and a few of their rows in the
README's headline table.

Each number comes from a file that ``sh eval/run_model.sh MODEL`` (or ``steerlab extract``) writes:
vectors/MODEL/emotions.json and emotions.layer_sweep.csv, eval/benchmarks/results/*_MODEL.json and
eval/results/MODEL/{SUITE/summary.json, report/numbers.json}. A missing file shows as "not run".
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steerlab.core.names import BUILTIN_SOURCES

REPO = Path(__file__).resolve().parents[1]
SUITES = ("desperate_to_hopeful", "necessity", "dose_response", "gate")
Row = tuple[str, Callable[[dict[str, Any]], str]]


def load(model: str) -> dict[str, Any]:
    """Every result file of ``model`` that exists, by short name."""
    bench = REPO / "eval" / "benchmarks" / "results"
    files = {
        "vectors": REPO / "vectors" / model / "emotions.json",
        "cross": bench / f"cross_corpus_{model}.json",
        "readers": bench / f"reader_validation_{model}.json",
        "speed": bench / f"extract_speed_{model}.json",
        "suite_cost": bench / f"suite_cost_{model}.json",
        "llamacpp": bench / f"llamacpp_{model}.json",
        "report": REPO / "eval" / "results" / model / "report" / "numbers.json",
        "judged": REPO / "eval" / "labels" / model / "summary.json",
        "judged_desperate": REPO / "eval" / "labels" / model / "desperate" / "summary.json",
        **{f"judged_{s}": REPO / "eval" / "labels" / model / s / "summary.json" for s in ("scales", "hopeful")},
        "own_replies": bench / f"model_replies_{model}.json",
        "judged_weight": bench / f"judged_weight_{model}.json",
        "reader_limits": bench / f"reader_limits_{model}.json",
        **{s: REPO / "eval" / "results" / model / s / "summary.json" for s in SUITES},
    }
    out: dict[str, Any] = {k: json.loads(p.read_text()) for k, p in files.items() if p.is_file()}
    sweep = REPO / "vectors" / model / "emotions.layer_sweep.csv"
    if sweep.is_file():
        out["sweep"] = {int(r["layer"]): r for r in csv.DictReader(sweep.open())}
    return out


def cell(fn: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    def safe(r: dict[str, Any]) -> str:
        try:
            return fn(r)
        except (KeyError, IndexError, TypeError, StopIteration):
            return "not run"

    return safe


def reading_layer(r: dict[str, Any]) -> int:
    return int(r["vectors"]["reading_layer"])


def layers(r: dict[str, Any]) -> str:
    v = r["vectors"]
    n = int(v["n_layers"])
    read, steer = int(v["reading_layer"]), int(v["chosen_layer"])
    return f"{n} layers, d = {v['hidden_size']}; reading {read} ({(read + 1) / n:.0%} depth), steering {steer}"


def oos(r: dict[str, Any]) -> str:
    row = r["sweep"][reading_layer(r)]
    return f"{float(row['oos_top1']):.3f} [{float(row['oos_top1_lo']):.2f}, {float(row['oos_top1_hi']):.2f}]"


def heldout(r: dict[str, Any]) -> str:
    row = r["cross"]["layers"][reading_layer(r)]
    return f"{row['reverse_steerlab_vectors_top1']:.3f}"


def stories(r: dict[str, Any]) -> str:
    row = r["cross"]["layers"][reading_layer(r)]
    return f"{row['steerlab_vectors_top1_all_1000']:.3f}"


def reader_at(r: dict[str, Any], name: str, source: str = "own") -> dict[str, Any]:
    block = r["readers"] if source == "own" else r["readers"]["external"]
    return next(x for x in block["readers"][name] if x["layer"] in (reading_layer(r), None))  # lexicon: no layer


def emotionscope(r: dict[str, Any]) -> str:
    name = r["readers"]["default_reader"]
    ext, lex = reader_at(r, name, "external"), reader_at(r, "lexicon", "external")
    return f"`{name}` {ext['auroc']['hopeful']:.3f}; lexicon {lex['auroc']['hopeful']:.3f}"


def _num(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def own_replies(name: str) -> Callable[[dict[str, Any]], str]:
    """A reader against the judge on the model's own replies to held-out messages (`steerlab fit-reader`)."""

    def fn(r: dict[str, Any]) -> str:
        x = r["own_replies"]
        key = x["chosen"] if name == "default" else name
        f = x["readers"].get("reply (written + judged)" if key == "reply" else key)
        if f is None:
            return "not fitted"
        return (
            f"`{key}`: macro AUROC {_num(f['macro_auroc'])} ({len(f['auroc'])} labels); hopeful ρ "
            f"{_num(f['spearman_hopeful'], '+.2f')}, AUROC ≥ 3 {_num(f['auroc_hopeful_3plus'])}; desperate ρ "
            f"{_num(f['spearman_desperate'], '+.2f')}, AUROC ≥ 3 {_num(f['auroc_desperate_3plus'])}"
        )

    return fn


def incoherence(r: dict[str, Any]) -> str:
    x = r["own_replies"]["incoherence"]
    rule, alone = x["rule"], x["detector_alone"]
    return (
        f"{x['judged_incoherent']} judged incoherent: recall {rule['recall']:.2f}, precision {rule['precision']:.2f} "
        f"(loop detector alone: recall {alone['recall']:.2f})"
    )


def written_heldout(r: dict[str, Any]) -> str:
    x = r["own_replies"]
    w = x["written_heldout"][x["chosen"]]
    low = min(w["auroc"].items(), key=lambda kv: kv[1])
    return (
        f"`{x['chosen']}`: {len(w['auroc'])} emotions, macro {w['macro_auroc']:.3f}, hopeful "
        f"{w['auroc']['hopeful']:.3f}, lowest {low[0]} {low[1]:.3f} ({x['written_heldout']['n']} replies)"
    )


def judged(condition: str) -> Callable[[dict[str, Any]], str]:
    def fn(r: dict[str, Any]) -> str:
        c = r["judged"]["by_condition"][f"desperate_to_hopeful/{condition}"]
        return (
            f"hopeful {c['mean_hopeful']:.2f}/5 ({c['hopeful_3plus']:.0%} ≥ 3), coherence {c['mean_coherence']:.1f}/5, "
            f"incoherent {c['incoherent']:.0%} (n {c['n']})"
        )

    return fn


def agreement(r: dict[str, Any]) -> str:
    a = r["judged"]["agreement"]
    return (
        f"{r['judged']['n']} replies, {a['n']} twice: weighted κ hopeful {a['hopeful']['weighted_kappa']:.2f}, "
        f"coherence {a['coherence']['weighted_kappa']:.2f}; label κ {a['label']['kappa']:.2f}"
    )


def desperate_set(r: dict[str, Any]) -> str:
    d = r["judged_desperate"]
    a, rows = d["agreement"], d["by_condition"].values()
    lean = sum(c["n"] * c["desperate_3plus"] for c in rows)
    return (
        f"{d['n']} more, asked or steered to sound desperate: {lean:.0f} judged desperate ≥ 3; {a['n']} twice: "
        f"weighted κ desperate {a['desperate']['weighted_kappa']:.2f}, hopeful {a['hopeful']['weighted_kappa']:.2f}"
    )


def new_sets(r: dict[str, Any]) -> str:
    parts = []
    for name in ("scales", "hopeful"):
        d = r[f"judged_{name}"]
        a, rows = d["agreement"], d["by_condition"].values()
        lean = {s: sum(c["n"] * c[f"{s}_3plus"] for c in rows) for s in ("hopeful", "desperate")}
        parts.append(
            f"`{name}/` {d['n']} to {d['messages']} messages, {lean['hopeful']:.0f} judged hopeful ≥ 3, "
            f"{lean['desperate']:.0f} desperate ≥ 3; {a['n']} twice: weighted κ hopeful "
            f"{a['hopeful']['weighted_kappa']:.2f}"
        )
    return "; ".join(parts)


def judged_weight(r: dict[str, Any]) -> str:
    ridge = [f for f in r["judged_weight"]["fits"] if f["reader"] == "ridge: labels + judged ratings"]
    rated = next(f for f in r["judged_weight"]["fits"] if f["reader"] == "ridge: written replies rated blind too")
    judge = r["judged_weight"]["judge_vs_written_labels_auroc"]["hopeful"]
    full = [f for f in ridge if f["share_of_fitting_messages"] == 1 and f["judged_to_written_weight"] is not None]
    curve = [f for f in ridge if f["judged_to_written_weight"] == 1]
    low, high = full[0], full[-1]
    once = next(f for f in ridge if f["judged_to_written_weight"] is None)
    return (
        f"judged : written weight {low['judged_to_written_weight']:g} → {high['judged_to_written_weight']:g}: "
        f"hopeful ρ {low['spearman_hopeful']:+.2f} → {high['spearman_hopeful']:+.2f}, written hopeful AUROC "
        f"{low['written_hopeful_auroc']:.3f} → {high['written_hopeful_auroc']:.3f}; every reply once: ρ "
        f"{once['spearman_hopeful']:+.2f}, written {once['written_hopeful_auroc']:.3f}; balanced, on "
        + " → ".join(f"{f['share_of_fitting_messages']:.0%}" for f in curve)
        + " of the fitting messages: ρ "
        + " → ".join(f"{f['spearman_hopeful']:+.2f}" for f in curve)
        + f"; the written replies rated blind too (balanced): ρ {rated['spearman_hopeful']:+.2f}, written "
        f"{rated['written_hopeful_auroc']:.3f} (the judge's own ratings: {judge:.3f} against the written labels) "
        "(`eval/benchmarks/judged_weight.py`)"
    )


def reader_limits(r: dict[str, Any]) -> str:
    x = r["reader_limits"]
    fits = {f["fit"]: f for f in x["fits"]}

    def rho(name: str) -> str:
        return f"{fits[name]['spearman_hopeful'][0]:+.2f}"

    shipped, alone = fits["reading layer (shipped)"], fits["judged replies only"]
    low, high = shipped["spearman_hopeful"][1:]
    other = next(name for name in fits if name.startswith("read by "))
    desperate, ceiling = shipped["tau_b_desperate"][0], x["tie_ceiling"]["desperate"]["tau_b"]
    return (
        f"hopeful ρ as shipped {rho('reading layer (shipped)')} [{low:+.2f}, {high:+.2f}]; three layers "
        f"{rho('three layers side by side')}, every layer averaged {rho('every layer averaged')}, RBF kernel "
        f"{rho('kernel ridge (RBF)')}, {other} {rho(other)}; judged replies only {rho('judged replies only')} "
        f"(written hopeful AUROC {alone['written_hopeful_auroc']:.2f}); two annotators "
        f"{x['annotators']['spearman_hopeful']:+.2f}. Desperate τ-b {desperate:+.2f}, at most {ceiling:+.2f} "
        "without ties (`eval/benchmarks/reader_limits.py`)"
    )


def tie_ceiling(r: dict[str, Any]) -> str:
    t = r["own_replies"].get("tie_ceiling") or {}
    return f"hopeful ρ {_num(t.get('hopeful'), '+.2f')}, desperate ρ {_num(t.get('desperate'), '+.2f')}"


def dose(alpha: float) -> Callable[[dict[str, Any]], str]:
    def fn(r: dict[str, Any]) -> str:
        rows = [d for d in r["dose_response"]["dose"] if d["op"] == "add" and d["alpha"] == alpha]
        if not rows:
            raise KeyError(alpha)
        delta = sum(d["target_delta"] for d in rows) / len(rows)
        off = sum(d["offtarget_delta"] for d in rows) / len(rows)
        up = sum(d["target_ci"][0] > 0 for d in rows)
        ppl = sorted(d["ppl_ratio"] for d in rows)[len(rows) // 2]
        broken = sum(d["degenerate"] for d in rows)
        return (
            f"{delta:+.3f} (off-target {off:+.3f}); CI > 0 for {up}/{len(rows)}; "
            f"ppl ×{ppl:.2f}; degenerate {broken}/{len(rows)}"
        )

    return fn


FLAG = "desperate_to_hopeful"


def claim(suite: str, *names: str) -> Callable[[dict[str, Any]], str]:
    """The first of ``names`` (the suite's claim, as named now or in an older result file) that was run."""

    def fn(r: dict[str, Any]) -> str:
        details = r[suite]["claim_details"]
        index = next(i for name in names for i, d in enumerate(details) if d["claim"] == name)
        c = r[suite]["claims"][index]
        ci = f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
        used = details[index]["n"]  # prompts with a reading under both conditions
        why = f" ({', '.join(details[index]['fail_reasons'])})" if details[index].get("fail_reasons") else ""
        # a run from before control populations (three isotropic seeds) says so
        older = "" if "p_family" in details[index] else "; an earlier design: random seeds as controls"
        return f"**{c['verdict'].upper()}**{why} {c['effect']:+.3f} {ci} (n {used} of {r[suite]['n']}{older})"

    return fn


def gate_rates(r: dict[str, Any]) -> str:
    rows = {g["label"]: g for g in r["gate"]["gates"] if g["condition"] == "gated_hopeful"}
    hit, alarm = rows["desperate"], rows["neutral"]
    return f"desperate {hit['fired']}/{hit['n']}, neutral {alarm['fired']}/{alarm['n']}"


def verdict_counts(r: dict[str, Any]) -> str:
    claims = r["dose_response"]["claims"]
    counts = {v: sum(c["verdict"] == v for c in claims) for v in ("pass", "fail", "inconclusive", "not-testable")}
    return ", ".join(f"{n} {v.upper()}" for v, n in counts.items() if n)


def suite_reader(r: dict[str, Any]) -> str:
    reader = r["desperate_to_hopeful"]["reader"]
    own, written = reader["validation"].get("model_replies") or {}, reader["validation"]["auroc"]
    return (
        f"`{reader['name']}` at layer {reader['layer']}: hopeful ρ {_num(own.get('spearman_hopeful'), '+.2f')}, "
        f"AUROC ≥ 3 {_num(own.get('auroc_hopeful_3plus'))}, desperate ρ {_num(own.get('spearman_desperate'), '+.2f')}, "
        f"AUROC ≥ 3 {_num(own.get('auroc_desperate_3plus'))} on its own held-out judged replies; hopeful AUROC "
        f"{_num(written.get('hopeful'))} on written held-out replies"
    )


def flagship_quality(r: dict[str, Any]) -> str:
    rows = {q["name"]: q for q in r["desperate_to_hopeful"]["quality"]}
    base = rows["baseline"]
    return f"echo {base['echo_rate']:.0%}, looping {base['degenerate_replies']:.0%}"


def llamacpp(r: dict[str, Any]) -> str:
    x = r["llamacpp"]
    return (
        f"hopeful shift {x['hopeful_shift']['llamacpp']:+.2f} in llama.cpp vs {x['hopeful_shift']['pyvene']:+.2f} "
        f"with pyvene ({x['n_prompts']} prompts, α {x['alpha']:g})"
    )


def speed(r: dict[str, Any]) -> str:
    s = r["speed"]
    return f"{s['tokens_per_s']['steerlab']:.0f} tok/s ({s['steerlab_vs_limit']:.2f}× the plain decoder pass)"


def suite_cost(r: dict[str, Any]) -> str:
    c = r["suite_cost"]
    return (
        f"{c['suite_vs_generate_and_read']:.2f}× a plain batched generate of the same rows + one re-read "
        f"({c['seconds']['suite']:.0f} s vs {c['seconds']['plain_generate']:.0f} + {c['seconds']['reread']:.0f} s, "
        f"n = {c['prompts']})"
    )


def geometry(r: dict[str, Any]) -> str:
    g = r["report"]["geometry"]
    pc1, pc2 = g["pc1_valence"], g["pc2_valence"]
    return f"PC1~valence r {pc1['r']:+.2f} (p {pc1['p']:.2g}); PC2~valence {pc2['r']:+.2f}"


def dual(r: dict[str, Any]) -> str:
    d = r["report"]["dual_speaker"]
    return (
        f"same emotion cos {d['mean_cos_matched']:+.3f} (mismatched {d['mean_cos_mismatched']:+.3f}); "
        f"thermostat r {d['thermostat']['read']['r']:+.2f}"
    )


def intensity(r: dict[str, Any]) -> str:
    best = max(r["report"]["intensity"]["steerlab"].items(), key=lambda kv: kv[1]["strong_right"])
    tracked = f"{best[1]['strong_right']}/{best[1]['relations']} relations tracked"
    return f"{tracked} (ρ of the expected sign, ≥ 0.7 in size, at `{best[0]}`)"


TABLES: dict[str, list[Row]] = {
    "Extraction (`steerlab extract`)": [
        ("model", cell(layers)),
        ("20-way top-1 on a style left out of fitting, reading layer [95 % CI]", cell(oos)),
        ("top-1 on 240 first-person texts written separately", cell(heldout)),
        ("top-1 on EmotionScope's 1,000 stories (never seen)", cell(stories)),
        ("pooling speed, 2 CPU threads", cell(speed)),
    ],
    "Readers of replies (in their conversation; `steerlab fit-reader`, messages held out)": [
        ("the model's own replies, judged blind (`eval/labels/`)", cell(agreement)),
        ("… a third set that leans desperate (`eval/labels/MODEL/desperate/`)", cell(desperate_set)),
        ("… two more sets, to 160 user messages written for them", cell(new_sets)),
        ("default reader on judged replies", cell(own_replies("default"))),
        ("… reply reader fitted on written replies only", cell(own_replies("reply (written)"))),
        ("… reply reader fitted on judged replies only", cell(own_replies("reply (judged)"))),
        ("… reply reader with the judged replies weighing k times the written ones", cell(judged_weight)),
        ("… what limits it: its features, its form, the model reading, its references", cell(reader_limits)),
        ("… judge reader: the judge's 1–5 ratings predicted by ridge", cell(own_replies("judge"))),
        ("… diff-of-means directions", cell(own_replies("vector"))),
        ("… lexicon (VADER + NRC)", cell(own_replies("lexicon"))),
        ("… bag of words (fitted on the other messages)", cell(own_replies("bag of words"))),
        ("… reply length in words", cell(own_replies("length"))),
        ("the most ρ any score without ties reaches on these replies", cell(tie_ceiling)),
        ("incoherent replies left unread", cell(incoherence)),
        ("written held-out replies, one-vs-rest AUROC", cell(written_heldout)),
        ("EmotionScope's replies (never seen), hopeful AUROC, before the refit", cell(emotionscope)),
    ],
    "Steering (`dose_response`: 8 neutral prompts × 20 emotions; change of the target's reading)": [
        ("α 2", cell(dose(2.0))),
        ("α 4", cell(dose(4.0))),
        ("α 8", cell(dose(8.0))),
        ("per-emotion claims at α 4 (BH)", cell(verdict_counts)),
        ("llama.cpp control vector, α 4", cell(llamacpp)),
    ],
    "Causal validation (`desperate_to_hopeful`: desperate messages; `necessity`: 40 texts)": [
        ("reader of the replies (validated on held-out replies)", cell(suite_reader)),
        ("cost of the suite (`eval/benchmarks/suite_cost.py`)", cell(suite_cost)),
        ("baseline replies (model-free detector)", cell(flagship_quality)),
        ("baseline replies, judged blind", cell(judged("baseline"))),
        ("replies with *hopeful* added (α 4), judged blind", cell(judged("add_hopeful"))),
        ("premise: baseline replies lean hopeful", cell(claim(FLAG, "baseline replies lean hopeful over desperate"))),
        (
            "mean-ablating *desperate* in the user's message makes the reply less hopeful",
            cell(claim(FLAG, "ablating desperate in the user's message makes the reply less hopeful")),
        ),
        (
            "mean-ablating *desperate* weakens the lean",
            cell(
                claim(
                    FLAG,
                    "ablating desperate in the user's message weakens the lean to hopeful",
                    "ablating desperate weakens the lean to hopeful",
                )
            ),
        ),
        ("adding *hopeful* (α 4) strengthens it", cell(claim(FLAG, "adding hopeful strengthens the lean to hopeful"))),
        ("asking for hope strengthens it", cell(claim(FLAG, "asking for hope strengthens the lean to hopeful"))),
        (
            "necessity: mean-ablating e lowers e's reading",
            cell(claim("necessity", "ablating e lowers the reading of e")),
        ),
        ("sufficiency: adding e (α 4) raises it", cell(claim("necessity", "adding e raises the reading of e"))),
    ],
    "Gated steering (`gate`: 45 hidden desperate and 45 neutral messages, hopeful α 4 `--when desperate`)": [
        ("the gate fired on", cell(gate_rates)),
        (
            "gated: replies to desperate messages more hopeful",
            cell(claim("gate", "gated steering makes replies to desperate messages more hopeful")),
        ),
        (
            "gated: replies to neutral messages unchanged",
            cell(claim("gate", "gated steering leaves replies to neutral messages unchanged")),
        ),
        (
            "always on: replies to neutral messages change",
            cell(claim("gate", "always-on steering changes replies to neutral messages")),
        ),
    ],
    "Scope and geometry (`steerlab report`, reading layer)": [
        ("valence axis", cell(geometry)),
        ("dual speaker; assistant arousal vs user's", cell(dual)),
        ("intensity scales (steerlab's 25 relations)", cell(intensity)),
    ],
}


def render() -> str:
    models = list(BUILTIN_SOURCES)
    results = {m: load(m) for m in models}
    out = []
    for title, rows in TABLES.items():
        out += [f"**{title}**", "", "| | " + " | ".join(f"`{m}`" for m in models) + " |"]
        out.append("|---|" + "---|" * len(models))
        out += [f"| {label} | " + " | ".join(fn(results[m]) for m in models) + " |" for label, fn in rows]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print(render(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
