"""Does the reply reader follow the judge better if the model's own replies weigh more in its fit?

    python eval/benchmarks/judged_weight.py --model MODEL [--features FILE]

The default reader of replies is a classifier of 20 emotions (+ neutral, incoherent) fitted on written
replies and the model's judged replies (``fit-reader``). This refits it at the reading layer on the
written replies and the fitting half of the judged replies (the same split by user message as
``fit-reader``), with each judged reply counted k times (k = 1, 2, 3, 5) and at two penalties, and
scores each fit on the held-out judged replies (as ``fit-reader`` does) and on the written held-out
replies (``eval/data/replies_heldout.jsonl``). Writes eval/benchmarks/results/judged_weight_MODEL.json.
``--features`` caches the pooled replies (npz) between runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.core.corpus import BUILTIN_REPLIES, load_corpus
from steerlab.core.vectors import load_vectors, shipped_vectors
from steerlab.read.coherence import degenerate_reasons
from steerlab.read.judged import _fit, _log_probs, _split_by_message, load_judged
from steerlab.read.judged_set import judged_figures, subset
from steerlab.read.probes import auroc
from steerlab.read.readers import INCOHERENT_P, pooled_features

REPO = Path(__file__).resolve().parents[2]
SETS = ("labels.jsonl", "emotional/labels.jsonl", "desperate/labels.jsonl")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", default=None)
    args = ap.parse_args()
    v = load_vectors(shipped_vectors(args.model) or "")
    emotions, layer = list(v.emotions), v.reading_layer
    folder = REPO / "eval" / "labels" / args.model
    judged = load_judged([folder / s for s in SETS], emotions)
    judged = subset(judged, np.array([bool(r.strip()) for r in judged.replies]))
    written = load_corpus(None, min_per_emotion=1, builtin=BUILTIN_REPLIES)
    heldout = load_corpus(str(REPO / "eval" / "data" / "replies_heldout.jsonl"), min_per_emotion=1)
    cache = Path(args.features) if args.features else None
    if cache is not None and cache.is_file():
        saved = np.load(cache)
        w, j, h = saved["written"], saved["judged"], saved["heldout"]
    else:
        from steerlab.model.models import load_model

        lm = load_model(args.model)
        w = pooled_features(lm, written.texts, written.contexts)[:, layer]
        j = pooled_features(lm, judged.replies, judged.users)[:, layer]
        h = pooled_features(lm, heldout.texts, heldout.contexts)[:, layer]
        if cache is not None:
            np.savez(cache, written=w, judged=j, heldout=h)
    _, _, test = _split_by_message(judged, 0)
    fit_rows = np.flatnonzero(~test)
    fit_labels = [judged.labels[i] for i in fit_rows]
    detector = np.array([bool(degenerate_reasons(t)) for t in judged.replies])
    truth = np.array(heldout.labels)
    c0 = float((v.meta.get("reply_reader") or {}).get("c", 0.05))
    rows: list[dict[str, Any]] = []
    for k in (1, 2, 3, 5):
        for c in (c0, 3 * c0):
            fit = _fit(np.concatenate([w] + [j[fit_rows]] * k), list(written.labels) + fit_labels * k, c)
            scores, p_broken = _log_probs(fit, j, emotions)
            figures = judged_figures(scores, detector | (p_broken >= INCOHERENT_P), judged, test, emotions)
            on_written, _ = _log_probs(fit, h, emotions)
            rows.append(
                {
                    "judged_weight": k,
                    "c": c,
                    "written_hopeful_auroc": auroc(truth == "hopeful", on_written[:, emotions.index("hopeful")]),
                    **{
                        key: figures[key]
                        for key in (
                            "macro_auroc",
                            "spearman_hopeful",
                            "auroc_hopeful_3plus",
                            "spearman_desperate",
                            "auroc_desperate_3plus",
                        )
                    },
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = REPO / "eval" / "benchmarks" / "results" / f"judged_weight_{args.model}.json"
    record = {"model": args.model, "layer": layer, "judged": judged.source, "test_replies": int(test.sum())}
    record["fits"] = rows
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
