"""Suite outputs: the JSON summary, a Markdown page, rows.csv with every reply, and figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.core.errors import SuiteError
from steerlab.core.files import atomic_write
from steerlab.validate.decide import metric_values
from steerlab.validate.measure import gate_table
from steerlab.validate.page import markdown
from steerlab.validate.run import SuiteResult
from steerlab.validate.spec import OUTPUT_FILES, TARGET, MetricSpec
from steerlab.validate.stats import ci_mean

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

    from steerlab.core.extras import has

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
    from steerlab.report.plots import plot_condition_means, plot_dose_response

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
