"""Draw a model's own replies from its committed suite results into blind batches for labelling.

    python eval/labels/sample.py --model MODEL [--n 500] [--batches 5] [--seed 0]

Sources: eval/results/MODEL/desperate_to_hopeful/rows.csv (desperate user messages; every condition:
baseline, ablations, added hopeful, random additions that break fluency, a hopeful instruction;
the first sample of each prompt x condition) and eval/results/MODEL/dose_response/rows.csv (neutral
user messages; every emotion added at alpha -4..8 and random additions; a seeded draw). Writes
eval/labels/MODEL/: batch_K.jsonl ({"id", "user", "reply"}: what an annotator sees, shuffled),
double.jsonl (a fifth of the replies again, reshuffled, for a second independent annotator), and
key.jsonl (id -> suite, condition, prompt, sample), which annotators never open.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def rows(model: str, suite: str) -> list[dict[str, str]]:
    with open(REPO / "eval" / "results" / model / suite / "rows.csv", newline="") as f:
        return list(csv.DictReader(f))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    desperate = [dict(r, suite="desperate_to_hopeful") for r in rows(args.model, "desperate_to_hopeful")]
    desperate = [r for r in desperate if r["sample"] == "0"]
    dose = [dict(r, suite="dose_response") for r in rows(args.model, "dose_response")]
    base = [r for r in dose if r["condition"] == "baseline"]
    rest = [r for r in dose if r["condition"] != "baseline"]
    need = args.n - len(desperate) - len(base)
    if need < 0 or need > len(rest):
        raise SystemExit(f"cannot draw {args.n} replies from {len(desperate)} + {len(dose)} rows")
    chosen = desperate + base + [rest[i] for i in sorted(rng.choice(len(rest), need, replace=False))]
    order = rng.permutation(len(chosen))
    out = REPO / "eval" / "labels" / args.model
    out.mkdir(parents=True, exist_ok=True)
    items, key = [], []
    for k, i in enumerate(order):
        r = chosen[i]
        rid = f"r{k:04d}"
        items.append({"id": rid, "user": r["prompt"], "reply": r["reply"]})
        key.append(
            {
                "id": rid,
                "suite": r["suite"],
                "condition": r["condition"],
                "prompt_index": int(r["prompt_index"]),
                "sample": int(r["sample"]),
                "user": r["prompt"],
            }
        )
    size = -(-len(items) // args.batches)
    for b in range(args.batches):
        write(out / f"batch_{b + 1}.jsonl", items[b * size : (b + 1) * size])
    twice = [items[i] for i in range(0, len(items), 5)]
    write(out / "double.jsonl", [twice[i] for i in rng.permutation(len(twice))])
    write(out / "key.jsonl", key)
    print(f"{len(items)} replies in {args.batches} batches, {len(twice)} to label twice: {out}")
    return 0


def write(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


if __name__ == "__main__":
    raise SystemExit(main())
