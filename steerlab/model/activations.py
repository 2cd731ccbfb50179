"""Read the residual stream: batched, length-sorted forward passes with hooks on every decoder block.

Pooling happens inside the hook, so a batch never holds more than one layer's token activations
at a time; only the pooled per-text vectors (texts x layers x hidden) and running norm statistics
are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from transformers import BatchEncoding

from steerlab.core.errors import SteerlabError
from steerlab.core.names import DEFAULT_READOUT, DEFAULT_SKIP_TOKENS, Readout
from steerlab.core.parallel import sum_across, world
from steerlab.model.chat import format_chat
from steerlab.model.family import marker_ids
from steerlab.model.models import LoadedModel
from steerlab.model.sites import block_tensor

Tick = Callable[[int, int], None]  # (texts done, tokens done) -> None


READOUTS: dict[str, str] = {
    "mean": "mean over the text's content tokens (BOS, padding, template markers excluded), after skip_tokens",
    "last": "the text's last content token",
    "prep": "the text as the user's turn in the chat format; the last prompt token, where the model is "
    "about to reply (the response-preparation readout)",
}


@dataclass(frozen=True)
class PoolingConfig:
    """How texts are batched and which token positions are pooled into one vector per text and layer."""

    batch_size: int = 16  # texts per forward pass (sorted by length, so padding stays small)
    max_length: int = 256  # tokens per text; a longer text is refused, never cut
    skip_tokens: int = DEFAULT_SKIP_TOKENS  # content tokens to skip at the start of every text ("mean" only)
    readout: Readout = DEFAULT_READOUT  # which positions are pooled: a key of READOUTS

    def describe(self) -> dict[str, object]:
        return {
            "readout": self.readout,
            "reduce": READOUTS[self.readout],
            "skip_tokens": self.skip_tokens,
            "max_length": self.max_length,
        }


@dataclass(frozen=True)
class Pooled:
    features: np.ndarray  # (texts, layers, hidden) float32: mean over content tokens
    token_norm: np.ndarray  # (layers,) mean L2 norm of content-token activations
    n_tokens: int  # content tokens pooled in total
    seconds: float  # wall time of the forward passes
    texts_per_rank: tuple[int, ...] = ()  # texts each rank ran forward passes for (one entry: no ranks)


def content_mask(encoding: BatchEncoding, skip_tokens: int = 0) -> torch.Tensor:
    """Positions that carry text: attended, not special (BOS, padding, template markers), inside the
    pooled span when the encoding has one (a reply in its conversation), past the first ``skip_tokens``
    (never the last one: a short text is never empty)."""
    mask = encoding["attention_mask"].bool()
    if "special_tokens_mask" in encoding:
        mask &= ~encoding["special_tokens_mask"].bool()
    if "pool_mask" in encoding:
        mask &= encoding["pool_mask"].bool()
    if skip_tokens:
        seen = mask.long().cumsum(dim=1)
        mask &= seen > torch.clamp(seen[:, -1:] - 1, max=skip_tokens)
    return mask


def readout_mask(encoding: BatchEncoding, config: PoolingConfig) -> torch.Tensor:
    """The positions a readout pools (left padding: a row's last attended position is its last token)."""
    if config.readout == "mean":
        return content_mask(encoding, config.skip_tokens)
    mask = content_mask(encoding) if config.readout == "last" else encoding["attention_mask"].bool()
    last = torch.zeros_like(mask)
    has = mask.any(dim=1)
    index = mask.shape[1] - 1 - mask.flip(dims=[1]).long().argmax(dim=1)
    last[has, index[has]] = True
    return last


@contextmanager
def capture(lm: LoadedModel, layers: Sequence[int], fn: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """Call ``fn(layer, hidden)`` with every listed block's output; hooks are always removed."""
    blocks = lm.blocks
    handles = [
        blocks[layer].register_forward_hook(
            lambda _m, _i, out, layer=layer: fn(layer, block_tensor(out))  # type: ignore[misc]
        )
        for layer in layers
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_backbone(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """Forward through the decoder stack only: the LM head (262k-way for Gemma) is not needed to read."""
    backbone = lm.family.backbone(lm.model)
    backbone(input_ids=input_ids.to(lm.device), attention_mask=attention_mask.to(lm.device), use_cache=False)


def tokenize(lm: LoadedModel, texts: Sequence[str], max_length: int, prep: bool = False) -> list[list[int]]:
    """Token ids of each text; with ``prep``, of the text as the user's turn followed by the reply prompt."""
    if prep:
        chats = [format_chat(lm.tokenizer, [{"role": "user", "content": t}], add_generation_prompt=True) for t in texts]
        texts = [c.text for c in chats]
    ids = [list(x) for x in lm.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    check_lengths(ids, max_length, "text")
    return ids


def check_lengths(ids: Sequence[Sequence[int]], max_length: int, what: str) -> None:
    """Refuse texts longer than ``max_length`` tokens: a reading of a cut text is not a reading of it."""
    for i, row in enumerate(ids):
        if len(row) > max_length:
            raise SteerlabError(
                f"{what} {i + 1} is {len(row)} tokens, more than the {max_length} read per text: shorten it, "
                "or raise the limit (--max-length); steerlab never cuts a text silently"
            )


def tokenize_replies(
    lm: LoadedModel, replies: Sequence[str], contexts: Sequence[str], max_length: int
) -> tuple[list[list[int]], list[list[bool]]]:
    """Each reply as the model's own turn after its user message, in the model's chat format.

    Returns token ids and, per token, whether it belongs to the reply's text: only those are pooled,
    so the user's message shapes the reading (as it does in a conversation) without being read.
    """
    ids_out, keep_out = [], []
    for reply, context in zip(replies, contexts, strict=True):
        chat = format_chat(
            lm.tokenizer,
            [{"role": "user", "content": context}, {"role": "assistant", "content": reply}],
            add_generation_prompt=False,
        )
        turn = chat.turns[-1]
        enc = lm.tokenizer(chat.text, return_offsets_mapping=True, add_special_tokens=True)
        ids = list(enc["input_ids"])
        keep = [end > start and start < turn.end and end > turn.start for start, end in enc["offset_mapping"]]
        ids_out.append(ids)
        keep_out.append(keep)
    check_lengths(ids_out, max_length, "reply (with its user message)")
    return ids_out, keep_out


def pad_batch(
    lm: LoadedModel, ids: Sequence[Sequence[int]], keep: Sequence[Sequence[bool]] | None = None
) -> BatchEncoding:
    """Left-pad token ids and mark special tokens (BOS, EOS, padding, template markers).

    ``keep`` (per token) marks the tokens to pool; it is stored as ``pool_mask``.
    """
    special = set(marker_ids(lm.tokenizer))
    width = max(len(row) for row in ids)
    pad_id = lm.tokenizer.pad_token_id
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    specials = torch.ones((len(ids), width), dtype=torch.long)
    pool = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        start = width - len(seq)
        input_ids[row, start:] = torch.tensor(seq, dtype=torch.long)
        attention[row, start:] = 1
        specials[row, start:] = torch.tensor([int(t in special) for t in seq], dtype=torch.long)
        pool[row, start:] = torch.tensor([int(k) for k in keep[row]] if keep is not None else 1)
    data = {"input_ids": input_ids, "attention_mask": attention, "special_tokens_mask": specials}
    if keep is not None:
        data["pool_mask"] = pool
    return BatchEncoding(data)


def pooled_activations(
    lm: LoadedModel,
    texts: Sequence[str],
    config: PoolingConfig = PoolingConfig(),
    tick: Tick | None = None,
    contexts: Sequence[str] | None = None,
) -> Pooled:
    """Pool every layer's output over each text's readout positions (``config.readout``), one pass per batch.

    With ``contexts`` (one user message per text) each text is read as the reply to its message
    (see :func:`tokenize_replies`) and only the reply's tokens are pooled.
    """
    return pooled_readouts(lm, texts, [config], tick, contexts)[0]


def pooled_readouts(
    lm: LoadedModel,
    texts: Sequence[str],
    configs: Sequence[PoolingConfig],
    tick: Tick | None = None,
    contexts: Sequence[str] | None = None,
) -> list[Pooled]:
    """Several readouts of the same forward passes (they must share tokenization and batching)."""
    first = configs[0]
    shared = {(c.readout == "prep", c.batch_size, c.max_length) for c in configs}
    if len(shared) > 1:
        raise SteerlabError("readouts pooled together must share batch size, max length and prep-ness")
    if first.readout == "prep" and contexts is not None:
        raise SteerlabError("the 'prep' readout reads a text as the user's turn: it cannot read replies")
    n_layers, hidden = lm.n_layers, lm.hidden_size
    features = [np.zeros((len(texts), n_layers, hidden), dtype=np.float32) for _ in configs]
    norm_sum = torch.zeros(n_layers, dtype=torch.float64)
    if contexts is None:
        all_ids, all_keep = tokenize(lm, texts, first.max_length, first.readout == "prep"), None
    else:
        all_ids, all_keep = tokenize_replies(lm, texts, contexts, first.max_length)
    order = sorted(range(len(texts)), key=lambda i: -len(all_ids[i]))
    state: dict[str, torch.Tensor] = {}
    n_tokens = 0

    def pool(layer: int, h: torch.Tensor) -> None:
        h = h.float()
        for j, m in enumerate(state["masks"]):
            state["out"][j, :, layer] = (h * m.unsqueeze(-1)).sum(dim=1) / m.sum(dim=1, keepdim=True).clamp(min=1)
        norm_sum[layer] += (h.norm(dim=-1) * state["content"]).sum().double().cpu()

    rank, size = world()
    batches = list(range(0, len(order), first.batch_size))[rank::size]  # this rank's share of the batches
    start = time.perf_counter()
    with torch.inference_mode(), capture(lm, range(n_layers), pool):
        for lo in batches:
            rows = order[lo : lo + first.batch_size]
            enc = pad_batch(lm, [all_ids[i] for i in rows], [all_keep[i] for i in rows] if all_keep else None)
            content = content_mask(enc).to(lm.device)
            state["content"] = content.float()
            state["masks"] = torch.stack([readout_mask(enc, c).to(lm.device).float() for c in configs])
            state["out"] = torch.zeros((len(configs), len(rows), n_layers, hidden), device=lm.device)
            run_backbone(lm, enc["input_ids"], enc["attention_mask"])
            out = state["out"].cpu().numpy()
            for j, feats in enumerate(features):
                feats[rows] = out[j]
            n_tokens += int(content.sum())
            if tick:
                tick(len(rows), int(enc["attention_mask"].sum()))
    seconds = time.perf_counter() - start
    done = sum(len(order[lo : lo + first.batch_size]) for lo in batches)
    if size > 1:  # every rank filled its own rows: the sums are the whole
        features = [sum_across(torch.from_numpy(f)).numpy() for f in features]
        sum_across(norm_sum)
        counts = sum_across(torch.tensor([n_tokens], dtype=torch.float64))
        n_tokens = int(counts[0])
    per_rank = sum_across(torch.zeros(size, dtype=torch.float64).index_fill_(0, torch.tensor([rank]), done))
    token_norm = (norm_sum / max(n_tokens, 1)).float().numpy()
    ranks = tuple(int(n) for n in per_rank)
    return [Pooled(f, token_norm, n_tokens, seconds, ranks) for f in features]


def token_activations(lm: LoadedModel, encoding: BatchEncoding, layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """Per-token residual stream at ``layers``: {layer: (batch, tokens, hidden) float32 on CPU}."""
    out: dict[int, torch.Tensor] = {}

    def keep(layer: int, h: torch.Tensor) -> None:
        out[layer] = h.float().cpu()

    with torch.inference_mode(), capture(lm, layers, keep):
        run_backbone(lm, encoding["input_ids"], encoding["attention_mask"])
    return out
