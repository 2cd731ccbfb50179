"""Merge a model's blind labels, measure the two annotators' agreement, and summarise by condition.

    python eval/labels/agreement.py --model MODEL [--set emotional|desperate|scales|hopeful]

Reads eval/labels/MODEL[/SET]/labels/batch_*.annotator_a.jsonl (every reply once) and
double.annotator_b.jsonl (a fifth again, labelled independently), checks them against the batches,
and writes eval/labels/MODEL/labels.jsonl (annotator a's labels joined with the key: suite,
condition, user message, reply) and eval/labels/MODEL/summary.json: agreement (quadratic-weighted Cohen's κ and
Spearman per scale, Cohen's κ and raw agreement on the label, incoherent-or-not), the label
distribution, and per condition the judged means and incoherent share.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

REPO = Path(__file__).resolve().parents[2]
SCALES = ("hopeful", "desperate", "calm", "coherence")
LABELS = (
    "happy sad afraid angry calm desperate hopeful frustrated curious proud guilty surprised loving hostile nervous "
    "confident brooding enthusiastic reflective gloomy neutral incoherent"
).split()


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checked(labels: list[dict[str, Any]], items: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    if [x["id"] for x in labels] != [x["id"] for x in items]:
        raise SystemExit(f"{source}: ids differ from the batch")
    for x in labels:
        bad = [s for s in SCALES if x.get(s) not in (1, 2, 3, 4, 5)] + ([] if x.get("label") in LABELS else ["label"])
        if bad:
            raise SystemExit(f"{source}: {x['id']} has invalid {', '.join(bad)}")
    return labels


def agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(a)}
    for s in SCALES:
        x, y = np.array([r[s] for r in a]), np.array([r[s] for r in b])
        same = len(set(x)) > 1 and len(set(y)) > 1
        kappa = float(cohen_kappa_score(x, y, weights="quadratic"))
        out[s] = {  # None: both annotators gave one value throughout, so there is nothing to agree on
            "weighted_kappa": kappa if np.isfinite(kappa) else None,
            "spearman": float(spearmanr(x, y).statistic) if same else None,
            "exact": float(np.mean(x == y)),
        }
    la, lb = [r["label"] for r in a], [r["label"] for r in b]
    ia, ib = [x == "incoherent" for x in la], [x == "incoherent" for x in lb]
    for name, (x, y) in {"label": (la, lb), "incoherent": (ia, ib)}.items():
        out[name] = {"kappa": float(cohen_kappa_score(x, y)), "exact": float(np.mean(np.array(x) == np.array(y)))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--set", default="", help="a further set in a subfolder, as generate.py --set writes it")
    args = ap.parse_args()
    folder = REPO / "eval" / "labels" / args.model / args.set
    first: list[dict[str, Any]] = []
    for batch in sorted(folder.glob("batch_*.jsonl")):
        source = folder / "labels" / f"{batch.stem}.annotator_a.jsonl"
        first += checked(read(source), read(batch), source)
    second = checked(read(folder / "labels" / "double.annotator_b.jsonl"), read(folder / "double.jsonl"), folder)
    key = {k["id"]: k for k in read(folder / "key.jsonl")}
    for batch in sorted(folder.glob("batch_*.jsonl")):
        for item in read(batch):
            key[item["id"]]["reply"] = item["reply"]
    by_id = {r["id"]: r for r in first}
    merged = [{**key[r["id"]], **{k: r[k] for k in (*SCALES, "label")}} for r in first]
    (folder / "labels.jsonl").write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in merged))
    conditions: dict[str, list[dict[str, Any]]] = {}
    for m in merged:
        source = m.get("suite", m.get("source"))
        # one group per condition; in the set over 20 emotions, one per emotion at any alpha
        whole = source == "desperate_to_hopeful" or args.set not in ("", "emotional")
        group = m["condition"] if whole else m["condition"].split(":")[0]
        conditions.setdefault(f"{source}/{group}", []).append(m)
    summary = {
        "model": args.model,
        "n": len(merged),
        "messages": len({m["user"] for m in merged}),
        "agreement": agreement([by_id[r["id"]] for r in second], second),
        "labels": dict(Counter(m["label"] for m in merged).most_common()),
        "by_condition": {
            name: {
                "n": len(rows),
                **{f"mean_{s}": float(np.mean([r[s] for r in rows])) for s in SCALES},
                "hopeful_3plus": float(np.mean([r["hopeful"] >= 3 for r in rows])),
                "desperate_3plus": float(np.mean([r["desperate"] >= 3 for r in rows])),
                "incoherent": float(np.mean([r["label"] == "incoherent" for r in rows])),
            }
            for name, rows in sorted(conditions.items())
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary[k] for k in ("n", "messages", "agreement", "labels")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
