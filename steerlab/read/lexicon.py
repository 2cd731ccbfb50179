"""The model-free ``lexicon`` reader: VADER's valence and NRC's emotion words (the ``lexicon`` extra), a
baseline that any model reader must beat."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

# The NRC category an emotion's words belong to; emotions without a clear category get valence only.
NRC_CATEGORY = {
    "happy": "joy",
    "proud": "joy",
    "enthusiastic": "joy",
    "loving": "joy",
    "sad": "sadness",
    "gloomy": "sadness",
    "brooding": "sadness",
    "guilty": "sadness",
    "afraid": "fear",
    "nervous": "fear",
    "desperate": "fear",
    "angry": "anger",
    "frustrated": "anger",
    "hostile": "anger",
    "surprised": "surprise",
    "hopeful": "anticipation",
    "curious": "anticipation",
    "confident": "trust",
    "calm": "trust",
}


def lexicon_scores(emotions: Sequence[str], valence: Mapping[str, float], texts: Sequence[str]) -> np.ndarray:
    """(texts, emotions): VADER's compound valence times the emotion's ``valence``, plus the share of the
    text's words in the emotion's NRC category."""
    vader, nrc = _lexicons()
    out = np.zeros((len(texts), len(emotions)))
    for i, text in enumerate(texts):
        compound = vader.polarity_scores(text)["compound"]
        words = re.findall(r"[a-z']+", text.lower())
        counts: dict[str, int] = {}
        for word in words:
            for category in nrc.get(word, ()):
                counts[category] = counts.get(category, 0) + 1
        for e, name in enumerate(emotions):
            share = counts.get(NRC_CATEGORY.get(name, ""), 0) / max(len(words), 1)
            out[i, e] = float(valence.get(name, 0.0)) * compound + share
    return out


@lru_cache(maxsize=1)
def _lexicons() -> tuple[Any, dict[str, list[str]]]:
    """VADER's analyser and NRC's word -> categories table, both shipped inside their wheels."""
    import json

    from steerlab.core.extras import require

    require("lexicon", "the lexicon reader")
    from importlib.resources import files

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    nrc = json.loads(files("nrclex").joinpath("data", "nrc_en.json").read_text(encoding="utf-8"))
    return SentimentIntensityAnalyzer(), nrc
