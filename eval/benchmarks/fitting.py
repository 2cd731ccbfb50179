"""Extraction's fitting, after the forward pass, with two logistic solvers on the same pooled features:

* batched    steerlab's solver (``steerlab.logistic``): one L-BFGS for every layer at once in torch,
             the final reply reader warm-started from the one fitted on half the replies;
* sklearn    the solver steerlab used before: scikit-learn's ``LogisticRegression`` (lbfgs, tol 1e-4,
             max_iter 2000) on standardised features, one layer and one fold at a time.

Both run the same ``build_vectors`` + ``choose_reader`` (in-style sweep, out-of-style folds, probes,
reply reader, reader choice) under ``fitting_threads`` (one thread); only the solver differs. The
result records each phase's seconds, the layers and reader each chose, and how far their figures
differ. ``threads`` times one style fold's probes at ten layers with each solver, at one thread and
at the machine's default thread count (how ``extract`` ran its fitting before).

    python eval/benchmarks/fitting.py --model smollm2-135m-instruct [--features FILE]

``--features`` caches the pooled corpus and replies (safetensors): pooled once, reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from steerlab import extraction, logistic, methods, probes, reader_choice
from steerlab.activations import Pooled, PoolingConfig, pooled_activations
from steerlab.corpus import BUILTIN_REPLIES, load_corpus
from steerlab.logistic import Fit
from steerlab.models import load_model
from steerlab.readers import pooled_features

REPO = Path(__file__).resolve().parents[2]


def sklearn_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    c: float,
    n_classes: int | None = None,
    init: Fit | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
) -> Fit:
    """The former solver, layer by layer (``init`` is ignored: it had no warm start)."""
    from sklearn.linear_model import LogisticRegression

    weights, biases = [], []
    for x in np.asarray(features, dtype=np.float64):
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
        clf = LogisticRegression(C=c, max_iter=max_iter, tol=tol, random_state=0).fit((x - mu) / sd, labels)
        weight, bias = clf.coef_ / sd, clf.intercept_
        if weight.shape[0] == 1:  # binary: one row; as a two-way softmax
            weight, bias = np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
        weights.append(weight)
        biases.append(bias - weight @ mu)
    return Fit(np.stack(weights), np.stack(biases), 0, True)


@contextmanager
def solver(fn: Callable[..., Fit]) -> Iterator[None]:
    """Every caller of ``fit_logistic`` uses ``fn`` inside the block."""
    homes = (logistic, methods, probes, reader_choice)
    saved = [vars(m)["fit_logistic"] for m in homes]
    for m in homes:
        vars(m)["fit_logistic"] = fn
    try:
        yield
    finally:
        for m, old in zip(homes, saved, strict=True):
            vars(m)["fit_logistic"] = old


def features(path: Path, model: str) -> tuple[Pooled, np.ndarray]:
    if not path.is_file():
        lm = load_model(model)
        start = time.perf_counter()
        pooled = pooled_activations(lm, load_corpus().texts, PoolingConfig())
        replies = load_corpus(None, min_per_emotion=1, builtin=BUILTIN_REPLIES)
        reply = pooled_features(lm, replies.texts, replies.contexts)
        meta = {"n_tokens": str(pooled.n_tokens), "seconds": str(time.perf_counter() - start)}
        tensors = {"features": pooled.features, "token_norm": pooled.token_norm, "reply_features": reply}
        save_file(tensors, str(path), metadata=meta)
    data = load_file(str(path))
    pooled = Pooled(data["features"], data["token_norm"], 0, 0.0, (len(data["features"]),))
    return pooled, data["reply_features"]


def run(pooled: Pooled, reply: np.ndarray, model: dict[str, object]) -> dict[str, Any]:
    corpus = load_corpus()
    replies = load_corpus(None, min_per_emotion=1, builtin=BUILTIN_REPLIES)
    config = extraction.ExtractConfig()
    seconds: dict[str, float] = {}
    marks = [time.perf_counter()]

    def step(phase: str, done: int, total: int) -> None:
        if done == 0:
            marks.append(time.perf_counter())
            seconds[phase] = 0.0
        seconds[phase] = time.perf_counter() - marks[-1]

    start = time.perf_counter()
    vectors, sweep = extraction.build_vectors(pooled, corpus, config, model, step)
    seconds["build_vectors"] = time.perf_counter() - start
    start = time.perf_counter()
    assert replies.contexts is not None
    vectors = reader_choice.choose_reader(
        vectors, reply, replies.texts, replies.labels, replies.contexts, 0, config.reply_c, {}, step
    )
    seconds["reader_choice"] = time.perf_counter() - start
    seconds["total"] = seconds["build_vectors"] + seconds["reader_choice"]
    reading = vectors.meta["reading"]
    layer = str(reading["layer"])
    return {
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "chosen_layer": vectors.meta["chosen_layer"],
        "reading_layer": vectors.meta["reading_layer"],
        "best_layer": vectors.meta["best_layer"],
        "reader": reading["reader"],
        "reader_auroc_at_reading_layer": {
            n: t.get(layer, t.get("-")) for n, t in reading["selection_macro_auroc"].items()
        },
        "sweep": [r.row() for r in sweep],
        "probe_weight": vectors.probe_weight.numpy(),
        "reply_weight": vectors.reply_weight.numpy() if vectors.reply_weight is not None else None,
    }


def threads(pooled: Pooled) -> dict[str, float]:
    """One fold's probes at every third layer: each solver at one thread and at the default count."""
    from steerlab.extraction import style_folds

    corpus = load_corpus()
    folds, _ = style_folds(corpus)
    index = {e: i for i, e in enumerate(corpus.emotions)}
    y = np.array([index.get(label, -1) for label in corpus.labels])
    x = pooled.features[folds[0].fit][:, ::3].transpose(1, 0, 2)
    default = os.cpu_count() or 1  # what torch and the BLAS use when nothing limits them
    out = {}
    for name, fn in (("batched", logistic.fit_logistic), ("sklearn", sklearn_logistic)):
        for n in (1, default):
            with logistic.fitting_threads(n):
                start = time.perf_counter()
                fn(x, y[folds[0].fit], 1.0, len(corpus.emotions))
                out[f"{name}_{n}_thread{'s' if n > 1 else ''}"] = round(time.perf_counter() - start, 2)
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    keys = ("top1", "oos_top1", "probe_top1", "oos_probe_top1")
    out = {
        f"max_abs_diff_{k}": max(abs(x[k] - y[k]) for x, y in zip(a["sweep"], b["sweep"], strict=True)) for k in keys
    }
    for name in ("probe_weight", "reply_weight"):
        x, y = a[name], b[name]
        cos = (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1) + 1e-12)
        out[f"min_cosine_{name}_rows"] = float(cos.min())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--features", default=None, help="pooled features cache (default: /tmp/steerlab-fitting-MODEL)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    path = Path(args.features or f"/tmp/steerlab-fitting-{args.model.replace(':', '_')}.safetensors")
    pooled, reply = features(path, args.model)
    model = {"model_spec": args.model, "model_id": args.model, "revision": None, "is_random": False}
    model |= {"hidden_size": pooled.features.shape[2], "n_layers": pooled.features.shape[1]}
    with logistic.fitting_threads():
        results = {"batched": run(pooled, reply, model)}
        print("batched", results["batched"]["seconds"], flush=True)
        with solver(sklearn_logistic):
            results["sklearn"] = run(pooled, reply, model)
    print("sklearn", results["sklearn"]["seconds"], flush=True)
    by_threads = threads(pooled)
    print("threads", by_threads, flush=True)
    same = ("chosen_layer", "reading_layer", "best_layer", "reader")
    out = {
        "model": args.model,
        "texts": int(pooled.features.shape[0]),
        "replies": int(reply.shape[0]),
        "layers": int(pooled.features.shape[1]),
        "threads": torch.get_num_threads(),
        "seconds": {k: r["seconds"] for k, r in results.items()},
        "one_fold_ten_layers_s": by_threads,
        "speedup": round(results["sklearn"]["seconds"]["total"] / results["batched"]["seconds"]["total"], 2),
        "choices": {k: {name: r[k] for name, r in results.items()} for k in same},
        "same_choices": all(results["batched"][k] == results["sklearn"][k] for k in same),
        "reader_auroc_at_reading_layer": {k: r["reader_auroc_at_reading_layer"] for k, r in results.items()},
        "differences": compare(results["batched"], results["sklearn"]),
        "sweep": {
            k: [
                {f: row[f] for f in ("layer", "top1", "oos_top1", "probe_top1", "oos_probe_top1")} for row in r["sweep"]
            ]
            for k, r in results.items()
        },
    }
    print(json.dumps({k: out[k] for k in ("seconds", "speedup", "choices", "same_choices", "differences")}, indent=1))
    target = Path(args.out or REPO / "eval" / "benchmarks" / "results" / f"fitting_{args.model.replace(':', '_')}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
