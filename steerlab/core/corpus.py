"""Emotion corpora: the JSONL schema, loading with line-numbered errors, statistics and splits.

One JSON object per line: ``text`` (str), ``emotion`` (an emotion name or ``neutral``), optional
``topic``, ``speaker``, ``split`` (``train`` / ``test``; anything else is treated as unset),
``style`` (how the text is written, e.g. ``vignette``, ``diary``, ``dialogue``, ``story``: layers and
methods are chosen on styles left out of training) and ``context`` (the user message a reply answers:
the text is then read as the model's reply to it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.core.errors import CorpusError
from steerlab.core.files import jsonl_rows

NEUTRAL = "neutral"
MIN_PER_EMOTION = 4


@dataclass(frozen=True)
class Record:
    """One labelled text of a corpus (one JSONL line): its emotion and optional topic, speaker, split, style."""

    text: str
    emotion: str
    topic: str | None = None
    speaker: str | None = None
    split: str | None = None
    context: str | None = None  # the user message a reply answers; the text is then read as the reply
    style: str | None = None  # how the text is written (vignette, diary, dialogue, story, ...)


@dataclass(frozen=True)
class Corpus:
    """A checked corpus: its records, the SHA-256 of its file (provenance for vector files) and its source."""

    records: tuple[Record, ...]
    sha256: str  # of the file's bytes: the provenance written into vector files
    source: str  # path, or "builtin:emotions.jsonl"

    @property
    def emotions(self) -> list[str]:
        """Emotion names in first-appearance order, without ``neutral``."""
        seen = dict.fromkeys(r.emotion for r in self.records if r.emotion != NEUTRAL)
        return list(seen)

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]

    @property
    def labels(self) -> list[str]:
        return [r.emotion for r in self.records]

    @property
    def contexts(self) -> list[str] | None:
        """User messages of a reply corpus (every record has one), else None (texts read alone)."""
        found = [r.context for r in self.records]
        if all(c is None for c in found):
            return None
        if any(c is None for c in found):
            raise CorpusError(
                f"{self.source}: some records have a 'context' and some do not: give every reply its message"
            )
        return [str(c) for c in found]

    @property
    def styles(self) -> list[str | None]:
        return [r.style for r in self.records]


def data_path(name: str) -> Path:
    return Path(str(files("steerlab").joinpath("data", name)))


BUILTIN = "emotions.jsonl"
BUILTIN_REPLIES = "replies.jsonl"  # labelled assistant replies, each with its user message ("context")


def load_corpus(
    path: str | Path | None = None, *, min_per_emotion: int = MIN_PER_EMOTION, builtin: str = BUILTIN
) -> Corpus:
    """Load and check a corpus; ``None`` loads the built-in one named ``builtin``."""
    source = data_path(builtin) if path is None else Path(path)
    if source.is_dir():
        raise CorpusError(f"corpus {str(source)!r} is a folder, not a file: pass a JSONL file")
    try:
        raw = source.read_bytes()
    except OSError as err:
        raise CorpusError(
            f"cannot read corpus {str(source)!r} ({err.strerror or err}): pass an existing JSONL file"
        ) from None
    records = parse_jsonl(raw, str(source))
    if not records:
        raise CorpusError(f"corpus {str(source)!r} has no texts: add JSONL lines with 'text' and 'emotion'")
    counts = Counter(r.emotion for r in records if r.emotion != NEUTRAL)
    if len(counts) < 2:
        raise CorpusError(f"corpus {str(source)!r} has {len(counts)} emotion(s): at least 2 are needed")
    for emotion, count in counts.items():
        if count < min_per_emotion:
            raise CorpusError(
                f"emotion {emotion!r} has only {count} texts in {str(source)!r}: "
                f"add at least {min_per_emotion} or remove it"
            )
    label = f"builtin:{builtin}" if path is None else str(source)
    return Corpus(tuple(records), hashlib.sha256(raw).hexdigest(), label)


def parse_jsonl(raw: bytes, name: str) -> list[Record]:
    records = []
    for number, obj in jsonl_rows(raw, name, CorpusError):
        if not isinstance(obj, dict):
            raise CorpusError(f"{name} line {number}: expected a JSON object with 'text' and 'emotion'")
        body, emotion = obj.get("text"), obj.get("emotion")
        if not isinstance(body, str) or not body.strip():
            raise CorpusError(f"{name} line {number}: 'text' must be a non-empty string")
        if not isinstance(emotion, str) or not emotion.strip():
            raise CorpusError(f"{name} line {number}: 'emotion' must be a non-empty string (or 'neutral')")
        split = obj.get("split") if obj.get("split") in ("train", "test") else None
        context, style = obj.get("context"), obj.get("style")
        if style is not None and (not isinstance(style, str) or not style.strip()):
            raise CorpusError(f"{name} line {number}: 'style' must be a non-empty string or absent")
        if context is not None and (not isinstance(context, str) or not context.strip()):
            raise CorpusError(
                f"{name} line {number}: 'context' must be a non-empty string (the user message) or absent"
            )
        records.append(
            Record(
                body.strip(),
                emotion.strip().lower(),
                obj.get("topic"),
                obj.get("speaker"),
                split,
                context.strip() if context else None,
                style.strip().lower() if style else None,
            )
        )
    return records


@dataclass(frozen=True)
class EmotionInfo:
    valence: float
    arousal: float
    words: tuple[str, ...]


@lru_cache(maxsize=1)
def emotion_info() -> dict[str, EmotionInfo]:
    """Valence, arousal (both in [-1, 1]) and own-name word lists of the built-in emotions."""
    data = json.loads(data_path("emotions.json").read_text())["emotions"]
    return {name: EmotionInfo(float(v["valence"]), float(v["arousal"]), tuple(v["words"])) for name, v in data.items()}


@lru_cache(maxsize=64)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alts = [re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w) for w in words]
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


def names_own_emotion(record: Record) -> str | None:
    """The word by which a text names its own emotion (or an obvious synonym), if any."""
    info = emotion_info().get(record.emotion)
    if info is None:
        words: tuple[str, ...] = (record.emotion,)
    else:
        words = info.words
    match = _word_pattern(words).search(record.text)
    return match.group(0) if match else None


def corpus_stats(corpus: Corpus) -> dict[str, Any]:
    """Counts, lengths in words, duplicates and self-naming texts, per emotion."""
    rows: dict[str, dict[str, float]] = {}
    for emotion in [*corpus.emotions, NEUTRAL]:
        lengths = [len(r.text.split()) for r in corpus.records if r.emotion == emotion]
        if not lengths:
            continue
        rows[emotion] = {
            "n": len(lengths),
            "words_mean": float(np.mean(lengths)),
            "words_min": int(np.min(lengths)),
            "words_max": int(np.max(lengths)),
        }
    seen: Counter[str] = Counter(r.text for r in corpus.records)
    naming = [
        {"index": i, "emotion": r.emotion, "word": word}
        for i, r in enumerate(corpus.records)
        if r.emotion != NEUTRAL and (word := names_own_emotion(r))
    ]
    return {
        "source": corpus.source,
        "sha256": corpus.sha256,
        "n_texts": len(corpus.records),
        "n_emotions": len(corpus.emotions),
        "styles": dict(Counter(r.style or "(none)" for r in corpus.records)),
        "per_emotion": rows,
        "duplicates": sorted(t for t, c in seen.items() if c > 1),
        "self_naming": naming,
    }


def stratified_split(labels: list[str], test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows: the same fraction of every label, seeded, at least one each."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labels)):
        idx = np.flatnonzero(np.array(labels) == label)
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction)))
        held[rng.permutation(idx)[:n_test]] = True
    return held


def heldout_mask(corpus: Corpus, test_fraction: float, seed: int) -> np.ndarray:
    """Held-out rows: explicit ``split`` fields win; the rest are split stratified by emotion and style."""
    mask = stratified_split([f"{r.emotion}|{r.style}" for r in corpus.records], test_fraction, seed)
    for i, record in enumerate(corpus.records):
        if record.split is not None:
            mask[i] = record.split == "test"
    return mask
