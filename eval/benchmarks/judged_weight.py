"""Does the reply reader follow the judge better if the model's own replies weigh more in its fit, and
what did its targets change?

    python eval/benchmarks/judged_weight.py --model MODEL [--features DIR]

The default reader of replies predicts, per label, its indicator and, for the three scales the judge rated,
the judged rating on 0-1 (ridge heads; ``fit-reader``), with the written and the judged replies weighing the
same in total. This refits it at the reading layer on the written replies and the fitting half of the judged
replies (the same split by user message as ``fit-reader``): with the judged replies weighing k times the
written ones in total (k = 0.5, 1: the default, 2, 4); with every reply counted once
(``judged_to_written_weight`` null: the judged replies outweigh the written ones by their number); balanced,
on a seeded half and three quarters of the fitting half's user messages (does more judged data still help?);
and, for comparison, the former reader (a multinomial classifier of the labels, each reply once); and,
balanced and with the judged replies weighing double, with the written replies' own blind ratings
(``eval/labels/written/``) as their targets for the three scales instead of their labels. It scores each fit
on the held-out judged replies (as ``fit-reader`` does; the incoherence cut at 0.5), on those of each judged
set, and on the written held-out replies (``eval/data/replies_heldout.jsonl``). Writes
eval/benchmarks/results/judged_weight_MODEL.json.
``--features DIR`` caches the pooled replies between runs (``judged_data.pooled``, shared with ``reader_limits.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from judged_data import REPO, SETS, load_replies, pooled, set_paths

from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.read.coherence import degenerate_reasons
from steerlab.read.judged import _at, _split_by_message, _training
from steerlab.read.judged_set import SCALES, judged_figures
from steerlab.read.methods import fit_probe
from steerlab.read.probes import auroc
from steerlab.read.reader_choice import fit_reply_reader
from steerlab.read.readers import INCOHERENT_P

SET_FILES = tuple(f"{s}labels.jsonl" for s in SETS)


KEYS = ("macro_auroc", "spearman_hopeful", "auroc_hopeful_3plus", "spearman_desperate", "auroc_desperate_3plus")


def _classifier(x: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The former reply reader: a multinomial logistic classifier of the labels (C 0.05)."""
    classes = sorted(set(labels))
    weight, bias = fit_probe(x, np.array([classes.index(lab) for lab in labels]), 0.05)
    return weight, bias, classes


def _log_probs(
    fit: tuple[np.ndarray, np.ndarray, list[str]], feats: np.ndarray, emotions: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    weight, bias, classes = fit
    logits = feats @ weight.T + bias
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    out = np.full((len(feats), len(emotions)), np.nan)
    for i, label in enumerate(classes):
        if label in emotions:
            out[:, emotions.index(label)] = logp[:, i]
    return out, np.exp(logp[:, classes.index("incoherent")]) if "incoherent" in classes else np.zeros(len(feats))


def _written_ratings(n: int) -> dict[str, np.ndarray]:
    """The blind judge's ratings of the written replies (``eval/labels/written/``), by line of replies.jsonl."""
    rows = [json.loads(line) for line in (REPO / "eval" / "labels" / "written" / "labels.jsonl").open()]
    by_line = {r["prompt_index"]: r for r in rows}
    return {s: np.array([by_line[i][s] for i in range(n)], dtype=float) for s in SCALES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", default=None)
    args = ap.parse_args()
    v = load_vectors(shipped_vectors(args.model) or "")
    emotions, layer = list(v.emotions), v.reading_layer
    replies = load_replies(args.model, emotions)
    judged, which, written, heldout = replies
    every_layer = pooled(args.model, replies, Path(args.features) if args.features else None)
    w, j, h = (every_layer[k][:, layer] for k in ("written", "judged", "heldout"))
    _, _, test = _split_by_message(judged, 0)
    detector = np.array([bool(degenerate_reasons(t)) for t in judged.replies])
    truth = np.array(heldout.labels)
    feats = np.concatenate([w, j])[:, None, :]
    fitting_messages = sorted({u for u, held in zip(judged.users, test, strict=True) if not held})
    fit_messages = np.random.default_rng(1).permutation(fitting_messages)
    n = len(written.texts)
    fits: list[tuple[str, float | None, float, Any]] = []
    for k, share in ((1.0, 0.5), (1.0, 0.75), (1.0, 1.0), (0.5, 1.0), (2.0, 1.0), (4.0, 1.0), (None, 1.0)):
        keep = fit_messages[: round(share * len(fit_messages))]
        x, labels, users, ratings, weights = _training(feats, written, judged, ~test & np.isin(judged.users, keep))
        weights = np.ones(len(labels)) if k is None else np.concatenate([weights[:n], weights[n:] * k])
        fit = fit_reply_reader(x, labels, users, ratings, weights)
        fits.append(("ridge: labels + judged ratings", k, share, lambda f, fit=fit: _at(fit, 0, f, emotions)))
    x, labels, users, ratings, weights = _training(feats, written, judged, ~test)
    blind = _written_ratings(len(written.texts))  # the written replies' own blind ratings replace their labels
    for k in (1.0, 2.0):
        rated = {s: np.concatenate([blind[s], ratings[s][n:]]) for s in ratings}
        fit = fit_reply_reader(x, labels, users, rated, np.concatenate([weights[:n], weights[n:] * k]))
        fits.append(("ridge: written replies rated blind too", k, 1.0, lambda f, fit=fit: _at(fit, 0, f, emotions)))
    classifier = _classifier(np.concatenate([w, j[~test]]), labels)
    fits.append(("classifier: labels (former)", None, 1.0, lambda f: _log_probs(classifier, f, emotions)))
    rows: list[dict[str, Any]] = []
    for reader, k, share, predict in fits:
        scores, p_broken = predict(j)
        flagged = detector | (p_broken >= INCOHERENT_P)
        figures = judged_figures(scores, flagged, judged, test, emotions)
        on_written, _ = predict(h)
        rows.append(
            {
                "reader": reader,
                "judged_to_written_weight": k,
                "share_of_fitting_messages": share,
                "written_hopeful_auroc": auroc(truth == "hopeful", on_written[:, emotions.index("hopeful")]),
                **{key: figures[key] for key in KEYS},
                "by_set": {
                    name: {key: by_set[key] for key in KEYS}
                    for name in SET_FILES
                    for by_set in [judged_figures(scores, flagged, judged, test & (which == name), emotions)]
                },
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out = REPO / "eval" / "benchmarks" / "results" / f"judged_weight_{args.model}.json"
    record = {
        "model": args.model,
        "layer": layer,
        "judged": set_paths(args.model),
        "test_replies": int(test.sum()),
    }
    blind = _written_ratings(n)  # how well the blind judge itself agrees with the labels the replies were written for
    record["judge_vs_written_labels_auroc"] = {s: auroc(np.array(written.labels) == s, blind[s]) for s in SCALES}
    record["fits"] = rows
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
