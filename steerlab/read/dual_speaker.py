"""Dual speaker: current-speaker and other-speaker emotion vectors from two-speaker dialogues.

Every turn is mean-pooled at every layer; the "current speaker" vector of an emotion is the mean of
the turns whose own speaker expresses it, the "other speaker" vector the mean of turns whose partner
does (both minus the grand mean of all turns). Baselines: mismatched emotion pairs and random
directions. The role grid and the arousal "thermostat" read the turns with the extracted vectors at
the reading layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steerlab.core.corpus import NEUTRAL, data_path, emotion_info
from steerlab.core.errors import SteerlabError
from steerlab.core.files import jsonl_rows
from steerlab.core.vectors import EmotionVectors, unit_rows
from steerlab.model.activations import capture, pad_batch, run_backbone
from steerlab.model.chat import check_messages, format_chat
from steerlab.model.models import LoadedModel
from steerlab.read.probes import Correlation, correlate, pc1_valence
from steerlab.read.scope import token_turns


@dataclass(frozen=True)
class Dialogue:
    id: str
    user_emotion: str  # label of the user's turns ("neutral" allowed)
    assistant_emotion: str  # label of the assistant's turns
    messages: tuple[dict[str, str], ...]


def load_dialogues(path: str | Path | None = None) -> list[Dialogue]:
    """Two-speaker dialogues (JSONL: id, user_emotion, assistant_emotion, turns); default: package data."""
    path = Path(path) if path else data_path("dialogues.jsonl")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SteerlabError(f"cannot read dialogue file {str(path)!r} ({err.strerror or err})") from None
    out = []
    for n, obj in jsonl_rows(raw, str(path), SteerlabError):
        try:
            msgs = check_messages(obj["turns"])
            out.append(Dialogue(str(obj["id"]), obj["user_emotion"], obj["assistant_emotion"], tuple(msgs)))
        except (KeyError, TypeError, SteerlabError) as err:
            raise SteerlabError(
                f"{path} line {n}: bad dialogue ({err}): each line needs id, user_emotion, assistant_emotion, turns"
            ) from None
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
    limit = lm.context_length
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
    own = [labels[r][i] if r in labels else NEUTRAL for (i, _), r in zip(keep, role, strict=True)]
    other = [labels["assistant" if r == "user" else "user"][i] for (i, _), r in zip(keep, role, strict=True)]
    return TurnFeatures(
        np.stack([feats[i, k] for i, k in keep]),
        np.array([i for i, _ in keep]),
        np.array(role),
        np.array(own),
        np.array(other),
    )


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


def dual_speaker(
    lm: LoadedModel,
    vectors: EmotionVectors,
    dialogues: Sequence[Dialogue] | None = None,
    layer: int | None = None,
    batch_size: int = 8,
) -> DualSpeaker:
    """Build current/other-speaker vectors and run the role grid and the arousal "thermostat" test at
    ``layer`` (default: the vectors' reading layer); ``by_layer`` covers every layer.

    Thermostat: across dialogues with an emotional user, correlate the arousal read on the
    assistant's own turns (extracted vectors, sum_e arousal_e * score_e) with the user's labelled
    arousal ("labelled") and with the arousal read on the user's turns ("read"). The dialogues were
    written with a reply emotion, so "script" gives the same correlation for the assistant's *labelled*
    arousal and "partial" the read one with the script's arousal regressed out: only a negative
    partial r would say the model regulates beyond what the text says.
    """
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    dialogues = list(dialogues) if dialogues is not None else load_dialogues()
    layer = vectors.check_layer(vectors.layer_for_reading(layer), "layer")
    tf = turn_features(lm, dialogues, batch_size)
    notes = []
    if sum(len(d.messages) for d in dialogues) > len(tf.role):
        notes.append(
            f"{sum(len(d.messages) for d in dialogues) - len(tf.role)} turns beyond the model's context were left out"
        )
    emotions = tuple(sorted({e for e in np.concatenate([tf.own, tf.other]) if e != NEUTRAL}))
    valence = {e: i.valence for e, i in emotion_info().items()}
    off = ~np.eye(len(emotions), dtype=bool)
    cur, oth = _speaker_sets(tf, layer, emotions)
    c = unit_rows(cur) @ unit_rows(oth).T
    # role grid and thermostat read the turns with the extracted vectors
    scores = vectors.read(torch.from_numpy(tf.features[:, layer]), layer).numpy()
    excess = scores - scores.mean(axis=1, keepdims=True)
    grid, grid_n = _role_grid(tf, excess, vectors.emotions)
    if not grid_n.any():
        notes.append("role grid skipped: the vectors share no emotion with the dialogue labels")
    thermostat = _thermostat(tf, excess, vectors, dialogues)
    if thermostat is None:
        notes.append("thermostat skipped: fewer than 3 of the vectors' emotions have a known arousal")
    return DualSpeaker(
        layer=layer,
        emotions=emotions,
        current=cur,
        other=oth,
        cos=np.diag(c).copy(),
        mismatched=c[off],
        random_bound=1.96 / float(np.sqrt(tf.features.shape[-1])),
        by_layer=_by_layer(tf, emotions),
        valence={"current": pc1_valence(cur, emotions, valence), "other": pc1_valence(oth, emotions, valence)},
        with_vectors=_with_vectors(cur, emotions, vectors, layer),
        role_grid=grid,
        role_grid_n=grid_n,
        thermostat=thermostat or {},
        n_dialogues=len(dialogues),
        notes=tuple(notes),
    )


def _speaker_sets(tf: TurnFeatures, at: int, emotions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Current- and other-speaker vectors at layer ``at``: mean of the turns whose own speaker (whose partner)
    expresses each emotion, minus the grand mean of all turns."""
    x = tf.features[:, at].astype(np.float64)
    grand = x.mean(axis=0)
    cur = np.stack([x[tf.own == e].mean(axis=0) - grand for e in emotions])
    oth = np.stack([x[tf.other == e].mean(axis=0) - grand for e in emotions])
    return cur, oth


def _with_vectors(cur: np.ndarray, emotions: tuple[str, ...], vectors: EmotionVectors, layer: int) -> np.ndarray:
    """cos(current-speaker vector of e, extracted direction of e) for each emotion; nan where the vectors lack e."""
    dirs = vectors.directions[layer].numpy()
    return np.array(
        [
            float(unit_rows(cur[k]) @ dirs[vectors.emotions.index(e)]) if e in vectors.emotions else np.nan
            for k, e in enumerate(emotions)
        ]
    )


def _by_layer(tf: TurnFeatures, emotions: tuple[str, ...]) -> list[dict[str, float]]:
    """Per layer: mean cos(current, other) of the same emotion, and of different emotions."""
    off = ~np.eye(len(emotions), dtype=bool)
    by_layer = []
    for at in range(tf.features.shape[1]):
        cur, oth = _speaker_sets(tf, at, emotions)
        c = unit_rows(cur) @ unit_rows(oth).T
        by_layer.append({"layer": at, "matched": float(np.diag(c).mean()), "mismatched": float(c[off].mean())})
    return by_layer


def _role_grid(tf: TurnFeatures, excess: np.ndarray, emotions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Rows: user / assistant turns; columns: the user's / the assistant's labelled emotion. Each cell is the
    mean excess score of that emotion on those turns (nan when none), beside the number of turns."""
    grid, grid_n = np.full((2, 2), np.nan), np.zeros((2, 2), dtype=int)
    labels: dict[str, dict[int, str]] = {"user": {}, "assistant": {}}
    for t in range(len(tf.role)):
        labels[str(tf.role[t])][int(tf.dialogue[t])] = str(tf.own[t])
    for i, role in enumerate(("user", "assistant")):
        for j, whose in enumerate(("user", "assistant")):
            vals = [
                excess[t, emotions.index(labels[whose][int(tf.dialogue[t])])]
                for t in range(len(tf.role))
                if tf.role[t] == role and labels[whose].get(int(tf.dialogue[t])) in emotions
            ]
            grid_n[i, j] = len(vals)
            if vals:
                grid[i, j] = float(np.mean(vals))
    return grid, grid_n


def _thermostat(
    tf: TurnFeatures, excess: np.ndarray, vectors: EmotionVectors, dialogues: Sequence[Dialogue]
) -> dict[str, Correlation] | None:
    """The arousal "thermostat" correlations (see :func:`dual_speaker`); None when fewer than 3 of the
    vectors' emotions have a known arousal."""
    arousal = vectors.affect("arousal")
    if not (len(arousal) >= 3 and np.ptp(list(arousal.values())) > 0):
        return None
    info = emotion_info()
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
    al = np.array(
        [info[dialogues[i].assistant_emotion].arousal if dialogues[i].assistant_emotion in info else 0.0 for i in idx]
    )
    resid = ar - np.polyval(np.polyfit(al, ar, 1), al) if np.ptp(al) > 0 else ar
    return {
        "labelled": correlate(ar, ul),
        "read": correlate(ar, ur),
        "script": correlate(al, ul),
        "partial": correlate(resid, ul),
    }
