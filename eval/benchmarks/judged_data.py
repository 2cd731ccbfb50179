"""What the reply-reader benchmarks (``judged_weight.py``, ``reader_limits.py``) read: a model's five judged sets
(``eval/labels/MODEL/``), the written replies the reader is fitted on, the written held-out replies, and their
pooled activations at every layer, cached in a folder so that the benchmarks pool each model's replies once."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from steerlab.core.corpus import BUILTIN_REPLIES, Corpus, load_corpus
from steerlab.read.judged import load_judged
from steerlab.read.judged_set import Judged, subset
from steerlab.read.readers import pooled_features

REPO = Path(__file__).resolve().parents[2]
SETS = ("", "emotional/", "desperate/", "scales/", "hopeful/")


class Replies(NamedTuple):
    judged: Judged  # empty replies left out
    which: np.ndarray  # (judged replies,) the set each came from: its file below eval/labels/MODEL/
    written: Corpus
    heldout: Corpus


def set_paths(model: str) -> list[str]:
    """The judged sets of ``model``, as repository paths."""
    return [f"eval/labels/{model}/{s}labels.jsonl" for s in SETS]


def load_replies(model: str, emotions: list[str]) -> Replies:
    paths = [REPO / p for p in set_paths(model)]
    judged = load_judged(paths, emotions)
    which = np.repeat([f"{s}labels.jsonl" for s in SETS], [len(load_judged([p], emotions).replies) for p in paths])
    nonempty = np.array([bool(r.strip()) for r in judged.replies])
    written = load_corpus(None, min_per_emotion=1, builtin=BUILTIN_REPLIES)
    heldout = load_corpus(str(REPO / "eval" / "data" / "replies_heldout.jsonl"), min_per_emotion=1)
    return Replies(subset(judged, nonempty), which[nonempty], written, heldout)


def pooled(reader_model: str, replies: Replies, cache: Path | None) -> dict[str, np.ndarray]:
    """(texts, layers, hidden) pooled activations of ``reader_model``, each reply read in its conversation:
    ``written``, ``judged`` and ``heldout``; kept in ``cache`` (a folder) when given."""
    path = cache / f"pooled_{reader_model}_{replies.judged.sha256[:12]}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as saved:
            return {k: saved[k] for k in ("written", "judged", "heldout")}
    from steerlab.model.models import load_model

    lm = load_model(reader_model)
    judged, written, heldout = replies.judged, replies.written, replies.heldout
    out = {
        "written": pooled_features(lm, written.texts, written.contexts),
        "judged": pooled_features(lm, judged.replies, judged.users),
        "heldout": pooled_features(lm, heldout.texts, heldout.contexts),
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, written=out["written"], judged=out["judged"], heldout=out["heldout"])
    return out
