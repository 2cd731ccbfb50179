"""Model families: one resolver, exercised on tiny seeded random models of each family steerlab knows."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import transformers as tf

from steerlab.core.corpus import load_corpus
from steerlab.core.errors import ModelError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.activations import pad_batch, tokenize
from steerlab.model.chat import content_positions, prompt_chat
from steerlab.model.models import LoadedModel, byte_tokenizer, load_model, tiny_gemma2_config, wrap_model
from steerlab.read.extraction import ExtractConfig, extract
from steerlab.steer.edits import Edit, build_edits
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.steer.interventions import Displacement, steering

from .conftest import planted_direction_cosine
from .test_steer import PROMPTS, _outputs

SHAPE = {  # the tiny Gemma 2's shape, for every family
    k: getattr(tiny_gemma2_config(), k)
    for k in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "pad_token_id",
        "eos_token_id",
        "bos_token_id",
    )
}
FAMILIES: dict[str, tuple[type, type, dict[str, object]]] = {
    "gemma3_text": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, {"head_dim": 16, "sliding_window": 64}),
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, {}),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, {}),
    "mistral": (tf.MistralConfig, tf.MistralForCausalLM, {}),
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, {}),
}
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LAYER = 1


def tiny_model(family: str, seed: int = 0) -> LoadedModel:
    if family == "gemma2":
        return load_model("random:tiny-gemma2")
    config_class, model_class, extra = FAMILIES[family]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(config_class(**SHAPE, **extra))
    return wrap_model(model, byte_tokenizer(), model_id=f"tiny-{family}")


@pytest.fixture(scope="module", params=["gemma2", *FAMILIES])
def family_lm(request: pytest.FixtureRequest) -> LoadedModel:
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def family_vectors(family_lm: LoadedModel, tiny_corpus_path: Path) -> EmotionVectors:
    return extract(family_lm, load_corpus(tiny_corpus_path), ExtractConfig(seed=0)).vectors


def test_each_family_resolves_its_blocks(family_lm: LoadedModel) -> None:
    assert family_lm.family.blocks == "model.layers"
    assert family_lm.family.component(3) == "model.layers[3].output"
    assert family_lm.blocks is family_lm.model.model.layers and family_lm.n_layers == 4


def test_extraction_recovers_a_planted_direction(family_lm: LoadedModel, tmp_path: Path) -> None:
    assert planted_direction_cosine(family_lm, tmp_path) > 0.99


def test_an_edit_lands_exactly_at_its_layer_and_positions(
    family_lm: LoadedModel, family_vectors: EmotionVectors
) -> None:
    enc = pad_batch(family_lm, tokenize(family_lm, PROMPTS, 64))
    width = enc["input_ids"].shape[1]
    clean, _ = _outputs(family_lm, enc)
    edits = build_edits(family_vectors, [LAYER], add={"joyful": 4.0})
    steered, _ = _outputs(family_lm, enc, edits, "prompt", width - 3)
    delta = 4.0 * float(family_vectors.alpha_unit[LAYER]) * family_vectors.direction("joyful", LAYER)
    cells = (torch.arange(width) < width - 3)[None, :] & (enc["special_tokens_mask"] == 0)
    assert torch.equal(steered[LAYER], torch.where(cells[..., None], clean[LAYER] + delta, clean[LAYER]))
    assert torch.equal(steered[LAYER - 1], clean[LAYER - 1])
    assert not torch.equal(steered[LAYER + 1], clean[LAYER + 1])


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_cached_and_uncached_generation_agree(
    family_lm: LoadedModel, family_vectors: EmotionVectors, positions: str
) -> None:
    edits = build_edits(family_vectors, [LAYER], add={"grim": 40.0})
    enc = family_lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    runs = {}
    for cache in (True, False):
        with steering(family_lm, edits=edits, positions=positions) as s:  # type: ignore[arg-type]
            runs[cache] = s.generate(enc, max_new_tokens=6, do_sample=False, use_cache=cache, pad_token_id=0)
    with steering(family_lm) as s:
        baseline = s.generate(enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(runs[True], runs[False])
    assert not torch.equal(runs[True], baseline)


def test_an_unknown_family_is_one_error_naming_what_to_pass() -> None:
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=272, n_embd=64, n_layer=2, n_head=4, bos_token_id=2))
    with pytest.raises(ModelError, match=r"unknown model family 'gpt2'.*blocks="):
        wrap_model(gpt2, byte_tokenizer())
    with pytest.raises(ModelError, match=r"no decoder blocks at 'transformer\.nope'"):
        wrap_model(gpt2, byte_tokenizer(), blocks="transformer.nope")
    lm = wrap_model(gpt2, byte_tokenizer(), blocks="transformer.h")
    assert lm.n_layers == 2 and lm.family.component(1) == "transformer.h[1].output"
    record = Displacement()
    replies = generate(lm, ["abc"], GenerationConfig(max_new_tokens=3), [probe_edit()], record=record)
    assert len(replies) == 1 and record.mean("probe") == pytest.approx(5.0, rel=1e-5)


def probe_edit() -> Edit:
    """Add 5 along the first axis at layer 0."""
    direction = torch.zeros(64)
    direction[0] = 1.0
    return Edit(kind="add", layer=0, direction=direction, value=5.0, label="probe")


def test_edits_never_touch_template_markers_of_a_chat_template() -> None:
    """With a ChatML template, prompt edits reach only the message's text: not the role names, the
    newlines the template writes, or the reply prompt."""
    lm = tiny_model("llama")
    tokenizer = copy.deepcopy(byte_tokenizer())
    tokenizer.chat_template = CHATML
    lm = wrap_model(lm.model, tokenizer, model_id="tiny-llama-chat")
    chat = prompt_chat(lm.tokenizer, "the rain stopped", chat=True)
    assert chat.text.endswith("<|im_start|>assistant\n")
    enc = lm.tokenizer([chat.text], return_tensors="pt", return_offsets_mapping=True)
    keep = content_positions([chat], enc["offset_mapping"])[0]
    assert lm.tokenizer.decode(enc["input_ids"][0][keep]) == "the rain stopped"
    record = Displacement()
    config = GenerationConfig(chat=True, max_new_tokens=1)
    generate(lm, ["the rain stopped"], config, [probe_edit()], positions="prompt", record=record)
    assert record.counts["probe"] == int(keep.sum())  # only the message's tokens were edited
