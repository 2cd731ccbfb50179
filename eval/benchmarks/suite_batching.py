"""A suite run batched (all conditions of many prompts in one generate call, edits limited to their
rows) against one prompt-and-condition at a time, side by side in one run on the embedded model.

    python eval/benchmarks/suite_batching.py [--prompts 8] [--tokens 16]

The two runs must give the same verdict rows; writes eval/benchmarks/results/suite_batching.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.model.models import load_model
from steerlab.validate import RunOptions, parse_suite, run_suite
from steerlab.validate.prompts import load_prompts

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    lm = load_model()
    v = load_vectors(shipped_vectors(lm.spec) or "")
    prompts = [p.text for p in load_prompts(REPO / "eval" / "data" / "desperate_users.jsonl")][: args.prompts]
    spec = {
        "name": "batching",
        "prompts": prompts,
        "generation": {"max_new_tokens": args.tokens, "chat": True},
        "conditions": [
            {"name": "baseline"},
            {"name": "add", "op": "add", "emotions": ["hopeful"], "alphas": [4]},
            {"name": "ablate", "op": "ablate", "emotions": ["desperate"]},
        ],
        "metrics": {"m": {"kind": "reply", "emotion": "hopeful"}},
        "claims": [{"name": "c", "condition": "add", "metric": "m", "direction": "increase"}],
    }
    suite = parse_suite(spec, "batching.yaml")
    timings: dict[str, float] = {}
    replies = {}
    for name, batch in (("one_at_a_time", 1), ("batched", len(prompts) * 3)):
        run = replace(suite, generation=replace(suite.generation, batch_size=batch))
        start = time.perf_counter()
        result = run_suite(run, lm, v, RunOptions())
        timings[name] = time.perf_counter() - start
        replies[name] = result.replies
    same = replies["batched"] == replies["one_at_a_time"]
    out = {
        "model": lm.spec,
        "prompts": len(prompts),
        "conditions": 3,
        "max_new_tokens": args.tokens,
        "seconds": {k: round(t, 1) for k, t in timings.items()},
        "speedup": round(timings["one_at_a_time"] / timings["batched"], 2),
        "same_replies": same,
    }
    path = REPO / "eval" / "benchmarks" / "results" / "suite_batching.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
