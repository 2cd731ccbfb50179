"""Whole commands against their own forward passes, each in a fresh process as a user runs it:

* extract   ``steerlab extract`` on the built-in corpus end to end; the vector file's ``timing`` says
            how much of the wall time went to the forward passes and how much came after them
            (directions, probes, the reader choice), and which layers and reader it chose beside the
            shipped file's;
* steer     ``steerlab steer PROMPT --emotion hopeful --alpha 4`` (baseline and steered reply, both
            re-read by the clean model) against a plain script that loads the same model and
            ``generate``s the same number of tokens (two replies of ``--tokens`` each, no stopping early).

    python eval/benchmarks/commands.py [--model smollm2-135m-instruct] [--skip-extract]

* errors    model-free errors in a command's body (a missing or broken vector file, an unknown
            emotion, a suite's --n too small to decide, a suite's missing vectors), each in a fresh
            process: seconds to the one-line error, and whether torch was imported.

(``validate``'s run is measured by its own benchmark.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PROMPT = "I lost my job today and I don't know how I'll pay rent."
PLAIN = """
import sys, time, torch
from steerlab.model.chat import prompt_text
from steerlab.model.models import load_model
lm = load_model(sys.argv[1])
tokens = int(sys.argv[3])
ids = lm.tokenizer([prompt_text(lm.tokenizer, sys.argv[2], True)], return_tensors="pt")
with torch.inference_mode():
    for _ in range(2):  # the baseline and the steered reply
        lm.model.generate(
            **ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, top_p=None, top_k=None,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
"""


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done


def steerlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "steerlab", *args]


def extract(model: str) -> dict[str, Any]:
    from steerlab.core.vectorfile import read_meta, shipped_vectors

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "emotions.safetensors"
        wall, done = timed(steerlab("extract", "--model", model, "--out", str(out)))
        meta = read_meta(out)
    timing = meta["timing"]
    passes = timing["forward"] + timing.get("reply_forward", 0.0)  # the corpus's and the replies' forward passes
    shipped_path = shipped_vectors(model)
    shipped = read_meta(shipped_path) if shipped_path else {}
    keys = ("chosen_layer", "best_layer", "reading_layer")
    return {
        "wall_s": round(wall, 1),
        "timing": timing,
        # everything but loading the model and its forward passes: fitting, choosing, writing, start-up
        "beyond_load_and_forward_share": round((wall - timing["load"] - passes) / wall, 3),
        # everything after the corpus's pooling pass, the replies' forward pass included
        "after_corpus_forward_share": round((wall - timing["load"] - timing["forward"]) / wall, 3),
        "forward_share": round(passes / wall, 3),
        "choices": {k: meta[k] for k in keys} | {"reader": meta.get("reading", {}).get("reader")},
        "shipped_choices": {k: shipped.get(k) for k in keys} | {"reader": shipped.get("reading", {}).get("reader")},
        "log_tail": done.stderr.strip().splitlines()[-14:],
    }


def steer(model: str, tokens: int, repeats: int) -> dict[str, Any]:
    best: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, so load on the machine hits both alike
        args = ("steer", PROMPT, "--model", model, "--emotion", "hopeful", "--alpha", "4", "--json")
        s, _ = timed(steerlab(*args, "--max-new-tokens", str(tokens)))
        p, _ = timed([sys.executable, "-c", PLAIN, model, PROMPT, str(tokens)])
        best = {"steer": min(best.get("steer", s), s), "plain_generate": min(best.get("plain_generate", p), p)}
    return {
        "prompt": PROMPT,
        "tokens_per_reply": tokens,
        "best_of": repeats,
        "wall_s": {k: round(v, 2) for k, v in best.items()},
        "steer_vs_plain": round(best["steer"] / best["plain_generate"], 2),
    }


CHECK = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr))\n"
    "from steerlab.cli import main\n"
    "sys.argv = ['steerlab', *sys.argv[1:]]\n"
    "main()\n"
)


def errors(repeats: int) -> dict[str, Any]:
    from steerlab.core.vectorfile import shipped_vectors

    shipped = str(shipped_vectors("gemma-3-270m"))
    suite = str(REPO / "eval" / "suites" / "necessity.yaml")
    cases = {
        "steer: missing vector file": ["steer", "hi", "--vectors", "/nonexistent.safetensors", "--emotion", "calm"],
        "steer: unknown emotion": ["steer", "hi", "--vectors", shipped, "--emotion", "hopefull"],
        "steer: layer out of range": ["steer", "hi", "--vectors", shipped, "--emotion", "calm", "--layers", "99"],
        "scope: missing vector file": ["scope", "hi", "--vectors", "/nonexistent.safetensors"],
        "validate: --n 1": ["validate", suite, "--n", "1", "--out", "/tmp/steerlab-bench-run"],
        "validate: missing --vectors": ["validate", suite, "--vectors", "/nonexistent.safetensors"],
        "extract: missing corpus": ["extract", "--corpus", "/nonexistent.jsonl", "--out", "/tmp/x.safetensors"],
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out: dict[str, Any] = {}
    for name, argv in cases.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHECK, *argv], capture_output=True, text=True, env=env)
            best = min(best, time.perf_counter() - start)
        lines = done.stderr.strip().splitlines()
        out[name] = {"s": round(best, 2), "exit": done.returncode, "torch": lines[-1] == "TORCH", "error": lines[0]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-extract", action="store_true", help="keep the extract part of an earlier result")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    target = Path(args.out or REPO / "eval" / "benchmarks" / "results" / f"commands_{args.model}.json")
    result: dict[str, Any] = json.loads(target.read_text()) if args.skip_extract and target.is_file() else {}
    result |= {"model": args.model, "threads": int(os.environ.get("OMP_NUM_THREADS", "1")), "cpus": os.cpu_count()}
    if not args.skip_extract:
        result["extract"] = extract(args.model)
        print(json.dumps(result["extract"], indent=1), flush=True)
    result["errors"] = errors(args.repeats)
    print(json.dumps(result["errors"], indent=1), flush=True)
    result["steer"] = steer(args.model, args.tokens, args.repeats)
    print(json.dumps(result["steer"], indent=1))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
