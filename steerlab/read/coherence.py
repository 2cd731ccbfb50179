"""Model-free degeneration and echo detectors for generated replies.

Perplexity under the same small model rewards loops ("The earth, the earth, the earth, …" scores
well), so degeneration is judged from the text alone: repeated word n-grams, how well the text
compresses, and how much of it is markup or symbol runs. Echo (a reply that copies the prompt) is
measured separately because it is fluent but says nothing.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

REPEAT_N = 3  # word n-gram length for the loop measure
MIN_COMPRESSION_CHARS = 60  # below this, zlib's fixed overhead dominates the ratio

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_MARKUP = re.compile(
    r"<!--.*?-->"  # HTML comments
    r"|</?[A-Za-z][^<>]{0,200}>"  # HTML / XML tags
    r"|```[^\n]*"  # code fences (with their language tag)
    r"|(?:https?://|www\.)\S+"  # URLs
    r"|&#?\w{1,8};"  # HTML entities
    r"|([^\w\s])\1{2,}",  # runs of 3+ identical symbols: ****, ----, !!!!
    re.DOTALL,
)


@dataclass(frozen=True)
class DegenerationLimits:
    # max share of the words covered by a word 3-gram that occurs more than once (loops)
    max_repeat_share: float = 0.5
    # min zlib-compressed bytes / raw bytes, checked from 60 chars on (lower = more repetitive);
    # English prose of 100-300 chars measures 0.5-1.0 (0.48 even at 2000 chars), loops <= 0.36
    min_compression: float = 0.4
    # max share of characters in markup / symbol runs (tags, fences, URLs, 3+ identical symbols)
    max_markup_share: float = 0.3


@dataclass(frozen=True)
class Degeneration:
    repeat_share: float  # share of words inside a repeated word 3-gram (0 for < 3 words)
    compression: float  # compressed / raw bytes; nan for texts under 60 chars
    markup_share: float  # share of characters in markup / symbol runs


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation stripped (apostrophes inside words kept: "i'll")."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _covered(size: int, starts: np.ndarray, n: int) -> float:
    """Share of `size` positions inside some window [start, start + n)."""
    if size == 0:
        return 0.0
    hit = np.zeros(size + 1, dtype=np.int64)
    np.add.at(hit, starts, 1)
    np.add.at(hit, np.minimum(starts + n, size), -1)
    return float(np.count_nonzero(np.cumsum(hit)[:size]) / size)


def repeat_share(text: str, n: int = REPEAT_N) -> float:
    """Share of words covered by a word n-gram that occurs more than once: loops cover ~all."""
    tokens = words(text)
    grams = _ngrams(tokens, n)
    counts = Counter(grams)
    starts = np.array([i for i, g in enumerate(grams) if counts[g] > 1], dtype=np.int64)
    return _covered(len(tokens), starts, n)


def compression(text: str) -> float:
    """zlib-compressed bytes / raw bytes: repetition compresses far better than prose."""
    raw = text.encode("utf-8")
    if len(text) < MIN_COMPRESSION_CHARS:
        return math.nan
    return len(zlib.compress(raw, 9)) / len(raw)


def markup_share(text: str) -> float:
    """Share of characters in markup or symbol runs (see _MARKUP)."""
    if not text:
        return 0.0
    return sum(m.end() - m.start() for m in _MARKUP.finditer(text)) / len(text)


def degeneration(text: str) -> Degeneration:
    return Degeneration(repeat_share(text), compression(text), markup_share(text))


def degenerate_reasons(text: str, limits: DegenerationLimits = DegenerationLimits()) -> tuple[str, ...]:
    """Why a reply is degenerate, one reason per violated limit; empty = fluent."""
    if not text.strip():
        return ("empty",)
    d = degeneration(text)
    reasons = []
    if d.repeat_share > limits.max_repeat_share:
        reasons.append(f"repeat share {d.repeat_share:.2f} > {limits.max_repeat_share:g}")
    if d.compression < limits.min_compression:  # False for nan (short text)
        reasons.append(f"compression {d.compression:.2f} < {limits.min_compression:g}")
    if d.markup_share > limits.max_markup_share:
        reasons.append(f"markup share {d.markup_share:.2f} > {limits.max_markup_share:g}")
    return tuple(reasons)


def echo_fraction(reply: str, prompt: str, n: int = 4) -> float:
    """Share of the prompt's words that the reply copies, via shared word n-grams.

    A prompt word counts as copied when some n-gram of the prompt containing it also occurs in
    the reply; prompts shorter than n words use the share of their words present in the reply.
    An empty prompt has nothing to copy: 0.
    """
    p, r = words(prompt), words(reply)
    if not p:
        return 0.0
    if len(p) < n:
        present = set(r)
        return sum(w in present for w in p) / len(p)
    in_reply = set(_ngrams(r, n))
    starts = np.array([i for i, g in enumerate(_ngrams(p, n)) if g in in_reply], dtype=np.int64)
    return _covered(len(p), starts, n)


def incoherence_threshold(predicted: np.ndarray, detector: np.ndarray, broken: np.ndarray) -> float | None:
    """The cut on the reply reader's predicted ``incoherent`` (out-of-fold, one per judged reply) that, with
    the loop ``detector``, best finds the replies judged ``broken`` (F1); None when none is judged broken.
    Ridge predictions shrink towards the mean, so a fixed 0.5 would miss most broken replies."""
    if not broken.any():
        return None
    cuts = np.round(np.arange(0.1, 0.9, 0.02), 2)[::-1]  # of equally good cuts, the highest: fewest replies unread
    flags = [detector | (predicted >= c) for c in cuts]
    f1 = [2 * (flag & broken).sum() / (flag.sum() + broken.sum()) for flag in flags]
    return float(cuts[int(np.argmax(f1))])
