"""One owner for what differs between model families.

A family says where the decoder blocks are (and so how pyvene names a block's output), whether the
tokenizer adds BOS itself, which tokens are template markers that are never pooled or edited, and how
a conversation is formatted: the model's own chat template when it has one, a plain
``User: ...\\n\\nAssistant: ...`` transcript otherwise. Everything else asks :func:`resolve_family`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from torch import nn
from transformers import PreTrainedTokenizerBase

from steerlab.core.errors import ModelError

# transformers' ``config.model_type`` -> attribute path of the decoder blocks from the causal LM.
KNOWN_BLOCKS: dict[str, str] = {
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "phi3": "model.layers",
}


@dataclass(frozen=True)
class Family:
    """Where a model family keeps its decoder blocks, as :func:`resolve_family` found them."""

    model_type: str  # transformers' config.model_type ("llama", "gemma2", ...)
    blocks: str  # attribute path of the decoder blocks (an nn.ModuleList) from the causal LM

    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The decoder blocks of ``model``."""
        found = _attribute(model, self.blocks)
        if not isinstance(found, nn.ModuleList) or len(found) == 0:
            raise ModelError(
                f"{type(model).__name__} has no decoder blocks at {self.blocks!r}: "
                "pass blocks='<path of its nn.ModuleList of decoder blocks>' to wrap_model"
            )
        return found

    def backbone(self, model: nn.Module) -> nn.Module:
        """The module that owns the blocks (the decoder stack without the LM head)."""
        parent = _attribute(model, self.blocks.rpartition(".")[0]) if "." in self.blocks else model
        return parent if isinstance(parent, nn.Module) else model

    def component(self, layer: int) -> str:
        """pyvene's name of block ``layer``'s output, relative to the causal LM."""
        return f"{self.blocks}[{layer}].output"


def resolve_family(model: nn.Module, blocks: str | None = None) -> Family:
    """The family of ``model``; ``blocks`` names the decoder blocks of a family steerlab does not know."""
    model_type = str(getattr(getattr(model, "config", None), "model_type", "") or type(model).__name__)
    path = blocks or KNOWN_BLOCKS.get(model_type)
    if path is None:
        raise ModelError(
            f"unknown model family {model_type!r} ({type(model).__name__}): steerlab knows "
            f"{', '.join(sorted(KNOWN_BLOCKS))}; pass blocks='model.layers' (the path of its decoder blocks) "
            "to steerlab.wrap_model"
        )
    family = Family(model_type, path)
    family.layers(model)  # fail now, not at the first edit
    return family


def _attribute(root: object, path: str) -> object:
    try:
        return reduce(getattr, path.split("."), root)
    except AttributeError:
        return None


def has_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Conversations use the model's own chat template when it has one, the plain transcript otherwise."""
    return bool(getattr(tokenizer, "chat_template", None))


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether tokenising text prepends BOS (Gemma does; SmolLM2 and Qwen do not)."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def marker_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that are never pooled or edited wherever they appear: BOS, EOS, padding and the
    template's special tokens (``<start_of_turn>``, ``<|im_start|>``). Role names and the newlines a
    template writes around a turn are ordinary tokens; they are told apart by position
    (:func:`steerlab.model.chat.content_positions`)."""
    return sorted(set(tokenizer.all_special_ids))
