"""Method and pooling study: which way of building and reading vectors generalises to unseen styles.

    python eval/benchmarks/method_study.py [--external ../shared/external/emotionscope]

For every readout (mean of all content tokens; mean skipping the first 2 or 4; the last token; the
response-preparation token, where the model is about to reply to the text as a user turn) and every
method (diffmean with and without neutral denoising, RepE-style PCA, the logistic probe's weights):

- out-of-style: fitted on three of the built-in corpus's four styles, read on the fourth, averaged;
- in-style: fitted on the train split, read on the held-out split (the old figure);
- EmotionScope's 1,000 one-sentence stories (never trained on), read by the train-split vectors.

Each combination's reading layer is chosen as `extract` chooses it (best out-of-style top-1), and every
figure is reported there: the stories never choose anything. Writes method_study.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerlab.core.corpus import NEUTRAL, heldout_mask, load_corpus
from steerlab.core.vectors import cosine
from steerlab.model.activations import PoolingConfig, pooled_readouts
from steerlab.model.models import load_model
from steerlab.read.folds import Fold, fit_layer, out_of_style, style_folds
from steerlab.read.probes import topk_hits

HERE = Path(__file__).resolve().parent
READOUTS = {
    "mean": PoolingConfig(),
    "mean, skip 2": PoolingConfig(skip_tokens=2),
    "mean, skip 4": PoolingConfig(skip_tokens=4),
    "last token": PoolingConfig(readout="last"),
    "prep (about to reply)": PoolingConfig(readout="prep"),
}
STUDIED = {
    "diffmean, neutral PCs removed": ("diffmean", {"neutral_variance": 0.5}),
    "diffmean, no denoising": ("diffmean", {"neutral_variance": 0.0}),
    "pca (RepE)": ("pca", {"pairs": 64, "neutral_variance": 0.5}),
    "probe weights": ("probe", {"c": 1.0}),
}


def topk(feats: np.ndarray, y: np.ndarray, center: np.ndarray, directions: np.ndarray) -> tuple[float, float]:
    scores = cosine(*(torch.from_numpy(np.asarray(a)) for a in (feats, center, directions))).numpy()
    return float(topk_hits(scores, y, 1).mean()), float(topk_hits(scores, y, 3).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--external", default=str(HERE.parents[2] / "shared" / "external" / "emotionscope"))
    ap.add_argument("--out", default=str(HERE / "results" / "method_study.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lm = load_model(args.model)
    corpus = load_corpus()
    emotions = corpus.emotions
    labels = np.array(corpus.labels)
    y = np.array([emotions.index(lab) if lab != NEUTRAL else -1 for lab in labels])
    is_emotion = labels != NEUTRAL
    held = heldout_mask(corpus, 0.25, args.seed)
    split = Fold(
        "in-style",
        np.flatnonzero(is_emotion & ~held),
        np.flatnonzero(~is_emotion),
        np.flatnonzero(is_emotion & held),
    )
    folds, why = style_folds(corpus)
    if not folds:
        raise SystemExit(f"the built-in corpus has no style folds: {why}")
    stories_path = Path(args.external) / "emotion_stories.jsonl"
    lines = stories_path.read_text().splitlines() if stories_path.exists() else []
    stories = [json.loads(x) for x in lines if x.strip()]
    stories = [s for s in stories if s["emotion"] in emotions]
    story_y = np.array([emotions.index(s["emotion"]) for s in stories])
    texts = corpus.texts + [s["text"] for s in stories]
    n = len(corpus.texts)

    start = time.perf_counter()
    features: dict[str, np.ndarray] = {}
    pass_seconds: dict[str, float] = {}
    for prep in (False, True):  # one forward pass per tokenisation, every readout of it pooled at once
        names = [k for k, c in READOUTS.items() if (c.readout == "prep") == prep]
        pooled = pooled_readouts(lm, texts, [READOUTS[k] for k in names])
        for name, p in zip(names, pooled, strict=True):
            features[name] = p.features
            pass_seconds[name] = p.seconds
    rows: list[dict[str, Any]] = []
    for readout, all_feats in features.items():
        for label, (method, params) in STUDIED.items():
            for layer in range(lm.n_layers):
                feats = all_feats[:n, layer].astype(np.float64)
                oos = out_of_style(feats, y, folds, len(emotions), method, params, args.seed + layer)
                center, directions, _ = fit_layer(feats, y, split, len(emotions), method, params, args.seed)
                in_top1, _ = topk(feats[split.test], y[split.test], center, directions)
                st1, st3 = topk(all_feats[n:, layer], story_y, center, directions) if stories else (float("nan"),) * 2
                rows.append(
                    {
                        "readout": readout,
                        "method": label,
                        "layer": layer,
                        "oos_top1": oos["oos_top1"],
                        "oos_top1_ci": [oos["oos_top1_lo"], oos["oos_top1_hi"]],
                        "oos_top3": oos["oos_top3"],
                        "oos_per_style": oos["per_style"],
                        "in_style_top1": in_top1,
                        "stories_top1": st1,
                        "stories_top3": st3,
                    }
                )
            print(f"{readout} · {label}: done ({time.perf_counter() - start:.0f}s)", file=sys.stderr)
    combos = []
    for readout in features:
        for label in STUDIED:
            mine = [r for r in rows if r["readout"] == readout and r["method"] == label]
            at = max(mine, key=lambda r: (r["oos_top1"], r["oos_top3"], -r["layer"]))
            combos.append({"readout": readout, "method": label, "reading_layer": at["layer"], **at})
    best = max(combos, key=lambda c: (c["oos_top1"], c["oos_top3"]))
    summary = {
        "model": lm.spec,
        "corpus": corpus.source,
        "corpus_sha256": corpus.sha256,
        "styles": sorted(f.name for f in folds),
        "n_texts": int(is_emotion.sum()),
        "n_stories": len(stories),
        "external": str(stories_path) if stories else None,
        "rule": "each combination is read at its best out-of-style layer; the default is the combination "
        "with the best out-of-style top-1 there (EmotionScope's stories are reported, never used to choose)",
        "best": {k: best[k] for k in ("readout", "method", "reading_layer", "oos_top1", "oos_top3", "stories_top1")},
        "pass_seconds": pass_seconds,
        "seconds": time.perf_counter() - start,
        "combinations": combos,
        "layers": rows,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print("| readout | method | reading layer | out-of-style top-1 [95% CI] | top-3 | in-style top-1 | stories top-1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for c in combos:
        lo, hi = c["oos_top1_ci"]
        print(
            f"| {c['readout']} | {c['method']} | {c['reading_layer']} | {c['oos_top1']:.3f} [{lo:.2f}, {hi:.2f}] | "
            f"{c['oos_top3']:.3f} | {c['in_style_top1']:.3f} | {c['stories_top1']:.3f} |"
        )
    print(f"best: {summary['best']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
