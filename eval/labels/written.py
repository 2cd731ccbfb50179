"""Draw the written replies the reply reader is fitted on (``steerlab/data/replies.jsonl``) into blind batches,
so that they can be rated on the same rubric as the models' own replies.

    python eval/labels/written.py [--seed 0] [--batches 5]

Writes eval/labels/written/: batch_K.jsonl (id, user, reply: what an annotator sees, shuffled),
double.jsonl (a fifth again, reshuffled) and key.jsonl (id -> the label the reply was written for, its
line). Merged with ``python eval/labels/agreement.py --model written`` once labelled: the written labels are
the key's ``condition``, never shown to an annotator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from steerlab.core.corpus import BUILTIN_REPLIES, load_corpus

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    from generate import write_batches  # the same batch, double and key files as the models' sets

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=5)
    args = ap.parse_args()
    written = load_corpus(None, min_per_emotion=1, builtin=BUILTIN_REPLIES)
    records: list[dict[str, object]] = [
        {"condition": label, "source": "replies.jsonl", "prompt_index": i, "user": user, "reply": text}
        for i, (label, user, text) in enumerate(zip(written.labels, written.contexts or (), written.texts, strict=True))
    ]
    write_batches(REPO / "eval" / "labels" / "written", records, np.random.default_rng(args.seed), args.batches)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
