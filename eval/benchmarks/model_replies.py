"""Readers against a careful judge on the model's *own* replies (blind labels, eval/labels/MODEL/).

    python eval/benchmarks/model_replies.py --model MODEL [--vectors FILE]

Every reader reads each labelled reply in its conversation (one fresh pass of the clean model,
pooled as ``read_texts`` pools replies, at the vector file's reading layer) and is compared with the
judged scales: Spearman with judged hopeful (and desperate), AUROC for "judged hopeful >= 3", the
mean score of replies judged incoherent against coherent ones, and each condition's change from
baseline by the reader and by the judge. Two baselines use no model: a bag of words (logistic
regression on word uni- and bigrams, fitted on half of the user messages) and reply length. Figures
are on the other half of the messages (split by message, seeded), and on all replies for the readers
never fitted on them. Writes eval/benchmarks/results/model_replies_MODEL.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from steerlab.models import load_model
from steerlab.readers import READERS, pooled_features
from steerlab.validate.coherence import degenerate_reasons
from steerlab.vectors import load_vectors, shipped_vectors

REPO = Path(__file__).resolve().parents[2]


def figures(score: np.ndarray, rows: list[dict[str, Any]], mask: np.ndarray) -> dict[str, Any]:
    """How one score of replies agrees with the judge on the rows in ``mask`` (nan scores skipped)."""
    ok = mask & np.isfinite(score)
    out: dict[str, Any] = {"n": int(ok.sum())}
    for scale in ("hopeful", "desperate"):
        judged = np.array([r[scale] for r in rows], dtype=float)
        positive = judged[ok] >= 3
        out[f"spearman_{scale}"] = float(spearmanr(score[ok], judged[ok]).statistic) if ok.sum() > 2 else None
        out[f"auroc_{scale}_3plus"] = (
            float(roc_auc_score(positive, score[ok])) if 5 <= positive.sum() <= ok.sum() - 5 else None
        )
        out[f"positives_{scale}_3plus"] = int(positive.sum())
    broken = np.array([r["label"] == "incoherent" for r in rows])
    out["mean_incoherent"] = float(np.mean(score[ok & broken])) if (ok & broken).any() else None
    out["mean_coherent"] = float(np.mean(score[ok & ~broken])) if (ok & ~broken).any() else None
    return out


def condition_signs(score: np.ndarray, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per condition of the desperate suite: mean change from baseline, by the reader and by the judge."""
    judged = np.array([r["hopeful"] for r in rows], dtype=float)
    suite = np.array([r["suite"] == "desperate_to_hopeful" for r in rows])
    cond = np.array([r["condition"] for r in rows])
    base = suite & (cond == "baseline")
    out = {}
    for name in sorted(set(cond[suite]) - {"baseline"}):
        m = suite & (cond == name)
        out[name] = {
            "reader": float(np.nanmean(score[m]) - np.nanmean(score[base])),
            "judge": float(judged[m].mean() - judged[base].mean()),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vectors", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = REPO / "eval" / "labels" / args.model / "labels.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lm = load_model(args.model)
    v = load_vectors(args.vectors or shipped_vectors(args.model) or "")
    replies, users = [r["reply"] for r in rows], [r["user"] for r in rows]
    messages = sorted({(r["suite"], r["prompt_index"]) for r in rows})
    rng = np.random.default_rng(args.seed)
    test_messages = {messages[i] for i in rng.permutation(len(messages))[: len(messages) // 2]}
    test = np.array([(r["suite"], r["prompt_index"]) in test_messages for r in rows])
    everything = np.ones(len(rows), dtype=bool)
    h = v.index("hopeful")
    results: dict[str, Any] = {}
    keep = [i for i, t in enumerate(replies) if t.strip()]  # an empty reply is never read (nan)
    feats = pooled_features(lm, [replies[i] for i in keep], [users[i] for i in keep])[:, v.reading_layer]
    for name in sorted(READERS):
        reader = READERS[name]
        hopeful = np.full(len(rows), np.nan)
        hopeful[keep] = reader.score(v, feats if reader.layered else None, [replies[i] for i in keep], v.reading_layer)[
            :, h
        ]
        if not np.isfinite(hopeful).any():
            continue
        results[name] = {
            "all": figures(hopeful, rows, everything),
            "test": figures(hopeful, rows, test),
            "conditions": condition_signs(hopeful, rows),
        }
    words = CountVectorizer(ngram_range=(1, 2), min_df=2)
    x = words.fit_transform(replies)
    y = np.array([r["hopeful"] >= 3 for r in rows])
    bow = LogisticRegression(C=1.0, max_iter=2000).fit(x[~test], y[~test]) if y[~test].any() else None
    if bow is not None:
        results["bag_of_words"] = {"test": figures(bow.decision_function(x), rows, test)}
    length = np.array([len(t.split()) for t in replies], dtype=float)
    results["length"] = {"test": figures(length, rows, test), "all": figures(length, rows, everything)}
    flagged = np.array([not t.strip() or bool(degenerate_reasons(t)) for t in replies])
    broken = np.array([r["label"] == "incoherent" for r in rows])
    detector = {
        "judged_incoherent": int(broken.sum()),
        "flagged": int(flagged.sum()),
        "precision": float((flagged & broken).sum() / max(flagged.sum(), 1)),
        "recall": float((flagged & broken).sum() / max(broken.sum(), 1)),
    }
    out = {
        "model": args.model,
        "vectors": args.vectors or str(shipped_vectors(args.model)),
        "reading_layer": v.reading_layer,
        "default_reader": v.default_reader,
        "n": len(rows),
        "messages": len(messages),
        "test_replies": int(test.sum()),
        "readers": results,
        "degeneration_detector": detector,  # the model-free loop/markup/empty detector vs judged incoherent
    }
    target = REPO / "eval" / "benchmarks" / "results" / f"model_replies_{args.model}.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    for name, r in results.items():
        f = r["test"]
        print(
            f"{name:14} test n {f['n']:3}: spearman hopeful {f['spearman_hopeful']}, "
            f"AUROC hopeful>=3 {f['auroc_hopeful_3plus']}, incoherent {f['mean_incoherent']} vs {f['mean_coherent']}"
        )
    print(f"degeneration detector vs judged incoherent: {detector}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
