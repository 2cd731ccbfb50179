"""Baseline against steered: generate both, re-read both replies with the clean model, record ‖Δx‖.

``steerlab steer`` and the examples get whole comparisons from :func:`compare`; replies are read the
way the suites read them (:func:`readers.read_replies`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steerlab.core.checks import check_prompts as check_prompts  # re-exported: its home is checks
from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.chat import prompt_text
from steerlab.model.models import LoadedModel
from steerlab.read.gate import Gate, GateDecision, TokenGate, fired_rows, gated, read_gate, token_gated
from steerlab.read.readers import ReplyReadings, get_reader, read_replies
from steerlab.steer.edits import Edit, build_edits
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.steer.interventions import Displacement, Positions


@dataclass(frozen=True)
class Comparison:
    """One prompt (and sample) at one strength: both replies, their readings, the displacement."""

    prompt: str
    sample: int
    alpha: float  # strength of the first added emotion (0 when nothing is added)
    layers: tuple[int, ...]
    displacement: float  # mean ‖Δx‖ per edited token and layer while generating
    baseline: str
    steered: str
    baseline_scores: np.ndarray  # (emotions,) nan for an empty or incoherent reply
    steered_scores: np.ndarray
    baseline_incoherent: bool = False  # too broken to read (readers.incoherent): counted, not scored
    steered_incoherent: bool = False
    gate: GateDecision | None = None  # the message gate's decision for this prompt (None: always on)
    token_gate: tuple[int, int] | None = None  # running gate: (tokens edited, tokens of the reply it read)

    def to_json(self, emotions: Sequence[str]) -> dict[str, Any]:
        def side(text: str, row: np.ndarray, broken: bool) -> dict[str, Any]:
            empty = not text.strip()
            return {
                "text": text,
                "empty": empty,
                "incoherent": broken,
                "scores": None
                if empty or broken
                else {e: None if np.isnan(s) else round(float(s), 4) for e, s in zip(emotions, row, strict=True)},
            }

        out: dict[str, Any] = {
            "prompt": self.prompt,
            "sample": self.sample,
            "alpha": self.alpha,
            "layers": list(self.layers),
            "displacement": round(self.displacement, 3),
            "baseline": side(self.baseline, self.baseline_scores, self.baseline_incoherent),
            "steered": side(self.steered, self.steered_scores, self.steered_incoherent),
        }
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        if self.token_gate is not None:
            out["token_gate"] = {"edited_tokens": self.token_gate[0], "read_tokens": self.token_gate[1]}
        return out


def compare(
    lm: LoadedModel,
    vectors: EmotionVectors,
    prompts: Sequence[str],
    *,
    add: Mapping[str, float] | None = None,
    ablate: Sequence[str] = (),
    clamp: Mapping[str, float] | None = None,
    sweep: Sequence[float] = (),
    layers: Sequence[int] | None = None,
    positions: Positions = "all",
    config: GenerationConfig | None = None,
    samples: int = 1,
    reader: str | None = None,
    reader_layer: int | None = None,
    note: Callable[[str], None] | None = None,
    gate: Gate | None = None,
    token_gate: TokenGate | None = None,
) -> list[Comparison]:
    """Steered replies beside the baseline for every prompt, sample and strength.

    ``add`` maps emotions to alphas; a ``sweep`` runs once per value with that alpha for every added
    emotion. Edits default to the steering layer, readings to the file's reader and reading layer.
    ``gate`` edits only the prompts whose user turn it fires on (the others' replies are the baseline's,
    token for token); ``token_gate`` switches the edit per position (:mod:`steerlab.read.gate`).
    Every input is checked before anything is generated.
    """
    say = note or (lambda _: None)
    config = config or GenerationConfig()
    check_prompts(prompts)
    if samples < 1:
        raise SteerlabError(f"samples {samples} must be >= 1")
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    at = vectors.layers_for_steering(layers)
    if reader_layer is not None:
        vectors.check_layer(reader_layer, "reader layer")
    get_reader(reader or vectors.default_reader)  # an unknown or uninstalled reader fails before generating
    conditions = _conditions(vectors, at, add, ablate, clamp, sweep, token_gate)
    _check_lengths(lm, prompts, config)
    if samples > 1 and config.temperature == 0:
        say(f"warning: {samples} samples at temperature 0 are identical (greedy): set a temperature > 0")
    expanded = [p for p in prompts for _ in range(samples)]
    decisions = None
    if gate is not None:
        decisions, conditions = _gated(lm, vectors, gate, prompts, samples, conditions, say)
    say(f"baseline: {len(expanded)} repl{'y' if len(expanded) == 1 else 'ies'}")
    base = generate(lm, expanded, config)
    base_read = read_replies(lm, vectors, base, expanded, config.chat, reader, reader_layer)
    out = []
    for k, (alpha, edits) in enumerate(conditions):
        what = f"alpha {alpha:g}" if add else "edit"
        say(f"steered {k + 1}/{len(conditions)}: {what} at layers {at}, positions {positions}")
        moved = Displacement()
        steered = generate(lm, expanded, config, edits, positions, record=moved)
        read = read_replies(lm, vectors, steered, expanded, config.chat, reader, reader_layer)
        replies = _Replies(expanded, base, base_read, steered, read, moved, decisions)
        out += [_comparison(lm, replies, i, samples, alpha, at, token_gate is not None) for i in range(len(expanded))]
    return out


def _conditions(
    vectors: EmotionVectors,
    at: list[int],
    add: Mapping[str, float] | None,
    ablate: Sequence[str],
    clamp: Mapping[str, float] | None,
    sweep: Sequence[float],
    token_gate: TokenGate | None,
) -> list[tuple[float, list[Edit]]]:
    """One (alpha, edits) per strength: every value of ``sweep`` for every added emotion, else ``add`` as given."""
    strengths = list(sweep) or [next(iter((add or {}).values()), 0.0)]
    conditions: list[tuple[float, list[Edit]]] = []
    for alpha in strengths:
        amounts = {e: alpha for e in add or {}} if sweep else dict(add or {})
        edits = build_edits(vectors, at, add=amounts, ablate=ablate, clamp=clamp, label="steered")
        conditions.append((alpha, token_gated(vectors, edits, token_gate) if token_gate and edits else edits))
    if not any(edits for _, edits in conditions):
        raise SteerlabError("nothing to steer: add, ablate or clamp at least one emotion")
    return conditions


def _gated(
    lm: LoadedModel,
    vectors: EmotionVectors,
    gate: Gate,
    prompts: Sequence[str],
    samples: int,
    conditions: list[tuple[float, list[Edit]]],
    say: Callable[[str], None],
) -> tuple[list[GateDecision], list[tuple[float, list[Edit]]]]:
    """The gate's decision per prompt, and the edits restricted to the rows it fired on."""
    decisions = read_gate(lm, vectors, gate, prompts)
    fired = sum(d.fired for d in decisions)
    say(f"gate {gate.emotion} > {gate.threshold:.4g} ({gate.source}): fired on {fired} of {len(prompts)} prompts")
    rows = fired_rows(decisions, samples)
    return decisions, [(alpha, gated(edits, rows)) for alpha, edits in conditions]


def _check_lengths(lm: LoadedModel, prompts: Sequence[str], config: GenerationConfig) -> None:
    """Every prompt, with the reply it asks for, fits in the model's context."""
    for i, p in enumerate(prompts):
        text = prompt_text(lm.tokenizer, p, config.chat, config.frame)
        lm.check_length(len(lm.tokenizer(text)["input_ids"]), f"prompt {i + 1}", extra=config.max_new_tokens)


@dataclass(frozen=True)
class _Replies:
    """Both generations of one strength, row by row (``prompts`` repeated per sample)."""

    prompts: list[str]
    base: list[str]
    base_read: ReplyReadings
    steered: list[str]
    read: ReplyReadings
    moved: Displacement
    decisions: list[GateDecision] | None


def _comparison(
    lm: LoadedModel, r: _Replies, i: int, samples: int, alpha: float, at: list[int], count_edited: bool
) -> Comparison:
    decision = r.decisions[i // samples] if r.decisions is not None else None
    return Comparison(
        r.prompts[i],
        i % samples,
        alpha,
        tuple(at),
        r.moved.mean("steered") if decision is None or decision.fired else 0.0,
        r.base[i],
        r.steered[i],
        r.base_read.scores[i],
        r.read.scores[i],
        bool(r.base_read.incoherent[i]),
        bool(r.read.incoherent[i]),
        decision,
        edited_tokens(lm, r.moved, i, r.steered[i]) if count_edited else None,
    )


def edited_tokens(lm: LoadedModel, record: Displacement, row: int, reply: str) -> tuple[int, int]:
    """(tokens edited, tokens read) by a running gate over the reply's own generated tokens (a token is
    read when the model reads it back to write the next one; padding after the reply is not counted)."""
    n = len(lm.tokenizer(reply, add_special_tokens=False)["input_ids"]) if reply else 0
    flags = record.gated.get(row, [])[:n]
    return sum(flags), len(flags)
