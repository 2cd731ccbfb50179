"""The mission's model shape end to end: random:gemma-2-2b (26 layers, d 2304, bf16, random weights).

    python eval/benchmarks/scale_2b.py

Each stage runs in its own process (so its peak resident memory is its own): extract on two corpus
sizes (peak memory must not grow with the corpus: pooling keeps one batch of one layer), steer, scope
and a two-prompt validate. Each reports model-load seconds, stage seconds, tokens and tokens/s, and
peak RSS. Random weights: this measures plumbing, memory and speed, never emotions.
Writes eval/benchmarks/results/scale_2b.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = "random:gemma-2-2b"
WORDS = {
    "joyful": "sun cake songs picnic dancing friends laughter flowers",
    "grim": "rain grave darkness dust winter silence loss ashes",
    "edgy": "creak knock sirens exam trembling footsteps phone alarm",
}


def corpus(path: Path, per_emotion: int) -> Path:
    rows = []
    for emotion, words in WORDS.items():
        w = words.split()
        for i in range(per_emotion):
            text = f"The {w[i % 8]} and the {w[(i + 3) % 8]} came back on day {i} near the {w[(i + 5) % 8]}."
            rows.append({"text": text, "emotion": emotion})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def stage(name: str, folder: Path, size: int) -> dict[str, object]:
    """Runs in a child process: load, run one stage, report."""
    import torch

    from steerlab.core.corpus import load_corpus
    from steerlab.core.vectors import load_vectors, save_vectors
    from steerlab.model.models import load_model
    from steerlab.read.comparison import compare
    from steerlab.read.extraction import ExtractConfig, extract
    from steerlab.read.scope import read_text
    from steerlab.steer.generation import GenerationConfig
    from steerlab.validate import RunOptions, parse_suite, run_suite

    start = time.perf_counter()
    lm = load_model(SPEC)
    loaded = time.perf_counter()
    vectors_file = folder / "v" / "emotions.safetensors"
    if name == "extract":
        c = load_corpus(corpus(folder / f"c{size}.jsonl", size))
        result = extract(lm, c, ExtractConfig(replies=None))
        save_vectors(result.vectors, vectors_file)
        tokens = result.pooled.n_tokens
    else:
        v = load_vectors(vectors_file)
        if name == "steer":
            config = GenerationConfig(max_new_tokens=8, chat=True)
            compare(lm, v, ["I lost my job today."], add={"joyful": 4.0}, config=config)
            tokens = 2 * 8
        elif name == "scope":
            tokens = len(read_text(lm, v, "The storm took the roof, but the neighbours came with ladders.").tokens)
        else:
            suite = parse_suite(
                {
                    "name": "two",
                    "prompts": ["a day at the sea", "a long grey night"],
                    "generation": {"max_new_tokens": 6, "chat": True},
                    "conditions": [
                        {"name": "baseline"},
                        {"name": "add", "op": "add", "emotions": ["joyful"], "alphas": [4]},
                        {"name": "random_add", "op": "random_add", "emotions": ["joyful"], "alphas": [4]},
                    ],
                    "metrics": {"m": {"kind": "reply", "emotion": "joyful"}},
                    "claims": [{"name": "c", "condition": "add", "metric": "m", "direction": "increase"}],
                },
                "two.yaml",
            )
            run_suite(suite, lm, v, RunOptions())
            tokens = 2 * 3 * 6
    seconds = time.perf_counter() - loaded
    return {
        "stage": name,
        "size": size,
        "load_s": round(loaded - start, 1),
        "stage_s": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="8,32", help="texts per emotion for the two extraction runs")
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, Path(args.folder), args.size)))
        return 0
    folder = Path(tempfile.mkdtemp())
    small, large = (int(x) for x in args.sizes.split(","))
    plan = [("extract", large), ("extract", small), ("steer", 0), ("scope", 0), ("validate", 0)]
    rows = []
    for name, size in plan:
        cmd = [sys.executable, __file__, "--stage", name, "--folder", str(folder), "--size", str(size)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    extracts = {r["size"]: r["peak_rss_gib"] for r in rows if r["stage"] == "extract"}
    result = {
        "model": SPEC,
        "dtype": "bfloat16",
        "stages": rows,
        "extract_peak_rss_gib_by_texts_per_emotion": extracts,
        "max_peak_rss_gib": max(float(r["peak_rss_gib"]) for r in rows),
    }  # type: ignore[arg-type]
    out = REPO / "eval" / "benchmarks" / "results" / "scale_2b.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
