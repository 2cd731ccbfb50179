"""Baseline and steered generation: batched, left-padded, greedy by default, chat-formatted on request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steerlab.core.errors import SteerlabError
from steerlab.model.chat import content_positions, last_user_positions, prompt_chat
from steerlab.model.family import has_template
from steerlab.model.models import LoadedModel
from steerlab.steer.interventions import Displacement, Edit, Positions, steering


@dataclass(frozen=True)
class GenerationConfig:
    """How replies are generated: length, sampling, chat formatting and the few-shot frame."""

    max_new_tokens: int = 48  # tokens generated per reply
    temperature: float = 0.0  # 0 = greedy (deterministic); > 0 samples
    top_p: float = 1.0  # nucleus sampling mass when temperature > 0
    seed: int = 0  # sampling seed (per batch: seed + batch index)
    chat: bool = False  # format each prompt as a user turn and generate the assistant reply
    batch_size: int = 8  # prompts per generate call
    frame: tuple[tuple[str, str], ...] = ()  # chat: (user, assistant) exchanges shown before each prompt


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    edits: Sequence[Edit] = (),
    positions: Positions = "all",
    record: Displacement | None = None,
) -> list[str]:
    """Generate one continuation per prompt with ``edits`` attached (none = the baseline).

    ``record`` collects the displacement each edit label causes (mean norm per edited token and layer)
    and a running gate's decisions per prompt; an edit's ``rows`` index ``prompts``.
    """
    if config.temperature < 0 or config.max_new_tokens < 1:
        raise SteerlabError(
            f"temperature {config.temperature} / max new tokens {config.max_new_tokens}: "
            "temperature must be >= 0 and max new tokens >= 1"
        )
    chats = [prompt_chat(lm.tokenizer, p, config.chat, config.frame) for p in prompts]
    replies: list[str] = []
    sample = config.temperature > 0
    options = dict(
        max_new_tokens=config.max_new_tokens,
        do_sample=sample,
        pad_token_id=lm.tokenizer.pad_token_id,
        **({"temperature": config.temperature, "top_p": config.top_p} if sample else {"top_p": None, "top_k": None}),
    )
    with steering(lm, edits=edits, positions=positions, record=record) as steered:
        for b, lo in enumerate(range(0, len(chats), config.batch_size)):
            batch = chats[lo : lo + config.batch_size]
            enc = lm.tokenizer([c.text for c in batch], return_tensors="pt", padding=True, return_offsets_mapping=True)
            offsets = enc.pop("offset_mapping")
            editable, user = content_positions(batch, offsets), last_user_positions(batch, offsets)
            with torch.random.fork_rng():
                torch.manual_seed(config.seed + b)
                out = steered.generate(enc, editable=editable, user=user, row_offset=lo, **options)
            new = out[:, enc["input_ids"].shape[1] :]
            replies += [
                clean_reply(lm, t, config.chat) for t in lm.tokenizer.batch_decode(new, skip_special_tokens=True)
            ]
    return replies


def clean_reply(lm: LoadedModel, text: str, chat: bool) -> str:
    """The assistant's turn of a plain transcript ends at the first blank line, the turn separator
    of the ``User: ...\n\nAssistant: ...`` format (a base model goes on writing further turns or
    repeats itself there); with a chat template, the end-of-turn token ends it."""
    if chat and not has_template(lm.tokenizer):
        text = text.strip()
        for marker in ("\n\n", "\nUser:", "\nAssistant:"):
            cut = text.find(marker)
            if cut >= 0:
                text = text[:cut]
    return text.strip()
