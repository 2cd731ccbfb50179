"""A user's message read as the user's turn of a conversation awaiting the model's reply (the prompt
``generate --chat`` starts from): the tokens of the message, and their activations pooled two ways.
Gates (:mod:`.gate`) decide on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from steerlab.model.models import LoadedModel

TURN_READOUTS = ("turn", "prep")  # the user's message tokens (mean), or the token before the reply


def user_turn_tokens(lm: LoadedModel, messages: Sequence[str]) -> tuple[list[list[int]], list[list[bool]]]:
    """Token ids of each message as the user's turn awaiting the reply, and which tokens are the message's."""
    from steerlab.model.activations import check_lengths
    from steerlab.model.chat import format_chat, token_roles

    ids, keep = [], []
    for text in messages:
        chat = format_chat(lm.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True)
        enc = lm.tokenizer(chat.text, return_offsets_mapping=True, add_special_tokens=True)
        ids.append(list(enc["input_ids"]))
        keep.append([role == "user" for role in token_roles(chat, [tuple(o) for o in enc["offset_mapping"]])])
    check_lengths(ids, lm.context_length, "message")
    return ids, keep


def user_turn_features(
    lm: LoadedModel, messages: Sequence[str], layers: Sequence[int], skip_tokens: int = 0, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """How the model reads each message as the user's turn of a conversation awaiting its reply (the
    prompt ``generate --chat`` starts from, without a frame): readout -> (messages, layers, hidden),
    ``turn`` the mean over the message's own tokens past its first ``skip_tokens``, ``prep`` the last
    prompt token, where the reply is about to begin."""
    from steerlab.model.activations import capture, content_mask, pad_batch, run_backbone

    ids, keep = user_turn_tokens(lm, messages)
    out = {name: np.zeros((len(messages), len(layers), lm.hidden_size), dtype=np.float32) for name in TURN_READOUTS}
    state: dict[str, torch.Tensor] = {}

    def pool(layer: int, h: torch.Tensor) -> None:
        k = list(layers).index(layer)
        m = state["turn"]
        state["out_turn"][:, k] = (h.float() * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        state["out_prep"][:, k] = h[:, -1].float()  # left padding: the last column is every row's last token

    with torch.inference_mode(), capture(lm, layers, pool):
        for lo in range(0, len(ids), batch_size):
            enc = pad_batch(lm, ids[lo : lo + batch_size], keep[lo : lo + batch_size])
            state["turn"] = content_mask(enc, skip_tokens).float().to(lm.device)
            n = len(enc["input_ids"])
            state["out_turn"] = torch.zeros((n, len(layers), lm.hidden_size), device=lm.device)
            state["out_prep"] = torch.zeros((n, len(layers), lm.hidden_size), device=lm.device)
            run_backbone(lm, enc["input_ids"], enc["attention_mask"])
            out["turn"][lo : lo + n] = state["out_turn"].cpu().numpy()
            out["prep"][lo : lo + n] = state["out_prep"].cpu().numpy()
    return out


def user_turn_tokens_at(lm: LoadedModel, messages: Sequence[str], layer: int) -> np.ndarray:
    """(tokens, hidden): every token of the messages' user turns at ``layer``, as generation reads them."""
    from steerlab.model.activations import content_mask, pad_batch, token_activations

    ids, keep = user_turn_tokens(lm, messages)
    rows = []
    for lo in range(0, len(ids), 16):
        enc = pad_batch(lm, ids[lo : lo + 16], keep[lo : lo + 16])
        acts = token_activations(lm, enc, [layer])[layer]
        rows.append(acts[content_mask(enc).bool()].numpy())
    return np.concatenate(rows)
