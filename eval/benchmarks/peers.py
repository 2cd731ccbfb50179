"""steerlab beside two peer libraries (repeng, steering-vectors), each in its own venv and process.

    python eval/benchmarks/peers.py [--n 40] [--tokens 24] [--repeats 3]

Per tool and repetition one fresh worker process (one torch thread) loads the embedded model
gemma-3-270m from steerlab's float cache folder, then times (1) extracting one concept ("hopeful"
vs other emotions) at all layers and (2) greedy generation of --tokens tokens, unsteered and with
one fixed vector (steerlab's shipped hopeful direction, alpha 4) added at one layer's output.
Repetitions are interleaved across tools; the best of each is reported. Peer venvs live under
~/.cache/steerlab/peers/ and are reused. A peer that cannot be installed or run is recorded as an error.
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
CACHE = Path.home() / ".cache" / "steerlab"
MODEL = CACHE / "gemma-3-270m"
PEERS = CACHE / "peers"
TORCH = "torch==2.13.0"  # the CPU wheel on this disk; never let pip pick a torch itself
PACKAGES = {"repeng": ["repeng", "transformers==4.52.4"], "steering-vectors": ["steering-vectors", "transformers<5"]}
BATCH = 8  # texts per forward pass, passed to every tool


def ensure_venv(name: str) -> Path:
    """Create (once) the venv of a peer; raise RuntimeError with pip's message when it fails."""
    folder = PEERS / name
    marker, wanted = folder / "steerlab-peer.json", [TORCH, *PACKAGES[name]]
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return folder / "bin" / "python"
    steps = [[sys.executable, "-m", "venv", str(folder)]]
    steps += [[str(folder / "bin" / "pip"), "install", "-q", TORCH], [str(folder / "bin" / "pip"), "install", "-q"]]
    steps[-1] += PACKAGES[name]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(step[-3:])} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    marker.write_text(json.dumps(wanted))
    return folder / "bin" / "python"


# ---- worker side: runs under each tool's own python; imports only what that venv has ----------


def _load(path: str) -> tuple[Any, Any]:
    import torch
    import transformers

    torch.set_num_threads(1)
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = transformers.AutoModelForCausalLM.from_pretrained(path, **{dtype_key: torch.float32}).eval()
    return model, transformers.AutoTokenizer.from_pretrained(path)


def _timed_generate(model: Any, enc: Any, tokens: int, pad: int) -> tuple[float, list[int]]:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad)
    return time.perf_counter() - start, out[0, enc["input_ids"].shape[1] :].tolist()


def worker(tool: str, spec: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    import torch

    pairs: list[list[str]] = spec["pairs"]
    layer, tokens = int(spec["layer"]), int(spec["tokens"])
    vector = torch.tensor(spec["vector"], dtype=torch.float32)
    if tool == "steerlab":
        from steerlab.core.corpus import load_corpus
        from steerlab.model.activations import PoolingConfig
        from steerlab.model.models import load_model
        from steerlab.read.extraction import ExtractConfig, extract
        from steerlab.steer.interventions import Edit, steering

        torch.set_num_threads(1)
        lm = load_model("gemma-3-270m")
        model, tok = lm.model, lm.tokenizer
    else:
        model, tok = _load(spec["model"])
    enc = tok(spec["prompt"], return_tensors="pt")
    with torch.inference_mode():  # warm-up, and a check that every venv reads the weights alike
        logits = model(**enc).logits[0, -1, :8].tolist()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    _timed_generate(model, enc, 2, pad)
    start = time.perf_counter()
    if tool == "steerlab":
        rows = [{"text": t, "emotion": e} for pair in pairs for t, e in zip(pair, ("hopeful", "other"), strict=True)]
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        start = time.perf_counter()
        extract(lm, load_corpus(f.name), ExtractConfig(pooling=PoolingConfig(batch_size=BATCH), replies=None))
        extract_s = time.perf_counter() - start
        unsteered_s, plain = _timed_generate(model, enc, tokens, pad)
        edit = Edit("add", layer, vector / vector.norm(), float(vector.norm()), "hopeful")
        options = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad)
        with steering(lm, edits=[edit]) as steered:
            start = time.perf_counter()
            out = steered.generate(enc, **options)
            steered_s, ids = time.perf_counter() - start, out[0, enc["input_ids"].shape[1] :].tolist()
    elif tool == "repeng":
        import numpy as np
        from repeng import ControlModel, ControlVector, DatasetEntry

        data = [DatasetEntry(positive=p, negative=n) for p, n in pairs]
        ControlVector.train(model, tok, data, batch_size=BATCH)
        extract_s = time.perf_counter() - start
        unsteered_s, plain = _timed_generate(model, enc, tokens, pad)
        wrapped = ControlModel(model, [layer])
        direction = {layer: vector.numpy().astype(np.float32)}
        wrapped.set_control(ControlVector(model_type=model.config.model_type, directions=direction), 1.0)
        steered_s, ids = _timed_generate(wrapped, enc, tokens, pad)
        wrapped.unwrap()
    elif tool == "steering-vectors":
        from steering_vectors import SteeringVector, train_steering_vector

        train_steering_vector(model, tok, [(p, n) for p, n in pairs], batch_size=BATCH, show_progress=False)
        extract_s = time.perf_counter() - start
        unsteered_s, plain = _timed_generate(model, enc, tokens, pad)
        with SteeringVector({layer: vector}, "decoder_block").apply(model, multiplier=1.0):
            steered_s, ids = _timed_generate(model, enc, tokens, pad)
    else:
        raise ValueError(f"unknown tool {tool!r}")
    return {
        "versions": {p: version(p) for p in ("torch", "transformers", tool)},
        "extract_s": extract_s,
        "unsteered_tok_s": tokens / unsteered_s,
        "steered_tok_s": tokens / steered_s,
        "logits_head": logits,
        "unsteered_ids": plain,
        "steered_ids": ids,
    }


# ---- driver side: runs under steerlab's venv --------------------------------------------------


def build_spec(n: int, tokens: int) -> dict[str, Any]:
    from steerlab.core.corpus import NEUTRAL, load_corpus
    from steerlab.core.vectors import load_vectors, shipped_vectors
    from steerlab.steer.edits import build_edits

    records = load_corpus().records
    hopeful = [r.text for r in records if r.emotion == "hopeful"][: n // 2]
    others = [r.text for r in records if r.emotion not in ("hopeful", NEUTRAL)][::23][: n // 2]
    shipped = shipped_vectors("gemma-3-270m")
    assert shipped is not None, "the embedded model ships its vectors"
    v = load_vectors(shipped)
    edit = build_edits(v, [v.steering_layer], add={"hopeful": 4.0})[0]
    return {
        "model": str(MODEL),
        "pairs": [[p, q] for p, q in zip(hopeful, others, strict=True)],
        "layer": v.steering_layer,
        "vector": (edit.direction * edit.value).tolist(),
        "prompt": "Tell me about your weekend.",
        "tokens": tokens,
    }


def run_worker(python: Path, tool: str, spec_path: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": ""}
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", tool, "--spec", str(spec_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO if tool == "steerlab" else PEERS)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="texts: n/2 hopeful, n/2 other emotions, as n/2 pairs")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, json.loads(Path(args.spec).read_text()))))
        return 0
    spec = build_spec(args.n, args.tokens)
    pythons: dict[str, Path] = {"steerlab": Path(sys.executable)}
    errors: dict[str, str] = {}
    for name in PACKAGES:
        try:
            pythons[name] = ensure_venv(name)
        except RuntimeError as err:
            errors[name] = str(err)
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in pythons}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        for rep in range(args.repeats):  # interleaved: the machine's load hits every tool alike
            for tool, python in pythons.items():
                if tool in errors:
                    continue
                t0 = time.perf_counter()
                got = run_worker(python, tool, spec_path)
                print(f"rep {rep + 1} {tool}: {time.perf_counter() - t0:.1f}s {got.get('error', 'ok')}", flush=True)
                if "error" in got:
                    errors[tool] = got["error"]
                else:
                    runs[tool].append(got)
    tools: dict[str, dict[str, Any]] = {t: {"error": e} for t, e in errors.items()}
    for tool, reps in runs.items():
        if tool in errors or not reps:
            continue
        first = reps[0]
        tools[tool] = {
            "versions": first["versions"],
            "extract_s": min(r["extract_s"] for r in reps),
            "unsteered_tok_s": max(r["unsteered_tok_s"] for r in reps),
            "steered_tok_s": max(r["steered_tok_s"] for r in reps),
            "repeats": len(reps),
            "logits_head": first["logits_head"],
            "steered_changes_output": first["steered_ids"] != first["unsteered_ids"],
        }
        tools[tool]["steered_vs_unsteered"] = tools[tool]["steered_tok_s"] / tools[tool]["unsteered_tok_s"]
    base = tools.get("steerlab", {})
    for tool, row in tools.items():
        if "error" in row or "error" in base:
            continue
        row["extract_vs_steerlab"] = row["extract_s"] / base["extract_s"]
        row["max_logit_diff_vs_steerlab"] = max(
            abs(a - b) for a, b in zip(row["logits_head"], base["logits_head"], strict=True)
        )
        row["same_steered_tokens_as_steerlab"] = runs[tool][0]["steered_ids"] == runs["steerlab"][0]["steered_ids"]
    result = {
        "model": "gemma-3-270m (float32, steerlab cache folder)",
        "python": sys.version.split()[0],
        "setup": {
            "texts": 2 * len(spec["pairs"]),
            "pairs": len(spec["pairs"]),
            "batch_size": BATCH,
            "threads": 1,
            "new_tokens": args.tokens,
            "steer_layer": spec["layer"],
            "repeats": args.repeats,
        },
        "tools": tools,
    }
    out = REPO / "eval" / "benchmarks" / "results" / "peers.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| tool | versions | extract s (x steerlab) | tok/s unsteered | tok/s steered (ratio) |")
    print("|---|---|---|---|---|")
    for tool, row in tools.items():
        if "error" in row:
            print(f"| {tool} | | error: {row['error'][:200]} | | |")
            continue
        ver = ", ".join(f"{k} {v}" for k, v in row["versions"].items())
        rel = f" ({row['extract_vs_steerlab']:.2f}x)" if "extract_vs_steerlab" in row else ""
        print(
            f"| {tool} | {ver} | {row['extract_s']:.2f}{rel} | {row['unsteered_tok_s']:.1f} | "
            f"{row['steered_tok_s']:.1f} ({row['steered_vs_unsteered']:.2f}x) |"
        )
    print(f"\nwrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
