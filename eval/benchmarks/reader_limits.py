"""What limits the reply reader's agreement with the blind judge: its features, its form, the model that reads,
or the two references it is fitted to?

    python eval/benchmarks/reader_limits.py --model MODEL --also-read-by OTHER [--features DIR]

Refits the default reader of replies (ridge heads on the labels and the judged ratings, written and judged replies
weighing the same; ``fit-reader``) on the written replies and the judged replies to the fitting half of the user
messages (``fit-reader``'s split), changing one thing at a time:

- its features: the reading layer (as shipped); three layers (reading layer -3, 0, +3) side by side; every layer
  averaged;
- its form: kernel ridge (RBF) at the reading layer, its width and penalty chosen by cross-validation grouped by
  user message on the fitting half;
- the model that reads the replies: ``OTHER`` (at its reading layer) instead of ``MODEL``;
- its references: the judged replies alone, no written replies (read by each model).

Every fit is scored on the same held-out judged replies (the replies the shipped rule finds incoherent left out for
all): Spearman and Kendall's tau-b with judged hopeful and desperate, each with a 95% interval from resampling user
messages, AUROC for judged >= 3, and the hopeful AUROC on the written held-out replies. Beside them: the most any
score without ties can reach on these replies (the tie ceiling: Spearman, and tau-b in closed form), and how well two
annotators agree with each other on the doubly labelled replies of every set. Writes
eval/benchmarks/results/reader_limits_MODEL.json. ``--features DIR`` caches the pooled replies between runs
(``judged_data.pooled``, shared with ``judged_weight.py``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from judged_data import REPO, SETS, load_replies, pooled, set_paths
from scipy.stats import kendalltau, spearmanr

from steerlab.core.corpus import Corpus
from steerlab.core.vectors import EmotionVectors, load_vectors, shipped_vectors
from steerlab.read.coherence import degenerate_reasons
from steerlab.read.judged import _at, _split_by_message, _training
from steerlab.read.judged_set import Judged, judged_figures, tie_ceiling
from steerlab.read.probes import auroc
from steerlab.read.reader_choice import fit_reply_reader, reply_targets
from steerlab.read.readers import INCOHERENT
from steerlab.read.ridge import FOLDS, grouped_folds

READ = ("hopeful", "desperate")
WIDTHS, PENALTIES = (0.1, 0.5), (0.3, 1.0, 3.0)  # RBF width (per feature) and penalty, chosen by grouped CV
DRAWS = 1000

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # features -> (scores, predicted incoherent)


def _ridge(
    f: dict[str, np.ndarray], pick: Callable[[np.ndarray], np.ndarray], emotions: list[str], fit_args: tuple[Any, ...]
) -> tuple[Predict, dict[str, np.ndarray]]:
    """The ridge reader on features ``pick(pooled)`` and its predictor."""
    x = np.concatenate([pick(f["written"]), pick(f["judged"])])[:, None, :]
    x, labels, users, ratings, weights = _training(x, *fit_args)
    fit = fit_reply_reader(x, labels, users, ratings, weights)
    return (lambda feats: _at(fit, 0, feats, emotions)), {k: pick(f[k]) for k in ("judged", "heldout")}


def _rbf(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.exp(-width * np.maximum(d, 0) / a.shape[1])


def _kernel(
    f: dict[str, np.ndarray], layer: int, emotions: list[str], fit_args: tuple[Any, ...]
) -> tuple[Predict, dict[str, Any]]:
    """Weighted kernel ridge (RBF) on standardised activations at ``layer``, width and penalty by grouped CV."""
    x = np.concatenate([f["written"][:, layer], f["judged"][:, layer]])[:, None, :]
    x, labels, users, ratings, weights = _training(x, *fit_args)
    z, (y, classes) = x[:, 0], reply_targets(labels, ratings)
    mu, sd = z.mean(0), z.std(0) + 1e-6
    z, w = (z - mu) / sd, weights / weights.mean()

    def solve(rows: np.ndarray, width: float, penalty: float) -> tuple[np.ndarray, np.ndarray]:
        y_mean = w[rows] @ y[rows] / w[rows].sum()
        k = _rbf(z[rows], z[rows], width)
        return np.linalg.solve(
            w[rows, None] * k + penalty * np.eye(rows.sum()), w[rows, None] * (y[rows] - y_mean)
        ), y_mean

    grid = [(a, b) for a in WIDTHS for b in PENALTIES]
    errors = []
    for width, penalty in grid:
        err = 0.0
        for held in grouped_folds(np.asarray(users), FOLDS):
            coef, y_mean = solve(~held, width, penalty)
            err += float((w[held, None] * (_rbf(z[held], z[~held], width) @ coef + y_mean - y[held]) ** 2).sum())
        errors.append(err)
    width, penalty = grid[int(np.argmin(errors))]
    coef, y_mean = solve(np.ones(len(z), dtype=bool), width, penalty)

    def predict(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _rbf((feats - mu) / sd, z, width) @ coef + y_mean
        out = np.full((len(feats), len(emotions)), np.nan)
        for j, c in enumerate(classes):
            if c in emotions:
                out[:, emotions.index(c)] = p[:, j]
        return out, p[:, classes.index(INCOHERENT)]

    return predict, {
        "judged": f["judged"][:, layer],
        "heldout": f["heldout"][:, layer],
        "width": width,
        "penalty": penalty,
    }


def _with_interval(
    stat: Callable[[np.ndarray, np.ndarray], float], score: np.ndarray, truth: np.ndarray, groups: np.ndarray
) -> list[float]:
    """[statistic, 2.5 %, 97.5 %]: the interval from resampling user messages (``DRAWS``, seeded)."""
    rng = np.random.default_rng(0)
    names, index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(len(names))]
    draws = []
    for _ in range(DRAWS):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])
        draws.append(stat(score[rows], truth[rows]))
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return [float(stat(score, truth)), float(low), float(high)]


def _score(
    predict: Predict, feats: dict[str, Any], read: np.ndarray, judged: Judged, heldout: Corpus, emotions: list[str]
) -> dict[str, Any]:
    scores, _ = predict(feats["judged"])
    figures = judged_figures(scores, ~read, judged, read, emotions)
    users = np.array(judged.users)[read]
    out: dict[str, Any] = {}
    for s in READ:
        column, truth = scores[read, emotions.index(s)], judged.scales[s][read]
        out[f"spearman_{s}"] = _with_interval(lambda a, b: spearmanr(a, b).statistic, column, truth, users)
        out[f"tau_b_{s}"] = _with_interval(lambda a, b: kendalltau(a, b).statistic, column, truth, users)
        out[f"auroc_{s}_3plus"] = figures[f"auroc_{s}_3plus"]
    on_written, _ = predict(feats["heldout"])
    out["written_hopeful_auroc"] = auroc(
        np.array(heldout.labels) == "hopeful", on_written[:, emotions.index("hopeful")]
    )
    return out


def _annotators(model: str) -> dict[str, Any]:
    """Spearman and tau-b between the two annotators on every set's doubly labelled replies, pooled (replies the
    first annotator called incoherent left out, as the readers leave them out)."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for name in SETS:
        folder = REPO / "eval" / "labels" / model / name
        first = {}
        for path in sorted((folder / "labels").glob("batch_*.annotator_a.jsonl")):
            first.update({r["id"]: r for r in map(json.loads, path.read_text().splitlines())})
        second = map(json.loads, (folder / "labels" / "double.annotator_b.jsonl").read_text().splitlines())
        pairs += [(first[r["id"]], r) for r in second if first[r["id"]]["label"] != INCOHERENT]
    out: dict[str, Any] = {"n": len(pairs)}
    for s in READ:
        a, b = np.array([p[0][s] for p in pairs]), np.array([p[1][s] for p in pairs])
        out[f"spearman_{s}"] = float(spearmanr(a, b).statistic)
        out[f"tau_b_{s}"] = float(kendalltau(a, b).statistic)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--also-read-by", required=True, help="another built-in model that reads the same replies")
    ap.add_argument("--features", default=None, help="a folder that caches the pooled replies")
    args = ap.parse_args()
    cache = Path(args.features) if args.features else None
    v: EmotionVectors = load_vectors(shipped_vectors(args.model) or "")
    other: EmotionVectors = load_vectors(shipped_vectors(args.also_read_by) or "")
    emotions, layer = list(v.emotions), v.reading_layer
    replies = load_replies(args.model, emotions)
    judged, _, written, heldout = replies
    own, theirs = (pooled(m, replies, cache) for m in (args.model, args.also_read_by))
    _, _, test = _split_by_message(judged, 0)
    balanced, judged_only = (written, judged, ~test), (written, judged, ~test, False)

    shipped, shipped_feats = _ridge(own, lambda f: f[:, layer], emotions, balanced)
    cut = v.meta["judged_validation"]["incoherence"]["cut_fitted_on_half"]
    detector = np.array([bool(degenerate_reasons(t)) for t in judged.replies])
    broken = detector | (shipped(shipped_feats["judged"])[1] >= cut)
    read = test & ~broken & (np.array(judged.labels) != INCOHERENT)  # the same replies for every fit

    three = [max(layer - 3, 0), layer, min(layer + 3, v.n_layers - 1)]
    fits: dict[str, tuple[Predict, dict[str, Any]]] = {
        "reading layer (shipped)": (shipped, shipped_feats),
        "three layers side by side": _ridge(own, lambda f: f[:, three].reshape(len(f), -1), emotions, balanced),
        "every layer averaged": _ridge(own, lambda f: f.mean(1), emotions, balanced),
        "kernel ridge (RBF)": _kernel(own, layer, emotions, balanced),
        f"read by {args.also_read_by}": _ridge(theirs, lambda f: f[:, other.reading_layer], emotions, balanced),
        "judged replies only": _ridge(own, lambda f: f[:, layer], emotions, judged_only),
        f"judged replies only, read by {args.also_read_by}": _ridge(
            theirs, lambda f: f[:, other.reading_layer], emotions, judged_only
        ),
    }
    rows: list[dict[str, Any]] = []
    for name, (predict, feats) in fits.items():
        extra: dict[str, Any] = {k: feats[k] for k in ("width", "penalty") if k in feats}
        rows.append({"fit": name, **extra, **_score(predict, feats, read, judged, heldout, emotions)})
        print(json.dumps(rows[-1]), flush=True)
    levels = {s: np.unique(judged.scales[s][read], return_counts=True) for s in READ}
    ties = {s: counts for s, (_, counts) in levels.items()}
    spearman_ceiling = tie_ceiling(judged, read)
    n = int(read.sum())
    record = {
        "model": args.model,
        "layer": layer,
        "judged": set_paths(args.model),
        "test_replies_read": n,
        "judged_levels": {s: {str(int(k)): int(c) for k, c in zip(*levels[s], strict=True)} for s in READ},
        "tie_ceiling": {
            s: {
                "spearman": spearman_ceiling[s],
                # tau-b of a score that orders the levels perfectly and has no ties of its own, exactly
                "tau_b": float(np.sqrt(1 - (c * (c - 1)).sum() / (n * (n - 1)))),
            }
            for s, c in ties.items()
        },
        "annotators": _annotators(args.model),
        "fits": rows,
    }
    out = REPO / "eval" / "benchmarks" / "results" / f"reader_limits_{args.model}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
