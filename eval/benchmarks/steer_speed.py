"""Steered vs unsteered generation speed, side by side in one run (interleaved repeats, best of).

    python eval/benchmarks/steer_speed.py [--model gemma-3-270m] [--prompts 8] [--tokens 48]
    python eval/benchmarks/steer_speed.py --model random:gemma-2-2b --prompts 2 --tokens 8

The steered run adds one direction at one layer on every position (for the embedded model, the
shipped hopeful vector at the steering layer with alpha 4; for random models, a random direction).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from steerlab.core.corpus import load_corpus
from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.model.models import load_model
from steerlab.steer.edits import Edit, build_edits, random_direction
from steerlab.steer.generation import GenerationConfig, generate

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lm = load_model(args.model)
    prompts = [t[:120] for t in load_corpus().texts[::50][: args.prompts]]
    shipped = shipped_vectors(lm.spec)
    if shipped is not None:
        v = load_vectors(shipped)
        edits = build_edits(v, [v.steering_layer], add={"hopeful": 4.0})
    else:
        layer = lm.n_layers // 2
        edits = [Edit("add", layer, random_direction(lm.hidden_size, 0), 10.0, "random")]
    config = GenerationConfig(max_new_tokens=args.tokens, batch_size=args.prompts)
    generate(lm, prompts[:1], GenerationConfig(max_new_tokens=2))  # warm-up
    best = {"unsteered": float("inf"), "steered": float("inf")}
    for _ in range(args.repeats):
        for name, e in (("unsteered", []), ("steered", edits)):
            start = time.perf_counter()
            generate(lm, prompts, config, e)
            best[name] = min(best[name], time.perf_counter() - start)
    # Both runs generate the same number of tokens (min_new_tokens is not forced: greedy replies may
    # stop early at EOS, so rates are computed on the budget, an upper bound equal for both).
    rate = {k: len(prompts) * args.tokens / v for k, v in best.items()}
    result = {
        "model": lm.spec,
        "prompts": len(prompts),
        "new_tokens": args.tokens,
        "tokens_per_s": rate,
        "steered_vs_unsteered": rate["steered"] / rate["unsteered"],
        "edit": edits[0].label,
    }
    print(f"{lm.spec}: {len(prompts)} prompts x {args.tokens} new tokens, batch {len(prompts)}, best of {args.repeats}")
    for k, r in rate.items():
        print(f"  {k:10s} {r:7.1f} tok/s")
    print(f"  steered / unsteered = {result['steered_vs_unsteered']:.3f}x")
    out = REPO / "eval" / "benchmarks" / "results" / f"steer_speed_{lm.spec.replace(':', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
