"""Read emotions token by token in text and conversations; dual-speaker vectors; geometry; intensity.

How scores are made comparable across texts: every score is the cosine of the *centred* activation
(activation minus the training grand mean at that layer, ``EmotionVectors.read``) with a unit emotion
direction. Cosine ignores the norm of a position, so scores from short and long texts, early and late
tokens, sit on one scale in [-1, 1]. The noise floor is the same cosine for seeded random unit
directions: a score inside it carries no evidence.

Readout points of a conversation (the three the literature uses):

* ``user_last``  the last token of the last user turn before the reply;
* ``prep``       the response-preparation token: the last token of the prompt formatted with the
                 generation prompt (``Assistant:`` in a plain transcript, ``<start_of_turn>model\\n``
                 with a chat template), right before the reply begins;
* ``reply``      the mean over the tokens of the assistant's reply (the last assistant turn).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from .activations import capture, pad_batch, run_backbone, token_activations
from .chat import ChatText, check_messages, format_chat, token_roles
from .corpus import data_path, emotion_info
from .edits import random_direction
from .errors import SteerlabError
from .generate import GenerationConfig, clean_reply, generate
from .models import LoadedModel
from .vectors import EmotionVectors

Messages = list[dict[str, str]]
READOUTS = ("user_last", "prep", "reply")
NEUTRAL = "neutral"


@dataclass(frozen=True)
class ScopeConfig:
    layers: tuple[int, ...] = ()  # layers to read; empty = the vectors' chosen layer
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
            "noise_floor": {str(la): round(float(f), 4) for la, f in zip(self.layers, self.noise_floor)},
            "points": {k: list(v) for k, v in self.points.items()},
            "readouts": {
                str(la): {k: _rounded(self.readout(k, la)) for k in self.points} for la in self.layers
            },
            "turns": [
                {"turn": i, "role": role, "scores": {str(la): _rounded(m) for la, m in zip(self.layers, means)}}
                for i, role, *means in _zip_turns(self)
            ],
            "tokens": [
                {"position": p, "token": tok, "offset": list(self.offsets[p]), "role": self.roles[p],
                 "turn": self.turns[p], "scores": {str(la): _rounded(self.scores[li, p]) for li, la in enumerate(self.layers)}}
                for p, tok in enumerate(self.tokens)
            ],
        }


def _rounded(v: np.ndarray) -> list[float]:
    return [round(float(x), 4) for x in v]


def _zip_turns(r: Reading) -> list[tuple[Any, ...]]:
    per_layer = [r.turn_means(la) for la in r.layers]
    return [(i, role, *[pl[k][2] for pl in per_layer]) for k, (i, role, _) in enumerate(per_layer[0])]


# --- reading ----------------------------------------------------------------------------------


def context_length(lm: LoadedModel) -> int:
    config = lm.model.config.get_text_config()
    return int(min(getattr(config, "max_position_embeddings", 1 << 30), lm.tokenizer.model_max_length))


def _layers(vectors: EmotionVectors, config: ScopeConfig) -> tuple[int, ...]:
    layers = config.layers or (vectors.chosen_layer,)
    for layer in layers:
        if not 0 <= layer < vectors.n_layers:
            raise SteerlabError(f"layer {layer} out of range: the vectors have layers 0..{vectors.n_layers - 1}")
    return tuple(dict.fromkeys(layers))


def _noise_floor(acts: torch.Tensor, vectors: EmotionVectors, layer: int, config: ScopeConfig) -> float:
    """95th percentile of |cosine| between centred activations (tokens, hidden) and random directions."""
    x = acts.float() - vectors.center[layer]
    x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    rand = torch.stack([random_direction(vectors.hidden_size, config.seed + i) for i in range(config.n_random)])
    return float(np.percentile((x @ rand.T).abs().numpy(), 95))


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
    limit = config.max_tokens or context_length(lm)
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
    return Reading(text, "text", tuple(tokens), tuple(offsets), ("text",) * n, (0,) * n, ("text",),
                   vectors.emotions, layers, scores, floor, {"last": (n - 1,), "mean": tuple(range(n))})


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
    return Reading(chat.text, chat.template, tuple(tokens), tuple(offsets), tuple(roles), tuple(turns),
                   tuple(m["role"] for m in msgs), vectors.emotions, layers, scores, floor, points)


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


def generate_reply(lm: LoadedModel, messages: Sequence[dict[str, str]], max_new_tokens: int = 48, seed: int = 0) -> Messages:
    """Let the model write the assistant reply to a conversation ending in a user turn (greedy)."""
    msgs = check_messages(list(messages))
    if msgs[-1]["role"] != "user":
        raise SteerlabError("--generate needs a conversation that ends with a user turn: drop the last assistant message")
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


# --- dual speaker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialogue:
    id: str
    user_emotion: str  # label of the user's turns ("neutral" allowed)
    assistant_emotion: str  # label of the assistant's turns
    messages: tuple[dict[str, str], ...]


def load_dialogues(path: str | Path | None = None) -> list[Dialogue]:
    """Two-speaker dialogues (JSONL: id, user_emotion, assistant_emotion, turns); default: package data."""
    path = Path(path) if path else data_path("dialogues.jsonl")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            msgs = check_messages(obj["turns"])
            out.append(Dialogue(str(obj["id"]), obj["user_emotion"], obj["assistant_emotion"], tuple(msgs)))
        except (json.JSONDecodeError, KeyError, TypeError, SteerlabError) as err:
            raise SteerlabError(f"{path}:{n}: bad dialogue ({err}): each line needs id, user_emotion, assistant_emotion, turns") from None
    if not out:
        raise SteerlabError(f"{path}: no dialogues")
    return out


@dataclass(frozen=True)
class TurnFeatures:
    features: np.ndarray  # (turns, layers, hidden) mean activation over each turn's content tokens
    dialogue: np.ndarray  # (turns,) dialogue index
    role: np.ndarray  # (turns,) "user" / "assistant"
    own: np.ndarray  # (turns,) emotion of the speaker of the turn
    other: np.ndarray  # (turns,) emotion of the other speaker


def turn_features(lm: LoadedModel, dialogues: Sequence[Dialogue], batch_size: int = 8) -> TurnFeatures:
    """Mean-pool every layer over each turn's tokens, all dialogues, one forward pass per batch."""
    n_layers, hidden = lm.n_layers, lm.hidden_size
    limit = context_length(lm)
    rows: list[tuple[list[int], list[int]]] = []
    n_turns = []
    for d in dialogues:
        for k in range(len(d.messages), 0, -1):  # the longest prefix of whole turns within the context
            chat = format_chat(lm.tokenizer, d.messages[:k], add_generation_prompt=False)
            enc = lm.tokenizer(chat.text, return_offsets_mapping=True)
            if len(enc["input_ids"]) <= limit:
                break
        else:
            k = 0
        rows.append((list(enc["input_ids"]) if k else [], token_turns(chat, enc["offset_mapping"]) if k else []))
        n_turns.append(k)
    k_max = max(n_turns)
    if k_max == 0:
        raise SteerlabError(f"no dialogue turn fits the model's context of {limit} tokens: use shorter dialogues")
    feats = np.zeros((len(dialogues), k_max, n_layers, hidden), dtype=np.float32)
    state: dict[str, torch.Tensor] = {}

    def pool(layer: int, h: torch.Tensor) -> None:
        state["out"][:, :, layer] = torch.einsum("bkt,bth->bkh", state["w"], h.float())

    with torch.inference_mode(), capture(lm, range(n_layers), pool):
        for lo in range(0, len(rows), batch_size):
            batch = [row if row[0] else ([lm.tokenizer.bos_token_id or 0], [-1]) for row in rows[lo : lo + batch_size]]
            enc = pad_batch(lm, [ids for ids, _ in batch])
            width = enc["input_ids"].shape[1]
            w = torch.zeros((len(batch), k_max, width))
            for b, (ids, turns) in enumerate(batch):
                t = torch.tensor(turns)
                for k in range(k_max):
                    sel = (t == k).float()
                    w[b, k, width - len(ids) :] = sel / sel.sum().clamp(min=1)
            state["w"] = w.to(lm.device)
            state["out"] = torch.zeros((len(batch), k_max, n_layers, hidden), device=lm.device)
            run_backbone(lm, enc["input_ids"], enc["attention_mask"])
            feats[lo : lo + len(batch)] = state["out"].cpu().numpy()
    keep = [(i, k) for i, n in enumerate(n_turns) for k in range(n)]
    role = [dialogues[i].messages[k]["role"] for i, k in keep]
    labels = {"user": [d.user_emotion for d in dialogues], "assistant": [d.assistant_emotion for d in dialogues]}
    own = [labels[r][i] if r in labels else NEUTRAL for (i, _), r in zip(keep, role)]
    other = [labels["assistant" if r == "user" else "user"][i] for (i, _), r in zip(keep, role)]
    return TurnFeatures(np.stack([feats[i, k] for i, k in keep]), np.array([i for i, _ in keep]),
                        np.array(role), np.array(own), np.array(other))


@dataclass(frozen=True)
class Correlation:
    r: float
    p: float
    n: int

    def text(self) -> str:
        sig = "significant" if self.p < 0.05 else "not significant"
        return f"r = {self.r:+.3f}, p = {self.p:.3g}, n = {self.n} ({sig} at 0.05)"


def correlate(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, spearman: bool = False) -> Correlation:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), len(x))
    res = stats.spearmanr(x, y) if spearman else stats.pearsonr(x, y)
    return Correlation(float(res[0]), float(res[1]), len(x))


@dataclass(frozen=True)
class DualSpeaker:
    """Current-speaker and other-speaker vectors from two-speaker dialogues, with baselines."""

    layer: int
    emotions: tuple[str, ...]  # emotions labelled in the dialogues (neutral excluded)
    current: np.ndarray  # (E, hidden) mean of turns whose own speaker expresses e, minus grand mean
    other: np.ndarray  # (E, hidden) mean of turns whose *partner* expresses e, minus grand mean
    cos: np.ndarray  # (E,) cos(current_e, other_e)
    mismatched: np.ndarray  # cos(current_e, other_f) for every e != f: the like-for-like baseline
    random_bound: float  # 95% bound of |cos| between two random directions in this hidden size
    by_layer: list[dict[str, float]]  # per layer: mean matched cos, mean mismatched cos
    valence: dict[str, Correlation]  # "current"/"other": r of the set's PC1 with labelled valence
    with_vectors: np.ndarray  # (E,) cos(current_e, extracted direction of e); nan where absent
    role_grid: np.ndarray  # (2, 2) rows: user / assistant tokens; cols: user's / assistant's emotion
    role_grid_n: np.ndarray  # (2, 2) turns behind each cell
    thermostat: dict[str, Correlation]  # see ``dual_speaker``
    n_dialogues: int
    notes: tuple[str, ...]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _pc1_valence(vecs: np.ndarray, emotions: Sequence[str], valence: dict[str, float]) -> Correlation:
    centred = vecs - vecs.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return correlate(centred @ vt[0], [valence.get(e, np.nan) for e in emotions])


def _affect(vectors: EmotionVectors, key: str) -> dict[str, float]:
    """Valence or arousal per emotion: the vector file's, else the built-in table."""
    info = emotion_info()
    table = {e: getattr(i, key) for e, i in info.items()}
    stored = vectors.meta.get(key) or {}
    return {e: float(stored[e]) if e in stored and e in info else table[e] for e in vectors.emotions if e in table}


def dual_speaker(
    lm: LoadedModel, vectors: EmotionVectors, dialogues: Sequence[Dialogue] | None = None,
    layer: int | None = None, batch_size: int = 8,
) -> DualSpeaker:
    """Build current/other-speaker vectors and run the role grid and the arousal "thermostat" test.

    Thermostat: across dialogues with an emotional user, correlate the arousal read on the
    assistant's own turns (extracted vectors, sum_e arousal_e * score_e) with the user's labelled
    arousal ("labelled") and with the arousal read on the user's turns ("read"). The dialogues were
    written with a reply emotion, so "script" gives the same correlation for the assistant's *labelled*
    arousal and "partial" the read one with the script's arousal regressed out: only a negative
    partial r would say the model regulates beyond what the text says.
    """
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    dialogues = list(dialogues) if dialogues is not None else load_dialogues()
    layer = vectors.chosen_layer if layer is None else layer
    tf = turn_features(lm, dialogues, batch_size)
    notes = []
    if sum(len(d.messages) for d in dialogues) > len(tf.role):
        notes.append(f"{sum(len(d.messages) for d in dialogues) - len(tf.role)} turns beyond the model's context were left out")
    emotions = tuple(sorted({e for e in np.concatenate([tf.own, tf.other]) if e != NEUTRAL}))
    info = emotion_info()
    valence = {e: i.valence for e, i in info.items()}
    hidden = tf.features.shape[-1]

    def sets(at: int) -> tuple[np.ndarray, np.ndarray]:
        x = tf.features[:, at].astype(np.float64)
        grand = x.mean(axis=0)
        cur = np.stack([x[tf.own == e].mean(axis=0) - grand for e in emotions])
        oth = np.stack([x[tf.other == e].mean(axis=0) - grand for e in emotions])
        return cur, oth

    off = ~np.eye(len(emotions), dtype=bool)
    by_layer = []
    for at in range(tf.features.shape[1]):
        cur, oth = sets(at)
        c = _unit(cur) @ _unit(oth).T
        by_layer.append({"layer": at, "matched": float(np.diag(c).mean()), "mismatched": float(c[off].mean())})
    cur, oth = sets(layer)
    c = _unit(cur) @ _unit(oth).T
    dirs = vectors.directions[layer].numpy()
    with_vectors = np.array([
        float(_unit(cur[k]) @ dirs[vectors.emotions.index(e)]) if e in vectors.emotions else np.nan
        for k, e in enumerate(emotions)
    ])

    # role grid and thermostat read the turns with the extracted vectors
    scores = vectors.read(torch.from_numpy(tf.features[:, layer]), layer).numpy()
    excess = scores - scores.mean(axis=1, keepdims=True)
    grid, grid_n = np.full((2, 2), np.nan), np.zeros((2, 2), dtype=int)
    labels = {"user": {}, "assistant": {}}  # type: dict[str, dict[int, str]]
    for t in range(len(tf.role)):
        labels[str(tf.role[t])][int(tf.dialogue[t])] = str(tf.own[t])
    for i, role in enumerate(("user", "assistant")):
        for j, whose in enumerate(("user", "assistant")):
            vals = [excess[t, vectors.emotions.index(labels[whose][int(tf.dialogue[t])])]
                    for t in range(len(tf.role)) if tf.role[t] == role
                    and labels[whose].get(int(tf.dialogue[t])) in vectors.emotions]
            grid_n[i, j] = len(vals)
            if vals:
                grid[i, j] = float(np.mean(vals))
    if not grid_n.any():
        notes.append("role grid skipped: the vectors share no emotion with the dialogue labels")

    arousal = _affect(vectors, "arousal")
    thermostat: dict[str, Correlation] = {}
    if len(arousal) >= 3 and np.ptp(list(arousal.values())) > 0:
        a = np.array([arousal.get(e, 0.0) for e in vectors.emotions])
        axis = excess @ (a - a.mean())
        user_read: dict[int, list[float]] = {}
        asst_read: dict[int, list[float]] = {}
        for t in range(len(tf.role)):
            (user_read if tf.role[t] == "user" else asst_read).setdefault(int(tf.dialogue[t]), []).append(axis[t])
        idx = [i for i, d in enumerate(dialogues) if d.user_emotion in info and i in asst_read and i in user_read]
        ar = np.array([np.mean(asst_read[i]) for i in idx])
        ur = np.array([np.mean(user_read[i]) for i in idx])
        ul = np.array([info[dialogues[i].user_emotion].arousal for i in idx])
        al = np.array([info[dialogues[i].assistant_emotion].arousal if dialogues[i].assistant_emotion in info else 0.0 for i in idx])
        thermostat["labelled"] = correlate(ar, ul)
        thermostat["read"] = correlate(ar, ur)
        thermostat["script"] = correlate(al, ul)
        resid = ar - np.polyval(np.polyfit(al, ar, 1), al) if np.ptp(al) > 0 else ar
        thermostat["partial"] = correlate(resid, ul)
    else:
        notes.append("thermostat skipped: fewer than 3 of the vectors' emotions have a known arousal")
    return DualSpeaker(
        layer=layer, emotions=emotions, current=cur, other=oth, cos=np.diag(c).copy(), mismatched=c[off],
        random_bound=1.96 / float(np.sqrt(hidden)), by_layer=by_layer,
        valence={"current": _pc1_valence(cur, emotions, valence), "other": _pc1_valence(oth, emotions, valence)},
        with_vectors=with_vectors, role_grid=grid, role_grid_n=grid_n, thermostat=thermostat,
        n_dialogues=len(dialogues), notes=tuple(notes),
    )


# --- geometry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """PCA of one layer's emotion directions and their cosine matrix sorted by valence."""

    layer: int
    emotions: tuple[str, ...]
    valence: np.ndarray  # (E,) labelled valence (nan where unknown)
    arousal: np.ndarray  # (E,)
    coords: np.ndarray  # (E, 2) PC1, PC2 scores; signs oriented so PC1 ~ +valence, PC2 ~ +arousal
    explained: np.ndarray  # (2,) share of variance of PC1 and PC2
    r: dict[str, Correlation]  # "pc1_valence", "pc1_arousal", "pc2_valence", "pc2_arousal"
    order: tuple[int, ...]  # emotion indices sorted by valence (descending)
    cosine: np.ndarray  # (E, E) cosine matrix in ``order``


def geometry(directions: np.ndarray, emotions: Sequence[str], valence: Sequence[float],
             arousal: Sequence[float], layer: int = 0) -> Geometry:
    """PCA of ``directions`` (E, hidden); PC signs are arbitrary, so they are oriented to the labels."""
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != len(emotions) or d.shape[0] < 3:
        raise SteerlabError(f"geometry needs (>= 3 emotions, hidden) directions, got shape {d.shape} for {len(emotions)} emotions")
    val, aro = np.asarray(valence, float), np.asarray(arousal, float)
    centred = d - d.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    for k, ref in ((0, val), (1, aro)):
        rk = correlate(coords[:, k], ref).r
        if np.isfinite(rk) and rk < 0:
            coords[:, k] *= -1
    r = {f"pc{k + 1}_{name}": correlate(coords[:, k], ref) for k in range(2) for name, ref in (("valence", val), ("arousal", aro))}
    order = tuple(int(i) for i in np.argsort(-np.nan_to_num(val, nan=0.0), kind="stable"))
    u = _unit(d)
    cos = (u @ u.T)[np.ix_(order, order)]
    return Geometry(layer, tuple(emotions), val, aro, coords, (s[:2] ** 2) / np.sum(s**2), r, order, cos)


def vector_geometry(vectors: EmotionVectors, layer: int | None = None) -> Geometry:
    layer = vectors.chosen_layer if layer is None else layer
    val, aro = _affect(vectors, "valence"), _affect(vectors, "arousal")
    return geometry(vectors.directions[layer].numpy(), vectors.emotions,
                    [val.get(e, np.nan) for e in vectors.emotions], [aro.get(e, np.nan) for e in vectors.emotions], layer)


def geometry_sweep(vectors: EmotionVectors) -> list[Geometry]:
    return [vector_geometry(vectors, layer) for layer in range(vectors.n_layers)]


# --- intensity scales ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    name: str
    template: str  # with one "{x}" slot
    values: tuple[str, ...]  # in the order along which the expected relations hold
    expect: dict[str, int]  # emotion -> +1 (rises along values) / -1 (falls)
    is_message: bool  # True: template is a user message (steerlab); False: a full prompt (EmotionScope)

    def prompt(self, lm: LoadedModel, value: str) -> str:
        text = self.template.replace("{x}", value)
        if not self.is_message:
            return text
        return format_chat(lm.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True).text


def load_scales(path: str | Path | None = None) -> list[Scale]:
    """Intensity scales: steerlab's format ({"scales": [{name, template "{x}", values, expect}]}) or
    EmotionScope's ({name: {template "{value}", values, expected_increasing, expected_decreasing}})."""
    path = Path(path) if path else Path(__file__).resolve().parents[1] / "eval" / "intensity" / "scales.json"
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
                expect = {**{e: 1 for e in s.get("expected_increasing", [])}, **{e: -1 for e in s.get("expected_decreasing", [])}}
                out.append(Scale(name, s["template"].replace("{value}", "{x}"), tuple(map(str, s["values"])), expect, False))
        else:
            raise TypeError("top level must be an object")
    except (KeyError, TypeError, AttributeError) as err:
        raise SteerlabError(
            f"{path}: not a scales file ({err!r}): expected {{\"scales\": [{{name, template with {{x}}, values, expect}}]}}"
        ) from None
    bad = [s.name for s in out if "{x}" not in s.template or len(s.values) < 3 or not s.expect]
    if bad or not out:
        raise SteerlabError(f"{path}: scales {bad or '(none)'} need a template with {{x}}, >= 3 values and expectations")
    return out


@dataclass(frozen=True)
class IntensityRow:
    scale: str
    emotion: str
    expected: int  # +1 / -1
    rho: float  # Spearman rho between position along the values and the score at the prep token
    p: float
    n: int

    @property
    def agrees(self) -> bool:
        return bool(np.isfinite(self.rho) and np.sign(self.rho) == self.expected)


@dataclass(frozen=True)
class Intensity:
    layer: int
    rows: list[IntensityRow]
    curves: dict[str, tuple[tuple[str, ...], dict[str, np.ndarray]]]  # scale -> (values, {emotion: scores})
    skipped: tuple[str, ...]  # "scale:emotion" pairs whose emotion the vectors lack

    def summary(self) -> dict[str, float]:
        ok = [r for r in self.rows if np.isfinite(r.rho)]
        return {"relations": len(ok), "right_sign": sum(r.agrees for r in ok),
                "significant_right": sum(r.agrees and r.p < 0.05 for r in ok),
                "significant_wrong": sum((not r.agrees) and r.p < 0.05 for r in ok),
                "mean_signed_rho": float(np.mean([r.rho * r.expected for r in ok])) if ok else float("nan")}


def intensity(lm: LoadedModel, vectors: EmotionVectors, scales: Sequence[Scale], layer: int | None = None,
              batch_size: int = 16) -> Intensity:
    """Read every scale prompt at its response-preparation token (its last token: prompts are left
    padded) and correlate each expected emotion's score with the position along the scale."""
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    layer = vectors.chosen_layer if layer is None else layer
    rows, curves, skipped = [], {}, []
    for scale in scales:
        ids = [list(lm.tokenizer(scale.prompt(lm, v))["input_ids"]) for v in scale.values]
        last = []
        for lo in range(0, len(ids), batch_size):
            acts = token_activations(lm, pad_batch(lm, ids[lo : lo + batch_size]), [layer])
            last.append(acts[layer][:, -1])
        scores = vectors.read(torch.cat(last), layer).numpy()
        curve = {}
        for emotion, sign in scale.expect.items():
            if emotion not in vectors.emotions:
                skipped.append(f"{scale.name}:{emotion}")
                continue
            curve[emotion] = scores[:, vectors.emotions.index(emotion)]
            c = correlate(np.arange(len(ids)), curve[emotion], spearman=True)
            rows.append(IntensityRow(scale.name, emotion, sign, c.r, c.p, c.n))
        curves[scale.name] = (scale.values, curve)
    return Intensity(layer, rows, curves, tuple(skipped))
