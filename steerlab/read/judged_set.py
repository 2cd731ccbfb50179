"""Judged sets: blind judgements of the model's own replies (the JSONL format is in :mod:`.judged`),
read line by line, and how a reader's scores agree with them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.core.corpus import NEUTRAL
from steerlab.core.errors import SteerlabError
from steerlab.core.files import existing_file, jsonl_rows
from steerlab.read.readers import INCOHERENT

SCALES = ("hopeful", "desperate", "calm")
MIN_POSITIVES = 5  # an AUROC needs at least this many positives and negatives


@dataclass(frozen=True)
class Judged:
    users: list[str]
    replies: list[str]
    labels: list[str]
    scales: dict[str, np.ndarray]  # scale -> (replies,) judged 1-5
    source: str
    sha256: str


def load_judged(paths: Sequence[str | Path], emotions: Sequence[str]) -> Judged:
    """Read judged sets (joined in order); every problem is one line naming the file, the line and the fix."""
    allowed = {*emotions, NEUTRAL, INCOHERENT}
    users: list[str] = []
    replies: list[str] = []
    labels: list[str] = []
    scales: dict[str, list[float]] = {s: [] for s in SCALES}
    digest = hashlib.sha256()
    sources = []
    for path in paths:
        where = existing_file(path, "judged replies file", "pass the JSONL that eval/labels/agreement.py writes")
        raw = where.read_bytes()
        digest.update(raw)
        sources.append(str(where))
        _parse(raw, where, allowed, users, replies, labels, scales)
    if len(set(users)) < 4:
        raise SteerlabError(
            f"{', '.join(sources)}: replies to {len(set(users))} user message(s): judged sets need at least 4"
        )
    arrays = {s: np.array(v) for s, v in scales.items()}
    return Judged(users, replies, labels, arrays, " + ".join(sources), digest.hexdigest())


def _parse(
    raw: bytes,
    where: Path,
    allowed: set[str],
    users: list[str],
    replies: list[str],
    labels: list[str],
    scales: dict[str, list[float]],
) -> None:
    for n, row in jsonl_rows(raw, str(where), SteerlabError):
        try:
            users.append(str(row["user"]))
            replies.append(str(row["reply"]))
            label = str(row["label"])
            for s in SCALES:
                value = float(row[s])
                if not 1 <= value <= 5:
                    raise ValueError(f"{s} {value:g} is not on the 1-5 scale")
                scales[s].append(value)
        except (ValueError, KeyError, TypeError) as err:
            raise SteerlabError(
                f"{where}:{n}: {err}: each line needs user, reply, label and hopeful/desperate/calm 1-5"
            ) from None
        if label not in allowed:
            raise SteerlabError(f"{where}:{n}: label {label!r} is not an emotion of the vectors, neutral or incoherent")
        labels.append(label)


def judged_figures(
    scores: np.ndarray, flagged: np.ndarray, judged: Judged, rows: np.ndarray, emotions: Sequence[str]
) -> dict[str, Any]:
    """How scores (replies, emotions) agree with the judge on ``rows``: replies judged incoherent and
    replies ``flagged`` as incoherent are not read; the rest give Spearman with each judged scale, AUROC
    for "judged >= 3" per scale and one-vs-rest per judged label (``MIN_POSITIVES`` or more)."""
    from scipy.stats import spearmanr

    from steerlab.read.probes import auroc as roc_auc

    labels = np.array(judged.labels)
    broken = labels == INCOHERENT
    read = rows & ~broken & ~flagged
    out: dict[str, Any] = {"n": int(read.sum()), "coverage": float(read.sum() / max((rows & ~broken).sum(), 1))}

    def auroc(positive: np.ndarray, column: np.ndarray) -> float | None:
        ok = np.isfinite(column)
        pos, neg = int((positive & ok).sum()), int((~positive & ok).sum())
        return roc_auc(positive[ok], column[ok]) if min(pos, neg) >= MIN_POSITIVES else None

    for s in SCALES:
        column = scores[read, list(emotions).index(s)] if s in emotions else np.full(int(read.sum()), np.nan)
        ok = np.isfinite(column)
        truth = judged.scales[s][read][ok]
        varied = ok.sum() > 2 and np.ptp(truth) > 0 and np.ptp(column[ok]) > 0  # else no correlation is defined
        rho = spearmanr(column[ok], truth).statistic if varied else float("nan")
        out[f"spearman_{s}"] = None if np.isnan(rho) else float(rho)
        out[f"auroc_{s}_3plus"] = auroc(judged.scales[s][read] >= 3, column)
        out[f"positives_{s}_3plus"] = int((judged.scales[s][read] >= 3).sum())
    per_label = {}
    for e in emotions:
        value = auroc(labels[read] == e, scores[read, list(emotions).index(e)])
        if value is not None:
            per_label[e] = {"auroc": value, "positives": int((labels[read] == e).sum())}
    out["auroc"] = per_label
    out["macro_auroc"] = float(np.mean([v["auroc"] for v in per_label.values()])) if per_label else None
    return out


def tie_ceiling(judged: Judged, rows: np.ndarray) -> dict[str, float | None]:
    """Per scale, the highest Spearman a score without ties reaches on ``rows`` (incoherent left out): that of a
    score ordering the judged levels perfectly. Every such score reaches the same value, as the judged ranks are
    constant within a level; a scale the judge rates 1 for most replies caps it well below 1."""
    from scipy.stats import spearmanr

    read = rows & (np.array(judged.labels) != INCOHERENT)
    out: dict[str, float | None] = {}
    for s in SCALES:
        truth = judged.scales[s][read].astype(float)
        varied = truth.size >= 3 and np.ptp(truth) > 0
        out[s] = float(spearmanr(truth + np.arange(truth.size) / (2 * truth.size), truth).statistic) if varied else None
    return out


def incoherence_figures(flagged: np.ndarray, detector: np.ndarray, judged: Judged, rows: np.ndarray) -> dict[str, Any]:
    broken = np.array(judged.labels) == INCOHERENT

    def pr(flag: np.ndarray) -> dict[str, float]:
        hit = (flag & broken & rows).sum()
        return {
            "precision": float(hit / max((flag & rows).sum(), 1)),
            "recall": float(hit / max((broken & rows).sum(), 1)),
        }

    return {"judged_incoherent": int((broken & rows).sum()), "rule": pr(flagged), "detector_alone": pr(detector)}


def subset(judged: Judged, keep: np.ndarray) -> Judged:
    """The replies of ``judged`` where ``keep`` (replies,) is true."""
    pick = np.flatnonzero(keep)
    return replace(
        judged,
        users=[judged.users[i] for i in pick],
        replies=[judged.replies[i] for i in pick],
        labels=[judged.labels[i] for i in pick],
        scales={s: v[pick] for s, v in judged.scales.items()},
    )


def bag_of_words(
    train: Sequence[str], labels: Sequence[str], test: Sequence[str], emotions: Sequence[str], seed: int
) -> np.ndarray:
    """A model-free baseline: logistic regression on word uni- and bigrams, its decision per emotion."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    words = CountVectorizer(ngram_range=(1, 2), min_df=2)
    clf = LogisticRegression(C=1.0, max_iter=3000, random_state=seed).fit(words.fit_transform(train), labels)
    decision = clf.decision_function(words.transform(test))
    out = np.full((len(test), len(emotions)), np.nan)
    for j, label in enumerate(clf.classes_):
        if label in emotions:
            out[:, list(emotions).index(label)] = decision[:, j] if decision.ndim == 2 else decision
    return out


def source_weights(n_written: int, n_judged: int) -> np.ndarray:
    """Each reply's weight in the reply reader's fit, written replies first: the written and the judged
    replies count equally in total, so adding judged replies does not drift the reader away from written
    text, and the reader validated on half of the judged messages has the balance of the one refitted on all."""
    if not n_written or not n_judged:
        return np.ones(n_written + n_judged)
    return np.concatenate([np.full(n_written, n_judged / n_written), np.ones(n_judged)])
