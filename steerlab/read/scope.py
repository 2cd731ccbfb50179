"""Read emotions token by token in text and conversations.

How scores are made comparable across texts: every score is the cosine of the *centred* activation
(activation minus the training grand mean at that layer, ``EmotionVectors.read``) with a unit emotion
direction. Cosine ignores the norm of a position, so scores from short and long texts, early and late
tokens, sit on one scale in [-1, 1]. The noise floor is the same cosine for seeded random unit
directions: a score inside it carries no evidence. Layers default to the vectors' reading layer.

Readout points of a conversation (the three the literature uses):

* ``user_last``  the last token of the last user turn before the reply;
* ``prep``       the response-preparation token: the last token of the prompt formatted with the
                 generation prompt (``Assistant:`` in a plain transcript, ``<start_of_turn>model\\n``
                 with a chat template), right before the reply begins;
* ``reply``      the mean over the tokens of the assistant's reply (the last assistant turn).

The analyses built on these readings live beside it: ``dual_speaker``, ``geometry``, ``intensity``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerlab.core.errors import SteerlabError
from steerlab.core.vectors import EmotionVectors, cosine
from steerlab.model.activations import pad_batch, token_activations
from steerlab.model.chat import ChatText, check_messages, format_chat, token_roles
from steerlab.model.models import LoadedModel
from steerlab.steer.edits import random_direction
from steerlab.steer.generation import GenerationConfig, clean_reply, generate

Messages = list[dict[str, str]]
READOUTS = ("user_last", "prep", "reply")


@dataclass(frozen=True)
class ScopeConfig:
    layers: tuple[int, ...] = ()  # layers to read; empty = the vectors' reading layer
    n_random: int = 64  # seeded random unit directions that make the noise floor
    seed: int = 0  # seed of the random directions
    max_tokens: int = 0  # refuse longer texts; 0 = the model's context length


@dataclass(frozen=True)
class Reading:
    """Per-token emotion scores of one text or conversation, aligned one-to-one with ``tokens``."""

    text: str  # what the model read (the formatted conversation for chats)
    template: str  # "text", "plain" (User:/Assistant: transcript) or "chat_template"
    tokens: tuple[str, ...]  # decoded tokens; BOS is dropped, everything else the model saw is kept
    offsets: tuple[tuple[int, int], ...]  # character span of each token in ``text``
    roles: tuple[str, ...]  # speaker of each token: user/assistant/system, "template", or "text"
    turns: tuple[int, ...]  # index of the message each token belongs to; -1 outside any message
    turn_roles: tuple[str, ...]  # role of each message
    emotions: tuple[str, ...]
    layers: tuple[int, ...]
    scores: np.ndarray  # (layers, tokens, emotions) cosine of centred activation with each direction
    noise_floor: np.ndarray  # (layers,) 95th percentile of |cosine| of random directions on these tokens
    points: dict[str, tuple[int, ...]] = field(default_factory=dict)  # readout name -> token positions

    def layer_scores(self, layer: int | None = None) -> np.ndarray:
        """(tokens, emotions) at ``layer`` (default: the first layer read)."""
        if layer is None:
            return self.scores[0]
        if layer not in self.layers:
            raise SteerlabError(f"layer {layer} was not read: read layers are {list(self.layers)}")
        return self.scores[self.layers.index(layer)]

    def readout(self, name: str, layer: int | None = None) -> np.ndarray:
        """Mean scores (emotions,) over the positions of readout point ``name``."""
        if name not in self.points:
            raise SteerlabError(f"readout {name!r} is not available here: available are {', '.join(self.points)}")
        return self.layer_scores(layer)[list(self.points[name])].mean(axis=0)

    def turn_means(self, layer: int | None = None) -> list[tuple[int, str, np.ndarray]]:
        """(message index, role, mean scores) for every message, in order."""
        s, turns = self.layer_scores(layer), np.array(self.turns)
        return [(i, role, s[turns == i].mean(axis=0)) for i, role in enumerate(self.turn_roles) if (turns == i).any()]

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "template": self.template,
            "emotions": list(self.emotions),
            "layers": list(self.layers),
            "score": "cosine of (activation - center[layer]) with each unit direction",
            "noise_floor": {str(la): round(float(f), 4) for la, f in zip(self.layers, self.noise_floor, strict=True)},
            "points": {k: list(v) for k, v in self.points.items()},
            "readouts": {str(la): {k: _rounded(self.readout(k, la)) for k in self.points} for la in self.layers},
            "turns": [
                {"turn": i, "role": role, "scores": dict(zip(map(str, self.layers), map(_rounded, means), strict=True))}
                for i, role, *means in _zip_turns(self)
            ],
            "tokens": [
                {
                    "position": p,
                    "token": tok,
                    "offset": list(self.offsets[p]),
                    "role": self.roles[p],
                    "turn": self.turns[p],
                    "scores": {str(la): _rounded(self.scores[li, p]) for li, la in enumerate(self.layers)},
                }
                for p, tok in enumerate(self.tokens)
            ],
        }


def _rounded(v: np.ndarray) -> list[float]:
    return [round(float(x), 4) for x in v]


def _zip_turns(r: Reading) -> list[tuple[Any, ...]]:
    per_layer = [r.turn_means(la) for la in r.layers]
    return [(i, role, *[pl[k][2] for pl in per_layer]) for k, (i, role, _) in enumerate(per_layer[0])]


# --- reading ----------------------------------------------------------------------------------


def _layers(vectors: EmotionVectors, config: ScopeConfig) -> tuple[int, ...]:
    layers = config.layers or (vectors.layer_for_reading(),)
    return tuple(dict.fromkeys(vectors.check_layer(layer, "layer") for layer in layers))


def _noise_floor(acts: torch.Tensor, vectors: EmotionVectors, layer: int, config: ScopeConfig) -> float:
    """95th percentile of |cosine| between centred activations (tokens, hidden) and random directions."""
    rand = torch.stack([random_direction(vectors.hidden_size, config.seed + i) for i in range(config.n_random)])
    return float(np.percentile(cosine(acts, vectors.center[layer], rand).abs().numpy(), 95))


def _read(
    lm: LoadedModel, vectors: EmotionVectors, text: str, config: ScopeConfig
) -> tuple[list[str], list[tuple[int, int]], np.ndarray, np.ndarray, tuple[int, ...]]:
    """Tokens (BOS dropped), offsets, scores (layers, tokens, E) and noise floor (layers,)."""
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    if not text.strip():
        raise SteerlabError("empty text: give some text to read")
    layers = _layers(vectors, config)
    enc = lm.tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    limit = config.max_tokens or lm.context_length
    if len(ids) > limit:
        raise SteerlabError(
            f"the text is {len(ids)} tokens, longer than the limit of {limit} (the model's context): "
            "refusing rather than reading a truncated text; shorten it or split the conversation"
        )
    acts = token_activations(lm, pad_batch(lm, [ids]), layers)
    keep = 1 if ids and ids[0] == lm.tokenizer.bos_token_id else 0
    scores = np.stack([vectors.read(acts[la][0, keep:], la).numpy() for la in layers])
    floor = np.array([_noise_floor(acts[la][0, keep:], vectors, la, config) for la in layers])
    tokens = [lm.tokenizer.decode([i]) for i in ids[keep:]]
    return tokens, offsets[keep:], scores, floor, layers  # type: ignore[return-value]


def read_text(lm: LoadedModel, vectors: EmotionVectors, text: str, config: ScopeConfig = ScopeConfig()) -> Reading:
    """Read plain text token by token; readout points are ``last`` (final token) and ``mean``."""
    tokens, offsets, scores, floor, layers = _read(lm, vectors, text, config)
    n = len(tokens)
    return Reading(
        text,
        "text",
        tuple(tokens),
        tuple(offsets),
        ("text",) * n,
        (0,) * n,
        ("text",),
        vectors.emotions,
        layers,
        scores,
        floor,
        {"last": (n - 1,), "mean": tuple(range(n))},
    )


def token_turns(chat: ChatText, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Index of the message each token falls in (by character offsets); -1 for template tokens."""
    out = []
    for start, end in offsets:
        hit = [i for i, t in enumerate(chat.turns) if end > start and start < t.end and end > t.start]
        out.append(hit[0] if hit else -1)
    return out


def read_conversation(
    lm: LoadedModel, vectors: EmotionVectors, messages: Sequence[dict[str, str]], config: ScopeConfig = ScopeConfig()
) -> Reading:
    """Read a conversation; one ending in a user turn gets the generation prompt, so ``prep`` exists."""
    msgs = check_messages(list(messages))
    open_ended = msgs[-1]["role"] == "user"
    chat = format_chat(lm.tokenizer, msgs, add_generation_prompt=open_ended)
    tokens, offsets, scores, floor, layers = _read(lm, vectors, chat.text, config)
    roles, turns = token_roles(chat, offsets), token_turns(chat, offsets)
    points: dict[str, tuple[int, ...]] = {}
    prep = response_position(lm, msgs, chat, offsets)
    if prep is not None:
        points["prep"] = (prep,)
        users = [p for p in range(prep) if roles[p] == "user"]
        if users:
            points["user_last"] = (users[-1],)
        if not open_ended:
            reply = [p for p in range(len(tokens)) if turns[p] == len(msgs) - 1]
            if reply:
                points["reply"] = tuple(reply)
    return Reading(
        chat.text,
        chat.template,
        tuple(tokens),
        tuple(offsets),
        tuple(roles),
        tuple(turns),
        tuple(m["role"] for m in msgs),
        vectors.emotions,
        layers,
        scores,
        floor,
        points,
    )


def response_position(
    lm: LoadedModel, msgs: Messages, chat: ChatText, offsets: Sequence[tuple[int, int]]
) -> int | None:
    """Token index (into ``offsets``) of the last prompt token before the assistant's reply begins.

    Open-ended conversation: the last token. Conversation ending in a reply: the last token of the
    prompt that produced it (the conversation without the reply, formatted with the generation
    prompt); if the template does not make that a prefix, the last token before the reply's content.
    """
    if msgs[-1]["role"] == "user":
        return len(offsets) - 1
    if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
        return None
    prompt = format_chat(lm.tokenizer, msgs[:-1], add_generation_prompt=True).text
    end = len(prompt) if chat.text.startswith(prompt) else chat.turns[-1].start
    before = [p for p, (s, e) in enumerate(offsets) if e <= end and e > s]
    return before[-1] if before else None


def generate_reply(
    lm: LoadedModel, messages: Sequence[dict[str, str]], max_new_tokens: int = 48, seed: int = 0
) -> Messages:
    """Let the model write the assistant reply to a conversation ending in a user turn (greedy)."""
    msgs = check_messages(list(messages))
    if msgs[-1]["role"] != "user":
        raise SteerlabError(
            "--generate needs a conversation that ends with a user turn: drop the last assistant message"
        )
    prompt = format_chat(lm.tokenizer, msgs, add_generation_prompt=True).text
    config = GenerationConfig(max_new_tokens=max_new_tokens, seed=seed, chat=False, batch_size=1)
    reply = clean_reply(lm, generate(lm, [prompt], config)[0], chat=True)
    if not reply:
        raise SteerlabError("the model generated an empty reply: try a larger --max-new-tokens or another prompt")
    return [*msgs, {"role": "assistant", "content": reply}]


def load_conversation(path: str | Path) -> Messages:
    """A JSON file holding a list of {role, content}; errors say what is wrong."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SteerlabError(f"cannot read conversation file {str(path)!r} ({err.strerror or err})") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SteerlabError(
            f"{path}: malformed JSON at line {err.lineno} column {err.colno} ({err.msg}): "
            'expected a list like [{"role": "user", "content": "..."}]'
        ) from None
    if isinstance(obj, dict) and "messages" in obj:
        obj = obj["messages"]
    try:
        return check_messages(obj)
    except SteerlabError as err:
        raise SteerlabError(f"{path}: {err}") from None
