"""Multinomial logistic regression for every layer at once: one batched L-BFGS in torch.

Each layer is its own problem, the one scikit-learn's ``LogisticRegression(C=c)`` solves on
standardised features: mean cross-entropy + ||W||^2 / (2 c n), the intercept unpenalised. The
layers share the matrix products (layers x texts x hidden) but nothing else: every layer keeps its
own L-BFGS memory, its own step length and its own stopping test (max |gradient| <= ``tol``), so a
layer's answer does not depend on which other layers are fitted beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

MEMORY = 10  # L-BFGS curvature pairs kept per layer (scikit-learn's and SciPy's default)
ARMIJO = 1e-4  # sufficient decrease asked of a step
FIT_THREADS = 1  # threads while fitting (see fitting_threads)
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (theta, layers) -> (loss, grad)


@contextmanager
def fitting_threads(threads: int = FIT_THREADS) -> Iterator[None]:
    """Inside the block torch and the BLAS under numpy, scipy and scikit-learn use ``threads`` threads.

    Fitting is many small solves: on a busy 2-core machine (measured, eval/benchmarks/fitting.py) the
    default two threads made scikit-learn's probes ~35x slower and this solver ~4x slower than one
    thread, as threads wait at barriers for cores that other processes hold."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Fit:
    weight: np.ndarray  # (layers, classes, hidden) in raw units: logits = x @ weight.T + bias
    bias: np.ndarray  # (layers, classes)
    iterations: int  # L-BFGS iterations until every layer stopped
    converged: bool  # every layer reached max |gradient| <= tol


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sd + 1e-6) per layer and feature over the rows of ``x`` (layers, texts, hidden)."""
    return x.mean(dim=1), x.std(dim=1, unbiased=False) + 1e-6


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    c: float,
    n_classes: int | None = None,
    init: Fit | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
) -> Fit:
    """Fit one multinomial logistic regression per layer of ``features`` (layers, texts, hidden) on the
    same ``labels`` (texts,) in 0..classes-1. ``init`` (a fit of the same shape) warm-starts the solver;
    the optimum does not depend on it. Computed in float64, deterministic for fixed inputs and threads."""
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

    theta, iterations, converged = lbfgs(objective, theta, tol, max_iter)
    w_std, b_std = theta[..., :d], theta[..., d]
    weight = w_std / sd[:, None]
    bias = b_std - torch.einsum("lkd,ld->lk", weight, mu)
    return Fit(weight.numpy(), bias.numpy(), iterations, converged)


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
