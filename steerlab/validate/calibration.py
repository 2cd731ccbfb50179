"""Clean activations of a suite's prompts, of the tokens an edit touches: they predict what an ablation
does to them (its displacement), give the control populations their on-manifold directions, and, for
held-out messages, the mean-ablation target (see :mod:`.conditions`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from steerlab.core.names import Ablation
from steerlab.core.vectors import EmotionVectors
from steerlab.model.activations import content_mask, pad_batch, token_activations
from steerlab.model.chat import ChatText, last_user_flags, raw_chat
from steerlab.model.models import LoadedModel

CALIBRATION_PROMPTS = 32  # prompts whose clean activations calibrate displacement and give control directions


class Calibration:
    """Clean activations of the prompts at each layer, of the tokens an edit touches (the message text,
    or with ``user`` the last user message only): they predict an ablation's displacement, and pairs of
    prompts give the control populations' directions."""

    def __init__(
        self,
        lm: LoadedModel,
        vectors: EmotionVectors,
        chats: Sequence[ChatText | str],
        reference: Calibration | None = None,
    ) -> None:
        """``reference``: held-out messages whose tokens' mean projection is a mean-ablation's target
        (None: the extraction corpus's centre)."""
        self.lm, self.vectors, self.reference = lm, vectors, reference
        self.chats = [c if isinstance(c, ChatText) else raw_chat(c) for c in list(chats)[:CALIBRATION_PROMPTS]]
        self.texts = [c.text for c in self.chats]
        self._tokens: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def _read(self, layer: int, user: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(edited tokens (t, hidden), per-prompt mean activation (prompts, hidden))."""
        if (layer, user) not in self._tokens:
            enc = self.lm.tokenizer(self.texts, return_offsets_mapping=True)
            keep = [last_user_flags(c, o) for c, o in zip(self.chats, enc["offset_mapping"], strict=True)]
            batch = pad_batch(self.lm, enc["input_ids"], keep if user else None)
            acts = token_activations(self.lm, batch, [layer])[layer]
            mask = content_mask(batch)
            means = (acts * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            self._tokens[layer, user] = (acts[mask], means)
        return self._tokens[layer, user]

    def tokens(self, layer: int, user: bool = False) -> torch.Tensor:
        return self._read(layer, user)[0]

    def _moved(self, layer: int, d: torch.Tensor, mode: Ablation, user: bool) -> float:
        """Mean |projection - target| over the tokens for ablating ``d`` at ``layer``."""
        if mode == "zero":
            target = 0.0
        elif self.reference is not None:
            target = self.reference.mean_projection(d, layer, user)
        else:
            target = float(self.vectors.center[layer] @ d)
        return float((self.tokens(layer, user) @ d - target).abs().mean())

    def ablation(self, emotion: str, layers: Sequence[int], mode: Ablation, user: bool = False) -> float:
        """Mean displacement per token and layer for ablating ``emotion``."""
        if mode == "directional":
            d = self.vectors.direction(emotion, layers[0])
            return float(np.mean([self._moved(la, d, "mean", user) for la in range(self.vectors.n_layers)]))
        return float(np.mean([self._moved(la, self.vectors.direction(emotion, la), mode, user) for la in layers]))

    def pairs(self, count: int, seed: int) -> list[tuple[int, int]]:
        """``count`` distinct random pairs of prompts (fewer when the prompts have fewer pairs)."""
        n = len(self.texts)
        every = [(a, b) for a in range(n) for b in range(a + 1, n)]
        order = np.random.default_rng(seed).permutation(len(every))
        return [every[i] for i in order[:count]]

    def direction(self, pair: tuple[int, int], layer: int, user: bool = False) -> torch.Tensor:
        """The unit difference of the two prompts' mean activations at ``layer``."""
        means = self._read(layer, user)[1]
        d = means[pair[0]] - means[pair[1]]
        return d / d.norm().clamp(min=1e-12)

    def mean_projection(self, d: torch.Tensor, layer: int, user: bool) -> float:
        """The mean projection on ``d`` of these prompts' tokens of one kind (a mean-ablation's target)."""
        return float((self.tokens(layer, user) @ d).mean())

    def displacement(self, directions: dict[int, torch.Tensor], mode: Ablation, user: bool = False) -> float:
        """Mean |projection - target| per token and layer for ablating one direction per layer."""
        return float(np.mean([self._moved(la, d, mode, user) for la, d in directions.items()]))
