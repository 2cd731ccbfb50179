"""Extraction speed, measured side by side in one run on the same texts and batches:

* steerlab   pooled_activations: length-sorted batches, hooks on every layer, pooling in the hook;
* limit      the same batches through the decoder stack with no hooks and no pooling;
* naive      the same batches through the full model with output_hidden_states=True (LM head too);
* loop       one text at a time, full model, output_hidden_states=True (the reference tool's way).

    python eval/benchmarks/extract_speed.py [--model gemma-3-270m] [--n 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from steerlab.core.corpus import load_corpus
from steerlab.model.activations import (
    PoolingConfig,
    pad_batch,
    pooled_activations,
    run_backbone,
    tokenize,
)
from steerlab.model.models import load_model

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--n", type=int, default=256, help="texts from the built-in corpus")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lm = load_model(args.model)
    texts = load_corpus().texts[: args.n]
    ids = tokenize(lm, texts, 256)
    n_tokens = sum(len(x) for x in ids)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [
        pad_batch(lm, [ids[i] for i in order[lo : lo + args.batch_size]])
        for lo in range(0, len(order), args.batch_size)
    ]

    def steerlab_run() -> None:
        pooled_activations(lm, texts, PoolingConfig(batch_size=args.batch_size))

    def limit_run() -> None:
        with torch.inference_mode():
            for b in batches:
                run_backbone(lm, b["input_ids"], b["attention_mask"])

    def naive_run() -> None:
        with torch.inference_mode():
            for b in batches:
                lm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)

    def loop_run() -> None:
        with torch.inference_mode():
            for x in ids:
                lm.model(input_ids=torch.tensor([x]), output_hidden_states=True)

    runs = {
        "steerlab": steerlab_run,
        "limit (backbone only)": limit_run,
        "naive batched (full model)": naive_run,
        "one-by-one loop": loop_run,
    }
    best: dict[str, float] = {}
    limit_run()  # warm-up
    for _ in range(args.repeats):  # interleaved, so load on the machine hits every variant alike
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    rate = {k: n_tokens / v for k, v in best.items()}
    result = {
        "model": lm.spec,
        "texts": len(texts),
        "tokens": n_tokens,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "tokens_per_s": rate,
        "steerlab_vs_limit": rate["steerlab"] / rate["limit (backbone only)"],
        "steerlab_vs_naive": rate["steerlab"] / rate["naive batched (full model)"],
        "steerlab_vs_loop": rate["steerlab"] / rate["one-by-one loop"],
    }
    print(
        f"{lm.spec}: {len(texts)} texts, {n_tokens} tokens, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads (best of {args.repeats})"
    )
    for name, r in rate.items():
        print(f"  {name:28s} {r:8.0f} tok/s")
    print(
        f"  steerlab / limit = {result['steerlab_vs_limit']:.2f}x   "
        f"steerlab / naive = {result['steerlab_vs_naive']:.2f}x   "
        f"steerlab / loop = {result['steerlab_vs_loop']:.2f}x"
    )
    out = Path(args.out or REPO / "eval" / "benchmarks" / "results" / f"extract_speed_{lm.spec.replace(':', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
