"""A suite's Markdown page (``summary.md``): setup and reader, claims, conditions, gates, dose response,
example replies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from steerlab.core.display import fmt_p
from steerlab.validate.run import SuiteResult


def _f(x: float | None, spec: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return format(x, spec or ("+.4f" if abs(x) < 100 else ".3g"))


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
    """The suite's Markdown page: setup and reader, claims, conditions, gates, dose response, example replies."""
    lines = [
        *_header_lines(result, summ),
        *_claim_lines(result),
        *_condition_lines(result, summ),
        *_gate_lines(summ),
        *_dose_lines(result),
        *_example_lines(result),
    ]
    return "\n".join(lines) + "\n"


def _header_lines(result: SuiteResult, summ: Mapping[str, Any]) -> list[str]:
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
    return lines


def _claim_lines(result: SuiteResult) -> list[str]:
    lines = [
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
            f"{fmt_p(c['p'], '–')} ({c['p_family']}) | {fmt_p(c['p_adj'], '–')} | {c['power']:.2f} | "
            f"{_f(c['mde'])} | {c['n']} | "
            f"{families or '–'} |"
        )
    lines.append("")
    for c in result.claims:
        extra = f" Excluded degenerate controls: {', '.join(c['excluded_controls'])}." if c["excluded_controls"] else ""
        lines.append(f"- {c['name']}: {'; '.join(c['reasons'])}.{extra}")
    return lines


def _condition_lines(result: SuiteResult, summ: Mapping[str, Any]) -> list[str]:
    lines = [
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
    return lines


def _gate_lines(summ: Mapping[str, Any]) -> list[str]:
    if not summ["gates"]:
        return []
    lines = ["", "## Gates (how often each gated condition's gate fired, per prompt label)", ""]
    lines += ["| condition | label | fired | threshold |", "|---|---|---|---|"]
    lines += [
        f"| {g['condition']} | {g['label']} | {g['fired']}/{g['n']} ({g['rate']:.0%}) | {g['threshold']:.3g} |"
        for g in summ["gates"]
    ]
    return lines


def _dose_lines(result: SuiteResult) -> list[str]:
    if not result.dose:
        return []
    lines = [
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
    return lines


def _example_lines(result: SuiteResult) -> list[str]:
    lines = ["", "## Example replies (first prompt)", "", f"> {result.prompts[0].text}", ""]
    shown = [i for i, per in enumerate(result.replies) if per[0]][:14]  # a population's direction may skip it
    lines += [f"- **{result.conditions[i].name}**: {result.replies[i][0][0]!r}" for i in shown]
    return lines
