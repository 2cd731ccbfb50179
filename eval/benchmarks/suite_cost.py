"""What a suite costs against the work it cannot avoid, side by side in one run: the flagship suite
(`eval/suites/desperate_to_hopeful.yaml`, its control populations included) against a plain batched
`generate` of the same rows (same prompts, batch size and token budget, no edits) plus one clean
re-reading pass of those replies in their conversation.

    python eval/benchmarks/suite_cost.py [--model smollm2-135m-instruct] [--n 8]

Writes eval/benchmarks/results/suite_cost_MODEL.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.model.models import load_model
from steerlab.read.readers import read_replies
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.validate import RunOptions, load_suite, run_suite
from steerlab.validate.rows import suite_jobs

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args()
    lm = load_model(args.model)
    v = load_vectors(shipped_vectors(lm.spec) or "")
    suite = load_suite(REPO / "eval" / "suites" / "desperate_to_hopeful.yaml")
    suite = dataclasses.replace(suite, measurement=dataclasses.replace(suite.measurement, secondary=()))
    start = time.perf_counter()
    result = run_suite(suite, lm, v, RunOptions(n=args.n))
    suite_s = time.perf_counter() - start

    gen = suite.generation
    jobs = suite_jobs(result.conditions, len(result.prompts), gen.samples)
    texts = [result.prompts[p].text for _, p, _ in jobs]
    config = GenerationConfig(
        max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        chat=gen.chat,
        batch_size=gen.batch_size,
        frame=gen.frame,
    )
    start = time.perf_counter()
    replies = generate(lm, texts, config)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    read_replies(lm, v, replies, texts, gen.chat, v.default_reader, v.reading_layer, suite.coherence.detector())
    read_s = time.perf_counter() - start
    out = {
        "model": lm.spec,
        "suite": suite.name,
        "prompts": len(result.prompts),
        "rows": len(jobs),
        "conditions": len(result.conditions),
        "max_new_tokens": gen.max_new_tokens,
        "seconds": {"suite": round(suite_s, 1), "plain_generate": round(generate_s, 1), "reread": round(read_s, 1)},
        "suite_vs_generate_and_read": round(suite_s / (generate_s + read_s), 2),
        "suite_vs_generate": round(suite_s / generate_s, 2),
        "note": "the suite also reads perplexity under the clean model, calibrates displacement and decides",
    }
    path = REPO / "eval" / "benchmarks" / "results" / f"suite_cost_{lm.spec}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
