"""Add, ablate and clamp directions in the residual stream through pyvene, inside a ``with`` block.

This is the only module that imports pyvene. Edits act on the output of decoder blocks ("layer i" =
output of block i). Each edit is applied at the positions chosen by ``positions``:

* ``all``       every position;
* ``prompt``    the prompt's positions only (index < padded prompt length);
* ``user``      the last user message's tokens only (a chat prompt: the message the reply answers);
* ``generated`` the positions of generated tokens only (index >= prompt length). The prompt, its last
                token included, is untouched, so the first new token is still chosen by the clean
                model and steering acts on every later one.

Special positions of the prompt (BOS, padding, chat-template markers) are never edited: Gemma's BOS
residual is an attention sink of very large norm, and editing it (even ablating a random direction)
derails the whole reply. Prompts built by ``generate`` also protect every token outside the messages'
own text (role labels, the newlines and default system prompt a template writes): ``editable``.
An edit may also be limited to some rows (``rows``: indices into the prompts of one ``generate``
call, across its batches), so one batched generate call can run several conditions side by side, and
a message gate edits only the prompts it fired on. A row no edit selects is computed exactly as
without the edits (``torch.where`` keeps its tensors), so its reply is the baseline's, token for token.
An edit with a running gate (``when``, :class:`edits.TokenRule`) edits only the positions whose own
residual at the layer, before the edit, reads above the gate's threshold; the reading depends only on
that position's pre-edit activation, so cached and uncached generation gate the same positions, and
each row's decisions at generated positions are recorded (:attr:`Displacement.gated`).

Positions are absolute. A call with one token after an earlier call is a KV-cache decode step and
continues where the last call ended; any other call starts at position 0 (a prefill, or a full
re-run without the cache). So cached and uncached generation edit exactly the same positions.
(pyvene clears every hook on the model at each call, so positions cannot come from a pre-hook.)

Units: ``add`` takes a scale-free alpha; the vector added is alpha * alpha_unit[layer] * d, where
alpha_unit is the mean distance between an emotion's mean activation and the grand mean at that layer
(stored in the vector file). ``clamp`` sets the projection on d to center . d + value * alpha_unit.

Ablation removes variation along d without pushing activations anywhere: ``mean`` (the default) sets
the projection on d to its mean over the extraction corpus (``center . d``). ``zero`` sets it to 0,
which moves every token by -(center . d) d: with a mean projection of several alpha units that is
steering in disguise, so it is only done when asked for by name. ``directional`` mean-ablates the
steering layer's direction at every layer (as in refusal-direction ablation).

Every edit records the displacement it causes: the mean norm of the change of the residual stream per
edited token and layer (:class:`Displacement`), so controls can be matched on what they do to
activations rather than on alpha.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

with contextlib.redirect_stdout(io.StringIO()):  # pyvene prints a notice about nnsight at import
    import pyvene as pv

from steerlab.core.errors import InterventionError
from steerlab.core.names import Positions, check_positions
from steerlab.core.vectors import EmotionVectors
from steerlab.model.family import marker_ids
from steerlab.model.models import LoadedModel
from steerlab.model.sites import check_layers
from steerlab.steer.edit_cells import Displacement, EditCells, TrackEnded
from steerlab.steer.edits import Edit, build_edits


class _LayerEdits(pv.SourcelessIntervention):  # type: ignore[misc]
    """All edits of one layer, applied in order: ablations, clamps, then additions."""

    def __init__(self, edits: Sequence[Edit], positions: EditCells, record: Displacement) -> None:
        super().__init__(keep_last_dim=True)
        order = {"ablate": 0, "clamp": 1, "add": 2}
        self.edits = sorted(edits, key=lambda e: order[e.kind])
        self.positions = positions
        self.record = record
        self.end = 0  # position after the last call of this session; 0 = fresh

    def _offset(self, length: int) -> int:
        offset = self.end if (length == 1 and self.end > 0) else 0
        self.end = offset + length
        return offset

    def forward(self, base: torch.Tensor, source: Any = None, subspaces: Any = None, **_: Any) -> torch.Tensor:
        if base.shape[-1] != self.edits[0].direction.shape[0]:
            raise InterventionError(
                f"direction size {self.edits[0].direction.shape[0]} != hidden size {base.shape[-1]}"
            )
        offset = self._offset(base.shape[1])
        masks: dict[str | None, torch.Tensor] = {}
        x = base
        touched: dict[str, torch.Tensor] = {}
        gated = torch.zeros(base.shape[:2], dtype=torch.bool, device=base.device)
        for edit in self.edits:
            if edit.positions not in masks:
                cells = self.positions.mask(offset, base.shape[1], base.device, edit.positions)
                masks[edit.positions] = cells.expand(base.shape[0], -1)
            where = masks[edit.positions]
            if edit.rows is not None:
                where = where & self.positions.rows(edit.rows, base.shape[0], base.device)[:, None]
            if edit.when is not None:  # read before any edit of this layer
                where = where & (edit.when.read(base) > edit.when.threshold)
                gated |= where
            touched[edit.label] = touched.get(edit.label, torch.zeros_like(where)) | where
            d = edit.direction.to(device=x.device, dtype=x.dtype)
            if edit.kind == "add":
                new = x + edit.value * d
            else:
                new = x + (edit.value - (x @ d).unsqueeze(-1)) * d
            x = torch.where(where[..., None], new, x)
        if any(edit.when is not None for edit in self.edits):
            self._record_gate(offset, gated)
        moved = (x.float() - base.float()).norm(dim=-1)
        for label, where in touched.items():
            self.record.add(label, moved[where])
        return x

    def _record_gate(self, offset: int, gated: torch.Tensor) -> None:
        prompt_len = self.positions.prompt_len
        if prompt_len is None:
            return
        generated = torch.arange(offset, offset + gated.shape[1]) >= prompt_len
        for b in range(gated.shape[0]):
            self.record.gate(self.positions.row_offset + b, gated[b].cpu()[generated].tolist())


class Steered:
    """A model with edits attached for the duration of a ``with steering(...)`` block."""

    def __init__(
        self, lm: LoadedModel, edits: Sequence[Edit], positions: Positions, record: Displacement | None = None
    ) -> None:
        self.lm = lm
        self.displacement = record if record is not None else Displacement()
        self._positions = EditCells(positions)
        by_layer: dict[int, list[Edit]] = {}
        for edit in edits:
            by_layer.setdefault(edit.layer, []).append(edit)
        self._layers = [_LayerEdits(items, self._positions, self.displacement) for _, items in sorted(by_layer.items())]
        self._closed = False
        reps = [
            {"component": lm.family.component(layer), "intervention": module}
            for layer, module in zip(sorted(by_layer), self._layers, strict=True)
        ]
        self._pv = pv.IntervenableModel(pv.IntervenableConfig(representations=reps), lm.model) if reps else None

    @contextmanager
    def _session(
        self,
        input_ids: torch.Tensor,
        prompt_len: int | None,
        editable: torch.Tensor | None = None,
        user: torch.Tensor | None = None,
        row_offset: int = 0,
    ) -> Iterator[None]:
        if self._closed:
            raise InterventionError(
                "this steering handle was used after its `with steering(...)` block: generate inside the block"
            )
        special = torch.tensor(marker_ids(self.lm.tokenizer), device=input_ids.device)
        self._positions.prompt_len = prompt_len
        self._positions.row_offset = row_offset
        content = ~torch.isin(input_ids, special)
        self._positions.content = content if editable is None else content & editable.to(content.device)
        self._positions.user = None if user is None else content & user.to(content.device)
        self._positions.ended = None
        for module in self._layers:
            module.end = 0
        yield

    def generate(
        self,
        encoding: Mapping[str, torch.Tensor],
        editable: torch.Tensor | None = None,
        user: torch.Tensor | None = None,
        row_offset: int = 0,
        **kwargs: Any,
    ) -> torch.Tensor:
        """``model.generate`` with the edits; the prompt is the whole (left-padded) input.

        ``editable`` (batch, prompt width) bool limits prompt edits to those tokens (a conversation's
        message text, :func:`steerlab.model.chat.content_positions`); ``user`` marks the last user message's
        tokens (positions "user"); special tokens, and the padding after a row's reply has ended, are
        never edited. ``row_offset``: the index of this batch's first row among the prompts edits'
        ``rows`` count.
        """
        inputs = {k: v.to(self.lm.device) for k, v in encoding.items() if k in ("input_ids", "attention_mask")}
        width = int(inputs["input_ids"].shape[1])
        stops = [int(kwargs.get("pad_token_id") or 0), *_eos_ids(self.lm)]
        kwargs["logits_processor"] = [*kwargs.get("logits_processor", []), TrackEnded(self._positions, stops, width)]
        with torch.inference_mode(), self._session(inputs["input_ids"], width, editable, user, row_offset):
            if self._pv is None:
                return self.lm.model.generate(**inputs, **kwargs)  # type: ignore[operator]
            _, out = self._pv.generate(inputs, unit_locations=None, intervene_on_prompt=True, **kwargs)
            return out

    def logits(self, encoding: Mapping[str, torch.Tensor], prompt_len: int | None = None) -> torch.Tensor:
        """One forward pass with the edits; ``prompt_len`` marks where "generated" positions begin."""
        inputs = {k: v.to(self.lm.device) for k, v in encoding.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode(), self._session(inputs["input_ids"], prompt_len):
            if self._pv is None:
                return self.lm.model(**inputs, use_cache=False).logits
            _, out = self._pv(inputs, unit_locations=None)
            return out.logits


def _eos_ids(lm: LoadedModel) -> list[int]:
    eos = lm.model.generation_config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


@contextmanager
def steering(
    lm: LoadedModel,
    vectors: EmotionVectors | None = None,
    *,
    add: Mapping[str, float] | None = None,
    ablate: Sequence[str] = (),
    clamp: Mapping[str, float] | None = None,
    layers: Sequence[int] | None = None,
    positions: Positions = "all",
    edits: Sequence[Edit] = (),
    record: Displacement | None = None,
) -> Iterator[Steered]:
    """Attach edits for the block: ``with steering(lm, v, add={"hopeful": 4}) as s: s.generate(...)``.

    Named emotions need ``vectors`` (checked against the model); ``edits`` adds raw directions.
    ``layers`` defaults to the vector file's steering layer. Nothing stays attached after the block,
    also when it raises.
    """
    check_positions(positions)
    all_edits = list(edits)
    if add or ablate or clamp:
        if vectors is None:
            raise InterventionError("named emotions need vectors: pass vectors=load_vectors(...)")
        vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
        chosen = vectors.layers_for_steering(layers)
        all_edits += build_edits(vectors, chosen, add, ablate, clamp)
    for edit in all_edits:
        check_layers([edit.layer], lm.n_layers)
        if edit.direction.shape != (lm.hidden_size,):
            raise InterventionError(
                f"direction for {edit.label or edit.kind} has shape {tuple(edit.direction.shape)}, "
                f"the model's hidden size is {lm.hidden_size}"
            )
    steered = Steered(lm, all_edits, positions, record)
    try:
        yield steered
    finally:
        steered._pv = None  # pyvene removes its hooks after each call; drop the wrapper too
        steered._closed = True
