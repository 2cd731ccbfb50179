"""The exported control vector in a real llama.cpp, against pyvene in steerlab, on the same prompts.

    python eval/benchmarks/llamacpp_check.py [--model gemma-3-270m] [--n 16] [--alpha 4] [--tokens 32]

Both runtimes start from the built-in model's GGUF (steerlab de-quantises it to floats, llama.cpp runs
it quantised). For each prompt of eval/data/desperate_users.jsonl: greedy baseline and hopeful-steered
replies at the steering layer in both runtimes, all re-read by steerlab's clean model with the file's
validated reader. Writes eval/benchmarks/results/llamacpp_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from steerlab.core.names import BUILTIN_SOURCES, EMBEDDED
from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.export.control_vector import write_control_vector
from steerlab.export.llamacpp import greedy_replies, read_control_vector
from steerlab.model.chat import prompt_text
from steerlab.model.models import builtin_gguf, load_model
from steerlab.read.comparison import compare
from steerlab.read.readers import read_replies
from steerlab.steer.generation import GenerationConfig, clean_reply
from steerlab.validate.prompts import load_prompts

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=EMBEDDED, choices=sorted(BUILTIN_SOURCES))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=4.0)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    lm = load_model(args.model)
    v = load_vectors(shipped_vectors(lm.spec) or "")
    prompts = [p.text for p in load_prompts(REPO / "eval" / "data" / "desperate_users.jsonl")][: args.n]
    folder = Path(tempfile.mkdtemp())
    model_file = builtin_gguf(lm.spec, folder)
    vector_file = write_control_vector(folder / "hopeful.gguf", v, "hopeful", args.alpha)
    texts = [prompt_text(lm.tokenizer, p, chat=True) for p in prompts]
    start = time.perf_counter()
    lc_base = [clean_reply(lm, r, chat=True) for r in greedy_replies(model_file, texts, args.tokens)]
    lc_steer = [
        clean_reply(lm, r, chat=True)
        for r in greedy_replies(model_file, texts, args.tokens, read_control_vector(vector_file))
    ]
    lc_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rows = compare(
        lm, v, prompts, add={"hopeful": args.alpha}, config=GenerationConfig(max_new_tokens=args.tokens, chat=True)
    )
    pv_seconds = time.perf_counter() - start
    h = v.index("hopeful")

    def hopeful(replies: list[str]) -> np.ndarray:
        return read_replies(lm, v, replies, prompts, chat=True).scores[:, h]

    scores = {
        "llamacpp_baseline": hopeful(lc_base),
        "llamacpp_steered": hopeful(lc_steer),
        "pyvene_baseline": np.array([r.baseline_scores[h] for r in rows]),
        "pyvene_steered": np.array([r.steered_scores[h] for r in rows]),
    }
    shift = {rt: float(np.nanmean(scores[f"{rt}_steered"] - scores[f"{rt}_baseline"])) for rt in ("llamacpp", "pyvene")}
    result = {
        "model": lm.spec,
        "n_prompts": len(prompts),
        "alpha": args.alpha,
        "layer": v.steering_layer,
        "reader": v.default_reader,
        "reading_layer": v.reading_layer,
        "max_new_tokens": args.tokens,
        "hopeful_shift": shift,
        "hopeful_up_share": {
            rt: float(np.mean(scores[f"{rt}_steered"] > scores[f"{rt}_baseline"])) for rt in ("llamacpp", "pyvene")
        },
        "same_greedy_baseline": float(np.mean([a == r.baseline for a, r in zip(lc_base, rows, strict=True)])),
        "same_greedy_steered": float(np.mean([a == r.steered for a, r in zip(lc_steer, rows, strict=True)])),
        "seconds": {"llamacpp": round(lc_seconds, 1), "pyvene": round(pv_seconds, 1)},
        "examples": [
            {"prompt": p, "llamacpp_steered": s, "pyvene_steered": r.steered}
            for p, s, r in list(zip(prompts, lc_steer, rows, strict=True))[:3]
        ],
    }
    out = REPO / "eval" / "benchmarks" / "results" / f"llamacpp_{lm.spec}.json"
    out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("hopeful_shift", "hopeful_up_share", "same_greedy_baseline", "same_greedy_steered", "seconds")
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
