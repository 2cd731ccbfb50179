"""The bookkeeping of a steered call that needs no pyvene (:mod:`.interventions` applies the edits):
which (row, position) cells an edit may change, given the positions asked for, the special tokens,
the rows and the replies that have ended; and the displacement the edits cause."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steerlab.core.errors import InterventionError


class Displacement:
    """Mean ||edited - original|| per edited token and layer, per edit label (filled while generating)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.gated: dict[int, list[bool]] = {}  # row -> running gate's decision at each generated position

    def gate(self, row: int, decisions: list[bool]) -> None:
        self.gated.setdefault(row, []).extend(decisions)

    def add(self, label: str, norms: torch.Tensor) -> None:
        self.sums[label] = self.sums.get(label, 0.0) + float(norms.sum())
        self.counts[label] = self.counts.get(label, 0) + int(norms.numel())

    def merge(self, sums: dict[str, float], counts: dict[str, int]) -> None:
        """Add another record's totals (another rank's share of the same run)."""
        for label, total in sums.items():
            self.sums[label] = self.sums.get(label, 0.0) + total
            self.counts[label] = self.counts.get(label, 0) + counts[label]

    def mean(self, label: str) -> float:
        return self.sums[label] / self.counts[label] if self.counts.get(label) else float("nan")


@dataclass
class EditCells:
    """Which (row, position) cells of a call to edit, given where the call starts."""

    mode: str
    prompt_len: int | None = None  # padded prompt width; None = no generation (all positions are prompt)
    content: torch.Tensor | None = None  # (batch, prompt_len) bool: prompt positions that are not special
    user: torch.Tensor | None = None  # (batch, prompt_len) bool: the last user message's tokens
    ended: torch.Tensor | None = None  # (batch,) bool: rows whose reply has ended (what follows is padding)
    row_offset: int = 0  # index of the batch's first row among the prompts of the generate call

    def rows(self, rows: tuple[int, ...], batch: int, device: torch.device) -> torch.Tensor:
        """(batch,) bool: which rows of this batch are among ``rows`` (call-wide indices)."""
        chosen = torch.zeros(batch, dtype=torch.bool, device=device)
        chosen[[r - self.row_offset for r in rows if 0 <= r - self.row_offset < batch]] = True
        return chosen

    def mask(self, offset: int, length: int, device: torch.device, mode: str | None = None) -> torch.Tensor:
        mode = mode or self.mode
        pos = torch.arange(offset, offset + length, device=device)
        prompt_len = self.prompt_len if self.prompt_len is not None else offset + length
        if mode in ("prompt", "user"):
            keep = pos < prompt_len
        elif mode == "generated":
            keep = pos >= prompt_len
        else:
            keep = torch.ones(length, dtype=torch.bool, device=device)
        keep = keep[None, :]
        allowed = self.user if mode == "user" else self.content
        if mode == "user" and allowed is None:
            raise InterventionError("positions 'user' needs a chat prompt (the user's message tokens)")
        if allowed is not None:
            allowed = allowed.to(device)
            in_prompt = pos < allowed.shape[1]
            cells = torch.ones((allowed.shape[0], length), dtype=torch.bool, device=device)
            cells[:, in_prompt] = allowed[:, pos[in_prompt]]
            keep = keep & cells
        if self.ended is not None and offset >= prompt_len:  # a decode step: finished rows feed padding
            keep = keep & ~self.ended.to(device)[:, None]
        return keep


class TrackEnded:
    """A logits processor that marks rows whose reply has ended, so later steps edit no padding."""

    def __init__(self, positions: EditCells, stop_ids: Sequence[int], prompt_len: int) -> None:
        self.positions, self.prompt_len = positions, prompt_len
        self.stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        new = input_ids[:, self.prompt_len :]
        self.positions.ended = torch.isin(new, self.stop.to(new.device)).any(dim=1) if new.numel() else None
        return scores
