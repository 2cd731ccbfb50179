"""Suite outputs: the JSON summary, a Markdown page, rows.csv with every reply, and figures."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuiteError
from ..files import atomic_write
from .decide import metric_values
from .measure import gate_table
from .run import SuiteResult
from .spec import OUTPUT_FILES, TARGET, MetricSpec
from .stats import ci_mean

CLAIM_KEYS = (
    "name",
    "verdict",
    "effect",
    "ci",
    "p",
    "p_adj",
    "p_family",
    "power",
    "mde",
    "premise",
    "reader",
    "controls",
)
CONDITION_KEYS = ("name", "degenerate", "displacement", "echo_rate", "incoherent")


def condition_means(result: SuiteResult, metric: MetricSpec) -> list[dict[str, Any]]:
    """Mean and CI of ``metric`` per condition (a "target" metric uses each condition's own emotion,
    and skips conditions without one)."""
    rows = []
    for i, cond in enumerate(result.conditions):
        if metric.emotion == TARGET and cond.emotion is None:
            continue
        v = metric_values(result.readings, metric, i, cond.emotion, result.prompts, result.emotions)
        v = v[np.isfinite(v)]
        lo, hi = ci_mean(v) if len(v) > 1 else (float("nan"), float("nan"))
        rows.append(
            {"condition": cond.name, "mean": float(v.mean()) if len(v) else float("nan"), "ci": [lo, hi], "n": len(v)}
        )
    return rows


def summary(result: SuiteResult) -> dict[str, Any]:
    """The JSON-serialisable summary (``--json`` prints its first keys)."""
    suite = result.suite
    fixed = [m for m in suite.metrics if m.emotion != TARGET] or list(suite.metrics)
    return {
        "suite": suite.name,
        "n": len(result.prompts),
        "reader": {
            "name": result.readings.reader,
            "layer": result.readings.layer,
            "validation": result.validation.get(result.readings.reader, {}),
        },
        "premises": [c for c in result.claims if any(x.premise == c["claim"] for x in suite.claims)],
        "claims": [{k: c[k] for k in CLAIM_KEYS} for c in result.claims],
        "conditions": [{k: q[k] for k in CONDITION_KEYS} for q in result.quality],
        "warnings": result.warnings,
        "is_claim": result.is_claim,
        "note": result.note,
        "description": suite.description,
        "suite_path": suite.path,
        "statistics": vars(suite.statistics),
        "generation": {**vars(suite.generation), "frame": [list(x) for x in suite.generation.frame]},
        "secondary_readers": [r.reader for r in result.secondary],
        "reader_validation": result.validation,
        "seconds": result.seconds,
        "claim_details": result.claims,
        "quality": result.quality,
        "means": {m.name: condition_means(result, m) for m in fixed},
        "dose": result.dose,
        "gates": gate_table(result),
    }


def write_outputs(result: SuiteResult, out_dir: str | Path) -> list[Path]:
    """rows.csv (one row per prompt x condition x sample, with the reply), summary.json, summary.md, figures."""
    import pandas as pd

    from ..extras import has

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SuiteError(f"cannot create output folder {str(out)!r} ({err.strerror}): choose another --out") from None
    rows = []
    for c, cond in enumerate(result.conditions):
        for p, prompt in enumerate(result.prompts):
            for s, reply in enumerate(result.replies[c][p]):
                row = {
                    "prompt_index": p,
                    "prompt": prompt.text,
                    "label": prompt.label,
                    "condition": cond.name,
                    "group": cond.group,
                    "sample": s,
                    "reply": reply,
                    "ppl": result.ppl[c, p, s],
                    "distinct2": result.distinct[c, p, s],
                    "incoherent": bool(result.readings.incoherent[c, p, s]),
                }
                for e, emotion in enumerate(result.emotions):
                    row[f"reply_{emotion}"] = result.readings.replies[c, p, s, e]
                    row[f"prompt_{emotion}"] = result.readings.prompts[p, e]
                rows.append(row)
    summ = summary(result)
    written = [out / name for name in OUTPUT_FILES]
    atomic_write(written[0], lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g"))
    atomic_write(written[1], lambda tmp: Path(tmp).write_text(json.dumps(summ, indent=1, default=_json_default) + "\n"))
    atomic_write(written[2], lambda tmp: Path(tmp).write_text(markdown(result, summ)))
    if not has("plots"):  # figures need the `plots` extra; the tables above do not
        return written
    from ..plots import plot_condition_means, plot_dose_response

    degenerate = {q["name"] for q in result.quality if q["degenerate"]}
    for name, means in summ["means"].items():
        if 0 < len(means) <= 40:
            written.append(
                plot_condition_means(
                    means, out / f"means_{name}.png", title=f"{result.suite.name}: {name}", degenerate=degenerate
                )
            )
    if any(r["alpha"] is not None for r in result.dose):
        written.append(plot_dose_response(result.dose, out / "dose_response.png", title=result.suite.name))
    return written


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _f(x: float | None, spec: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return format(x, spec or ("+.4f" if abs(x) < 100 else ".3g"))


def _p(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.2g}" if x < 1e-3 else f"{x:.3f}"


def validation_line(validation: Mapping[str, Any]) -> str:
    """The reader's validation figures in words: on the model's own judged replies, then on written ones."""
    if not validation:
        return "not validated"
    mine = validation.get("model_replies")
    if mine:
        own = (
            f"on this model's own replies (judged blind, {mine['n']} replies to {mine['test_messages']} held-out "
            f"messages): macro AUROC {_f(mine['macro_auroc'], '.2f')}, Spearman with judged hopeful "
            f"{_f(mine['spearman_hopeful'], '.2f')}, AUROC hopeful>=3 {_f(mine['auroc_hopeful_3plus'], '.2f')}, "
            f"{_f(mine['coverage'], '.0%')} of coherent replies read, judged-incoherent caught "
            f"{_f(mine['incoherent_recall'], '.0%')}"
        )
    else:
        own = "NOT validated on this model's own replies"
    macro = validation.get("macro_auroc")
    written = f"macro AUROC {_f(macro, '.2f')} on {validation.get('validated_on', '?')}" if macro is not None else ""
    return "; ".join(x for x in (own, written) if x)


def markdown(result: SuiteResult, summ: Mapping[str, Any]) -> str:
    suite, gen = result.suite, result.suite.generation
    reader = summ["reader"]
    frame = f", few-shot frame of {len(gen.frame)} exchanges (models without a chat template)" if gen.frame else ""
    lines = [
        f"# {suite.name}",
        "",
        suite.description.strip(),
        "",
        (
            f"{len(result.prompts)} prompts x {len(result.conditions)} conditions x {gen.samples} samples, "
            f"{gen.max_new_tokens} new tokens"
            f"{frame}; "
            f"{suite.statistics.correction} correction at alpha {suite.statistics.alpha:g}; {result.seconds:.0f} s."
        ),
        "",
        f"Reader: **{reader['name']}** at layer {reader['layer']} — "
        f"validation: {validation_line(reader['validation'])}.",
        "",
    ]
    for other in result.secondary:
        lines.append(f"Secondary reader: {other.reader} — {validation_line(result.validation.get(other.reader, {}))}.")
    if result.note:
        lines += [f"**Note:** {result.note}", ""]
    for warning in result.warnings:
        lines += [f"**Warning:** {warning}", ""]
    lines += [
        "## Claims",
        "",
        "Effects are oriented so that positive means as claimed; p and p_adj are the family's that decided "
        "the verdict (FAIL: the wrong-side tests; otherwise PASS: the effect and every control).",
        "",
        "| claim | verdict | effect | 95% CI | p (family) | p_adj | power at min effect | MDE | n "
        "| controls (non-degenerate) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.claims:
        families = ", ".join(f"{f['family']} {f['non_degenerate']}/{f['directions']}" for f in c["controls"])
        lines.append(
            f"| {c['name']} | **{c['verdict'].upper()}** | {_f(c['effect'])} | [{_f(c['ci'][0])}, {_f(c['ci'][1])}] | "
            f"{_p(c['p'])} ({c['p_family']}) | {_p(c['p_adj'])} | {c['power']:.2f} | {_f(c['mde'])} | {c['n']} | "
            f"{families or '–'} |"
        )
    lines.append("")
    for c in result.claims:
        extra = f" Excluded degenerate controls: {', '.join(c['excluded_controls'])}." if c["excluded_controls"] else ""
        lines.append(f"- {c['name']}: {'; '.join(c['reasons'])}.{extra}")
    lines += [
        "",
        "## Conditions",
        "",
        "| condition | "
        + " | ".join(summ["means"])
        + " | ‖Δx‖ per token | ppl ratio | distinct-2 | echo | looping | incoherent (not read) | degenerate |",
        "|---|" + "---|" * (len(summ["means"]) + 7),
    ]
    means = {k: {r["condition"]: r for r in v} for k, v in summ["means"].items()}
    for q, cond in zip(result.quality, result.conditions, strict=True):
        cells = [_f(means[k][q["name"]]["mean"]) if q["name"] in means[k] else "–" for k in means]
        what = f" ({cond.emotion})" if cond.op == "ablate_similar" else ""
        lines.append(
            f"| {q['name']}{what} | " + " | ".join(cells) + f" | {q['displacement']:.1f} | {q['ppl_ratio']:.2f} | "
            f"{q['distinct2']:.2f} | {q['echo_rate']:.0%} | {q['degenerate_replies']:.0%} | {q['incoherent']:.0%} | "
            f"{q['why'] or 'no'} |"
        )
    if summ["gates"]:
        lines += ["", "## Gates (how often each gated condition's gate fired, per prompt label)", ""]
        lines += ["| condition | label | fired | threshold |", "|---|---|---|---|"]
        lines += [
            f"| {g['condition']} | {g['label']} | {g['fired']}/{g['n']} ({g['rate']:.0%}) | {g['threshold']:.3g} |"
            for g in summ["gates"]
        ]
    if result.dose:
        lines += [
            "",
            "## Dose response (vs baseline)",
            "",
            "| condition | target Δ | 95% CI | mean off-target Δ | ‖Δx‖ | ppl ratio | degenerate |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in result.dose:
            lines.append(
                f"| {d['name']} | {_f(d['target_delta'])} | [{_f(d['target_ci'][0])}, {_f(d['target_ci'][1])}] | "
                f"{_f(d['offtarget_delta'])} | {d['displacement']:.1f} | {d['ppl_ratio']:.2f} | "
                f"{'yes' if d['degenerate'] else 'no'} |"
            )
    lines += ["", "## Example replies (first prompt)", "", f"> {result.prompts[0].text}", ""]
    shown = [i for i, per in enumerate(result.replies) if per[0]][:14]  # a population's direction may skip it
    lines += [f"- **{result.conditions[i].name}**: {result.replies[i][0][0]!r}" for i in shown]
    return "\n".join(lines) + "\n"
