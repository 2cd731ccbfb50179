"""Gates: steer only when the model's own reading says so (conditional steering, CAST-style).

A message gate (:class:`Gate`, ``steer --when desperate``) reads each prompt as the user's turn of a
conversation (:func:`user_turn.user_turn_features`, ``turn`` readout: the mean over the message's own
tokens) with the vector file's validated reader at its reading layer, and lets the edit act on that
prompt's row only when the reading of the gate's emotion exceeds the threshold. A row whose gate does
not fire runs through the same batched generation with no edit, so its reply is the baseline's, token
for token.

A token gate (:class:`TokenGate`, ``--when-token desperate``) reads every position at the intervention
site (the edited layer, before the edit) with the same reader and edits exactly the positions whose
reading exceeds its threshold, so the edit switches on and off while the reply is written.

Default thresholds are calibrated, never guessed (:func:`calibrate_gates`): on labelled user messages
that no fit has seen (package data ``gate_messages.jsonl``), the threshold is the reading exceeded by
at most ``fpr`` (5 %) of the *neutral* messages (:func:`threshold_at`); the token threshold likewise on
the neutral messages' tokens at the steering layer. Both are stored with their provenance in the file's
metadata (``meta["gates"][emotion]``), written by ``extract`` and ``calibrate-gate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from steerlab.core.checks import calibrated_gate, parse_when
from steerlab.core.corpus import NEUTRAL
from steerlab.core.errors import InterventionError, SteerlabError
from steerlab.read.gate_thresholds import GATE_FPR, GATE_MESSAGES, GateMessages, load_gate_messages, threshold_at
from steerlab.read.readers import READERS, get_reader, readable
from steerlab.read.user_turn import user_turn_features, user_turn_tokens_at
from steerlab.steer.edits import Edit, TokenRule

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel
    from steerlab.steer.generation import GenerationConfig
    from steerlab.steer.interventions import Displacement, Positions

GATE_READOUT = "turn"  # the user's turn is pooled over the message's own tokens (see the module doc)
GATE_RULE = (
    "threshold = the reading of the emotion on the user's turn (the file's default reader at its reading layer, "
    "mean over the message's tokens) exceeded by at most {fpr:.0%} of the neutral calibration messages; token "
    "threshold = the same reader at the steering layer, exceeded by at most {fpr:.0%} of the neutral messages' "
    "tokens; desperate/other labelled messages are used only to report the hit rate"
)


@dataclass(frozen=True)
class Gate:
    """Edit a prompt only when its user turn reads ``emotion`` above ``threshold``."""

    emotion: str
    threshold: float  # fires when the reading is strictly greater
    reader: str  # the reader the threshold is in the units of
    layer: int  # the layer the user's turn is read at
    source: Literal["calibrated", "given"] = "calibrated"  # the file's threshold, or one given (--when e>x)


@dataclass(frozen=True)
class TokenGate:
    """Edit a position only when its own reading at the edited layer is above ``threshold``."""

    emotion: str
    threshold: float
    reader: str
    layer: int | None = None  # the site the threshold was calibrated at (None: a given threshold, any site)
    source: Literal["calibrated", "given"] = "calibrated"


@dataclass(frozen=True)
class GateDecision:
    fired: bool
    reading: float
    threshold: float

    def to_json(self) -> dict[str, Any]:
        return {"fired": self.fired, "reading": round(self.reading, 4), "threshold": round(self.threshold, 4)}


def calibrated(vectors: EmotionVectors, emotion: str, option: str = "--when") -> dict[str, Any]:
    """The file's calibration record for ``emotion``; none is a one-line error naming the fix."""
    return dict(calibrated_gate(vectors.meta, vectors.name(emotion), option))


def gate_for(vectors: EmotionVectors, spec: str) -> Gate:
    """The message gate ``--when spec`` asks for: the calibrated reader, layer and threshold, or the
    given threshold in the units of the file's calibrated reader (its default reader when uncalibrated)."""
    emotion, given = parse_when(spec)
    name = vectors.name(emotion)
    if given is None:
        rec = calibrated(vectors, name)
        return Gate(name, float(rec["threshold"]), str(rec["reader"]), int(rec["layer"]))
    rec = (vectors.meta.get("gates") or {}).get(name) or {}
    reader = str(rec.get("reader", vectors.default_reader))
    layer = int(vectors.layer_for_reading(rec.get("layer")))
    return Gate(name, given, check_gate_reader(vectors, reader, name), layer, "given")


def token_gate_for(vectors: EmotionVectors, spec: str) -> TokenGate:
    """The running gate ``--when-token spec`` asks for (see :func:`gate_for`)."""
    emotion, given = parse_when(spec, "--when-token")
    name = vectors.name(emotion)
    if given is None:
        rec = calibrated(vectors, name, "--when-token")
        return TokenGate(name, float(rec["token_threshold"]), str(rec["reader"]), int(rec["token_layer"]))
    reader = str(((vectors.meta.get("gates") or {}).get(name) or {}).get("reader", vectors.default_reader))
    return TokenGate(name, given, check_gate_reader(vectors, reader, name), None, "given")


def check_gate_reader(vectors: EmotionVectors, reader: str, emotion: str) -> str:
    """A gate reads activations: a reader of the residual stream that scores ``emotion``."""
    if not get_reader(reader).layered:
        reader = "vector"  # the words-only lexicon cannot read a position: gate with the directions
    if emotion not in readable(vectors, reader):
        reader = "vector"
    return reader


def read_gate(lm: LoadedModel, vectors: EmotionVectors, gate: Gate, prompts: Sequence[str]) -> list[GateDecision]:
    """The gate's decision for every prompt: its reading of the user's turn against the threshold."""
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    layer = vectors.check_layer(gate.layer, "gate layer")
    feats = user_turn_features(lm, prompts, [layer], vectors.skip_tokens)[GATE_READOUT][:, 0]
    scores = READERS[gate.reader].score(vectors, feats, list(prompts), layer)[:, vectors.index(gate.emotion)]
    return [GateDecision(bool(s > gate.threshold), float(s), gate.threshold) for s in scores]


def fired_rows(decisions: Sequence[GateDecision], samples: int = 1) -> tuple[int, ...]:
    """Rows (prompt-major, ``samples`` per prompt, as ``compare`` expands them) whose gate fired."""
    return tuple(i * samples + k for i, d in enumerate(decisions) if d.fired for k in range(samples))


def gated(edits: Sequence[Edit], rows: tuple[int, ...]) -> list[Edit]:
    """``edits`` limited to ``rows`` of the prompts of a ``generate`` call (the rows whose gate fired)."""
    return [replace(e, rows=rows if e.rows is None else tuple(r for r in e.rows if r in rows)) for e in edits]


def generate_gated(
    lm: LoadedModel,
    vectors: EmotionVectors,
    gate: Gate,
    prompts: Sequence[str],
    config: GenerationConfig,
    edits: Sequence[Edit],
    positions: Positions = "all",
    record: Displacement | None = None,
) -> tuple[list[str], list[GateDecision]]:
    """Replies with ``edits`` acting only on the prompts ``gate`` fires on (the others' replies are what
    ``generate(lm, prompts, config)`` writes, token for token), and the gate's decisions."""
    from steerlab.steer.generation import generate

    decisions = read_gate(lm, vectors, gate, prompts)
    return generate(lm, prompts, config, gated(edits, fired_rows(decisions)), positions, record), decisions


def token_rule(vectors: EmotionVectors, gate: TokenGate, layer: int) -> TokenRule:
    """The per-position test of a token gate at edited layer ``layer``."""
    score = READERS[gate.reader].score
    column = vectors.index(gate.emotion)

    def read(x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().float().reshape(-1, x.shape[-1]).cpu().numpy()
        out = score(vectors, flat, [], layer)[:, column]
        return torch.from_numpy(np.ascontiguousarray(out)).reshape(x.shape[:-1]).to(x.device)

    return TokenRule(gate.threshold, read, gate.emotion)


def token_gated(vectors: EmotionVectors, edits: Sequence[Edit], gate: TokenGate) -> list[Edit]:
    """``edits`` switched per position by ``gate``; the running gate reads at one intervention site."""
    layers = sorted({e.layer for e in edits})
    if len(layers) != 1:
        raise InterventionError(
            f"--when-token reads at the intervention site, but the edits act at layers {layers}: edit one layer"
        )
    if gate.layer is not None and gate.layer != layers[0]:
        raise InterventionError(
            f"--when-token {gate.emotion}: its threshold was calibrated at layer {gate.layer}, the edit acts at "
            f"layer {layers[0]}: edit layer {gate.layer}, or give a threshold ('{gate.emotion}>0.1')"
        )
    rule = token_rule(vectors, gate, layers[0])
    return [replace(e, when=rule) for e in edits]


# --- calibration ------------------------------------------------------------------------------------


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive reads above a negative), ties counted half (the Mann-Whitney AUROC)."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def calibrate_gates(
    lm: LoadedModel,
    vectors: EmotionVectors,
    messages: GateMessages | None = None,
    fpr: float = GATE_FPR,
    note: Callable[[str], None] | None = None,
) -> EmotionVectors:
    """``vectors`` with a calibrated gate for every labelled emotion of ``messages`` it has (see the module
    doc); an emotion it lacks is skipped with a note. Nothing else in the file changes."""
    from steerlab import __version__

    msgs = messages or load_gate_messages()
    labels = np.array(msgs.labels)
    emotions = sorted({lab for lab in msgs.labels if lab != NEUTRAL and lab in vectors.emotions})
    skipped = sorted({lab for lab in msgs.labels if lab != NEUTRAL and lab not in vectors.emotions})
    if skipped and note:
        note(f"gate calibration: {', '.join(skipped)} not in the vector file, skipped")
    neutral = labels == NEUTRAL
    if not emotions or neutral.sum() < 20:
        raise SteerlabError(
            f"{msgs.source}: {int(neutral.sum())} neutral messages and labels {sorted(set(msgs.labels))}: calibrating "
            f"a gate needs >= 20 neutral messages and messages labelled with an emotion of the file"
        )
    reader, layer, site = vectors.default_reader, vectors.reading_layer, vectors.steering_layer
    reader = check_gate_reader(vectors, reader, emotions[0])
    layers = sorted({layer, site})
    feats = user_turn_features(lm, msgs.texts, layers, vectors.skip_tokens)[GATE_READOUT]
    tokens = user_turn_tokens_at(lm, [t for t, n in zip(msgs.texts, neutral, strict=True) if n], site)
    gates = dict(vectors.meta.get("gates") or {})
    for emotion in emotions:
        col = vectors.index(emotion)
        read = READERS[check_gate_reader(vectors, reader, emotion)].score
        scores = read(vectors, feats[:, layers.index(layer)], msgs.texts, layer)[:, col]
        threshold = threshold_at(scores[neutral], fpr)
        token_threshold = threshold_at(read(vectors, tokens, [], site)[:, col], fpr)
        pos = scores[labels == emotion]
        gates[emotion] = {
            "threshold": threshold,
            "token_threshold": token_threshold,
            "reader": check_gate_reader(vectors, reader, emotion),
            "layer": layer,
            "token_layer": site,
            "readout": GATE_READOUT,
            "fpr": fpr,
            "rule": GATE_RULE.format(fpr=fpr),
            "messages": msgs.source,
            "sha256": msgs.sha256,
            "n_positive": int(pos.size),
            "n_neutral": int(neutral.sum()),
            "n_neutral_tokens": int(tokens.shape[0]),
            "calibration_hit_rate": round(float((pos > threshold).mean()), 4) if pos.size else None,
            "calibration_false_alarm_rate": round(float((scores[neutral] > threshold).mean()), 4),
            "calibration_auroc": round(_auroc(pos, scores[neutral]), 4) if pos.size else None,
            "steerlab_version": __version__,
        }
    return replace(vectors, meta={**vectors.meta, "gates": gates})


def default_gates(
    lm: LoadedModel, vectors: EmotionVectors, note: Callable[[str], None] | None = None
) -> EmotionVectors:
    """``vectors`` with gates calibrated on the built-in messages (``extract`` calls it), or an empty
    record and a note when the file has none of their emotions."""
    msgs = load_gate_messages()
    if not any(lab != NEUTRAL and lab in vectors.emotions for lab in msgs.labels):
        why = f"no gate calibrated: {msgs.source} labels none of the file's emotions; use `steerlab calibrate-gate`"
        return replace(vectors, meta={**vectors.meta, "gates": {}, "gate_note": why})
    return calibrate_gates(lm, vectors, msgs, note=note)


def refresh_gates(
    lm: LoadedModel, vectors: EmotionVectors, note: Callable[[str], None] | None = None
) -> EmotionVectors:
    """After the file's reader changed (``fit-reader``): gates calibrated on the built-in messages are
    calibrated again; others are dropped (their messages are not at hand) with a note naming the fix."""
    say = note or (lambda _: None)
    gates = dict(vectors.meta.get("gates") or {})
    builtin = f"builtin:{GATE_MESSAGES}"
    dropped = sorted(e for e, g in gates.items() if g.get("messages") != builtin)
    if dropped:
        say(
            f"gates for {', '.join(dropped)} dropped (reader changed): run `steerlab calibrate-gate --messages M.jsonl`"
        )
    kept = {e: g for e, g in gates.items() if e not in dropped}
    bare = replace(vectors, meta={**vectors.meta, "gates": {}})
    if not kept:
        return bare if gates else vectors
    fpr = float(next(iter(kept.values())).get("fpr", GATE_FPR))
    return calibrate_gates(lm, bare, load_gate_messages(), fpr, note)
