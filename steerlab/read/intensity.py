"""Intensity scales: does an emotion's reading rise (or fall) along a graded series of prompts?

Each scale is one template with a slot filled by ordered values (1 day, 3 days, 2 weeks, ...); every
prompt is read at three readout points (``POINTS``: the mean over the user's message, its last token,
and the response-preparation token) and each expected emotion's score is correlated (Spearman) with
the position along the scale. The shipped scales are package data
(``steerlab/data/intensity_scales.json``); EmotionScope's format is read too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steerlab.core.corpus import data_path
from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.activations import pad_batch, token_activations
from steerlab.model.chat import format_chat
from steerlab.model.models import LoadedModel
from steerlab.read.probes import correlate

SCALES = "intensity_scales.json"
POINTS = {
    "user_mean": "mean score over the tokens of the user's message",
    "user_last": "the last token of the user's message",
    "prep": "the response-preparation token: the prompt's last token, right before the reply",
}
STRONG = 0.7  # |rho| that counts as tracking a scale
_TRANSCRIPT = re.compile(r"^\s*(?:User|Human)\s*:\s*(.*?)\s*(?:Assistant|AI)\s*:\s*$", re.DOTALL)


@dataclass(frozen=True)
class Scale:
    name: str
    template: str  # with one "{x}" slot
    values: tuple[str, ...]  # in the order along which the expected relations hold
    expect: dict[str, int]  # emotion -> +1 (rises along values) / -1 (falls)
    is_message: bool  # True: template is a user message (steerlab); False: a full prompt (EmotionScope)

    def prompt(self, lm: LoadedModel, value: str) -> tuple[str, tuple[int, int]]:
        """The prompt for one value and the character span of the user's message in it."""
        text = self.template.replace("{x}", value)
        if self.is_message:
            chat = format_chat(lm.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True)
            return chat.text, (chat.turns[0].start, chat.turns[0].end)
        match = _TRANSCRIPT.match(text)  # a plain "User: ... Assistant:" transcript; else all of it
        return text, match.span(1) if match else (0, len(text))


def load_scales(path: str | Path | None = None) -> list[Scale]:
    """Intensity scales: steerlab's format ({"scales": [{name, template "{x}", values, expect}]}) or
    EmotionScope's ({name: {template "{value}", values, expected_increasing, expected_decreasing}})."""
    path = Path(path) if path else data_path(SCALES)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SteerlabError(f"cannot read scales file {str(path)!r} ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise SteerlabError(f"{path}: malformed JSON at line {err.lineno} ({err.msg})") from None
    out = []
    try:
        if isinstance(obj, dict) and isinstance(obj.get("scales"), list):
            for s in obj["scales"]:
                expect = {e: {"+": 1, "-": -1}[sign] for e, sign in s["expect"].items()}
                out.append(Scale(s["name"], s["template"], tuple(map(str, s["values"])), expect, True))
        elif isinstance(obj, dict):
            for name, s in obj.items():
                expect = {
                    **{e: 1 for e in s.get("expected_increasing", [])},
                    **{e: -1 for e in s.get("expected_decreasing", [])},
                }
                out.append(
                    Scale(name, s["template"].replace("{value}", "{x}"), tuple(map(str, s["values"])), expect, False)
                )
        else:
            raise TypeError("top level must be an object")
    except (KeyError, TypeError, AttributeError) as err:
        raise SteerlabError(
            f"{path}: not a scales file ({err!r}): "
            'expected {"scales": [{name, template with {x}, values, expect}]}'
        ) from None
    bad = [s.name for s in out if "{x}" not in s.template or len(s.values) < 3 or not s.expect]
    if bad or not out:
        raise SteerlabError(
            f"{path}: scales {bad or '(none)'} need a template with {{x}}, >= 3 values and expectations"
        )
    return out


@dataclass(frozen=True)
class IntensityRow:
    point: str  # a key of POINTS
    scale: str
    emotion: str
    expected: int  # +1 / -1
    rho: float  # Spearman rho between position along the values and the score at ``point``
    p: float
    n: int

    @property
    def agrees(self) -> bool:
        return bool(np.isfinite(self.rho) and np.sign(self.rho) == self.expected)


@dataclass(frozen=True)
class Intensity:
    layer: int
    rows: list[IntensityRow]
    curves: dict[str, dict[str, tuple[tuple[str, ...], dict[str, np.ndarray]]]]  # point -> scale -> (values, scores)
    skipped: tuple[str, ...]  # "scale:emotion" pairs whose emotion the vectors lack

    def summary(self, point: str = "prep") -> dict[str, float]:
        ok = [r for r in self.rows if r.point == point and np.isfinite(r.rho)]
        return {
            "relations": len(ok),
            "right_sign": sum(r.agrees for r in ok),
            "strong_right": sum(r.agrees and abs(r.rho) >= STRONG for r in ok),
            "significant_right": sum(r.agrees and r.p < 0.05 for r in ok),
            "significant_wrong": sum((not r.agrees) and r.p < 0.05 for r in ok),
            "mean_signed_rho": float(np.mean([r.rho * r.expected for r in ok])) if ok else float("nan"),
        }

    def summaries(self) -> dict[str, dict[str, float]]:
        return {point: self.summary(point) for point in POINTS}


def intensity(
    lm: LoadedModel, vectors: EmotionVectors, scales: Sequence[Scale], layer: int | None = None, batch_size: int = 16
) -> Intensity:
    """Read every scale prompt at ``layer`` (default: the reading layer) at each readout point of
    ``POINTS`` and correlate each expected emotion's score with the position along the scale."""
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    layer = vectors.check_layer(vectors.layer_for_reading(layer), "layer")
    rows: list[IntensityRow] = []
    curves: dict[str, dict[str, tuple[tuple[str, ...], dict[str, np.ndarray]]]] = {p: {} for p in POINTS}
    skipped = []
    for scale in scales:
        points: dict[str, list[np.ndarray]] = {p: [] for p in POINTS}
        for lo in range(0, len(scale.values), batch_size):
            prompts = [scale.prompt(lm, v) for v in scale.values[lo : lo + batch_size]]
            encs = [lm.tokenizer(text, return_offsets_mapping=True) for text, _ in prompts]
            acts = token_activations(lm, pad_batch(lm, [list(e["input_ids"]) for e in encs]), [layer])[layer]
            for row, (enc, (_, (start, end))) in enumerate(zip(encs, prompts, strict=True)):
                n = len(enc["input_ids"])
                scores = vectors.read(acts[row, acts.shape[1] - n :], layer).numpy()  # left padded
                user = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
                user = user or list(range(n))
                points["user_mean"].append(scores[user].mean(axis=0))
                points["user_last"].append(scores[user[-1]])
                points["prep"].append(scores[-1])
        for emotion, sign in scale.expect.items():
            if emotion not in vectors.emotions:
                skipped.append(f"{scale.name}:{emotion}")
                continue
            for point, per_value in points.items():
                ys = np.stack(per_value)[:, vectors.emotions.index(emotion)]
                curves[point].setdefault(scale.name, (scale.values, {}))[1][emotion] = ys
                c = correlate(np.arange(len(ys)), ys, spearman=True)
                rows.append(IntensityRow(point, scale.name, emotion, sign, c.r, c.p, c.n))
    return Intensity(layer, rows, curves, tuple(skipped))
