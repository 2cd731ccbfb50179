"""Extraction's fitting, after the forward pass, with two logistic solvers on the same pooled features:

* sklearn    steerlab's solver (``steerlab.read.logistic.fit_logistic``): scikit-learn's
             ``LogisticRegression`` (lbfgs, tol 1e-4) on standardised features, layer by layer;
* batched    an alternative measured here and not adopted: one L-BFGS for every layer at once in
             torch (layers x texts x hidden), each layer with its own memory, step and stopping test.

Both run the same ``build_vectors`` + ``choose_reader`` (in-style sweep, out-of-style folds, probes,
reply reader, reader choice) under ``fitting_threads`` (one thread); only the probes' solver differs (the
reply reader is ridge regression, closed form, in both). The
result records each phase's seconds, the layers and reader each chose, and how far their figures
differ. ``one_fold_ten_layers_s`` times one style fold's probes at ten layers with each solver at one
thread and at the machine's default thread count (how ``extract`` ran its fitting before).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from steerlab.core.corpus import BUILTIN_REPLIES, load_corpus
from steerlab.model.activations import Pooled, PoolingConfig, pooled_activations
from steerlab.model.models import load_model
from steerlab.read import extraction, logistic, methods, probes, reader_choice
from steerlab.read.readers import pooled_features

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fit:
    weight: np.ndarray  # (layers, classes, hidden)
    bias: np.ndarray  # (layers, classes)


MEMORY = 10  # L-BFGS curvature pairs kept per layer (scikit-learn's and SciPy's default)
ARMIJO = 1e-4  # sufficient decrease asked of a step
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (theta, layers) -> (loss, grad)


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sd + 1e-6) per layer and feature over the rows of ``x`` (layers, texts, hidden)."""
    return x.mean(dim=1), x.std(dim=1, unbiased=False) + 1e-6


def torch_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    c: float,
    n_classes: int | None = None,
    init: Fit | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
) -> Fit:
    """Every layer at once: one L-BFGS in torch, each layer with its own memory, step and stopping test
    (max |gradient| <= ``tol``); ``init`` warm-starts it. Computed in float64."""
    z = torch.tensor(np.asarray(features), dtype=torch.float64)  # a copy, standardised in place below
    y = torch.from_numpy(np.asarray(labels)).long()
    k = int(n_classes if n_classes is not None else y.max() + 1)
    mu, sd = standardise(z)
    z.sub_(mu[:, None]).div_(sd[:, None])
    layers, n, d = z.shape
    theta = torch.zeros(layers, k, d + 1, dtype=torch.float64)
    if init is not None:  # raw-unit weights into this standardisation
        raw = torch.from_numpy(init.weight).double()
        w0 = raw * sd[:, None]
        b0 = torch.from_numpy(init.bias).double() + torch.einsum("lkd,ld->lk", raw, mu)
        theta = torch.cat([w0, b0[..., None]], dim=2)
    penalty = 1.0 / (c * n)
    onehot = torch.nn.functional.one_hot(y, k).double()

    def objective(t: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = t[..., :d], t[..., d]
        zr = z if len(rows) == layers else z[rows]
        logits = torch.baddbmm(b[:, None, :], zr, w.transpose(1, 2))
        logp = torch.log_softmax(logits, dim=2)
        loss = -(logp * onehot).sum(dim=(1, 2)) / n + 0.5 * penalty * (w * w).sum(dim=(1, 2))
        residual = (logp.exp() - onehot) / n  # d loss / d logits
        grad_w = torch.bmm(residual.transpose(1, 2), zr) + penalty * w
        return loss, torch.cat([grad_w, residual.sum(dim=1)[..., None]], dim=2)

    theta, _, _ = lbfgs(objective, theta, tol, max_iter)
    w_std, b_std = theta[..., :d], theta[..., d]
    weight = w_std / sd[:, None]
    bias = b_std - torch.einsum("lkd,ld->lk", weight, mu)
    return Fit(weight.numpy(), bias.numpy())


def lbfgs(objective: Objective, theta: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int, bool]:
    """Minimise ``objective`` for each layer independently: a two-loop recursion and a backtracking
    Armijo line search per layer; only the layers still running are evaluated."""
    layers, shape = theta.shape[0], theta.shape
    flat = theta.reshape(layers, -1).clone()

    def evaluate(v: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad = objective(v.reshape(len(rows), *shape[1:]), rows)
        return loss, grad.reshape(len(rows), -1)

    loss, grad = evaluate(flat, torch.arange(layers))
    memory = Memory(layers, flat.shape[1], flat.dtype)
    active = grad.abs().amax(dim=1) > tol
    it = 0
    while active.any() and it < max_iter:
        it += 1
        rows = torch.nonzero(active).flatten()
        g = grad[rows]
        direction = -memory.apply(g, rows)
        slope = (g * direction).sum(dim=1)
        bad = slope >= 0  # not a descent direction: steepest descent instead
        direction[bad], slope[bad] = -g[bad], -(g[bad] ** 2).sum(dim=1)
        first = torch.clamp(1.0 / g.norm(dim=1), max=1.0)
        step = torch.where(memory.empty[rows], first, torch.ones_like(first))
        new, new_loss, new_grad = _line_search(evaluate, rows, flat[rows], loss[rows], g, direction, slope, step)
        memory.add(rows, new - flat[rows], new_grad - g)
        moved = (new != flat[rows]).any(dim=1)
        flat[rows], loss[rows], grad[rows] = new, new_loss, new_grad
        active[rows] = moved & (new_grad.abs().amax(dim=1) > tol)  # a layer that cannot move is at precision
    converged = bool((grad.abs().amax(dim=1) <= tol).all())
    return flat.reshape(shape), it, converged


class Memory:
    """Each layer's last ``MEMORY`` curvature pairs (s, y) in its own ring, kept only where s.y > 0;
    an empty slot has rho = 0 and adds nothing to the recursion."""

    def __init__(self, layers: int, size: int, dtype: torch.dtype) -> None:
        self.s = torch.zeros(MEMORY, layers, size, dtype=dtype)
        self.y = torch.zeros_like(self.s)
        self.rho = torch.zeros(MEMORY, layers, dtype=dtype)
        self.head = torch.zeros(layers, dtype=torch.long)  # next slot to write, per layer
        self.gamma = torch.ones(layers, dtype=dtype)
        self.empty = torch.ones(layers, dtype=torch.bool)

    def add(self, rows: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> None:
        sy, yy = (s * y).sum(dim=1), (y * y).sum(dim=1)
        good = sy > 1e-10 * yy
        rows, slot = rows[good], self.head[rows[good]]
        self.s[slot, rows], self.y[slot, rows], self.rho[slot, rows] = s[good], y[good], 1.0 / sy[good]
        self.gamma[rows] = sy[good] / yy[good]
        self.head[rows] = (slot + 1) % MEMORY
        self.empty[rows] = False

    def apply(self, g: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """H g for the layers ``rows``: the two-loop recursion, newest pair first."""
        slots = [(self.head[rows] - 1 - j) % MEMORY for j in range(MEMORY)]
        q, alphas = g.clone(), []
        for slot in slots:
            a = self.rho[slot, rows] * (self.s[slot, rows] * q).sum(dim=1)
            q -= a[:, None] * self.y[slot, rows]
            alphas.append(a)
        r = self.gamma[rows][:, None] * q
        for slot, a in zip(reversed(slots), reversed(alphas), strict=True):
            b = self.rho[slot, rows] * (self.y[slot, rows] * r).sum(dim=1)
            r += self.s[slot, rows] * (a - b)[:, None]
        return r


def _line_search(
    evaluate: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    rows: torch.Tensor,
    x: torch.Tensor,
    loss: torch.Tensor,
    grad: torch.Tensor,
    direction: torch.Tensor,
    slope: torch.Tensor,
    step: torch.Tensor,
    tries: int = 40,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halve each layer's step until it decreases that layer's loss enough; a layer that never does stays."""
    out_x, out_loss, out_grad = x.clone(), loss.clone(), grad.clone()
    pending = torch.ones(len(rows), dtype=torch.bool)
    for _ in range(tries):
        idx = torch.nonzero(pending).flatten()
        trial = x[idx] + step[idx, None] * direction[idx]
        t_loss, t_grad = evaluate(trial, rows[idx])
        ok = t_loss <= loss[idx] + ARMIJO * step[idx] * slope[idx]
        hit = idx[ok]
        out_x[hit], out_loss[hit], out_grad[hit] = trial[ok], t_loss[ok], t_grad[ok]
        pending[hit] = False
        if not pending.any():
            break
        step = torch.where(pending, step / 2, step)
    return out_x, out_loss, out_grad


@contextmanager
def solver(fn: Callable[..., Fit]) -> Iterator[None]:
    """Every caller of ``fit_logistic`` uses ``fn`` inside the block."""
    homes = (logistic, methods, probes)
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
    vectors = reader_choice.choose_reader(vectors, reply, replies.texts, replies.labels, replies.contexts, 0, {}, step)
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
    from steerlab.read.folds import style_folds

    corpus = load_corpus()
    folds, _ = style_folds(corpus)
    index = {e: i for i, e in enumerate(corpus.emotions)}
    y = np.array([index.get(label, -1) for label in corpus.labels])
    x = pooled.features[folds[0].fit][:, ::3].transpose(1, 0, 2)
    default = os.cpu_count() or 1  # what torch and the BLAS use when nothing limits them
    out = {}
    for name, fn in (("sklearn", logistic.fit_logistic), ("batched", torch_logistic)):
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
        results = {"sklearn": run(pooled, reply, model)}
        print("sklearn", results["sklearn"]["seconds"], flush=True)
        with solver(torch_logistic):
            results["batched"] = run(pooled, reply, model)
    print("batched", results["batched"]["seconds"], flush=True)
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
        "batched_over_sklearn_s": round(
            results["batched"]["seconds"]["total"] / results["sklearn"]["seconds"]["total"], 2
        ),
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
    print(
        json.dumps(
            {k: out[k] for k in ("seconds", "batched_over_sklearn_s", "choices", "same_choices", "differences")},
            indent=1,
        )
    )
    target = Path(args.out or REPO / "eval" / "benchmarks" / "results" / f"fitting_{args.model.replace(':', '_')}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
