"""Interventions: exact edits at exact positions, KV-cache consistency, scoping, batching."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from steerlab.core.errors import InterventionError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.activations import pad_batch, tokenize
from steerlab.model.models import LoadedModel
from steerlab.steer.edits import Edit, build_edits, random_direction
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.steer.interventions import Displacement, Positions, steering

LAYER = 1
PROMPTS = ["the sun rose over the hills", "a cold wind", "she opened the old wooden door slowly"]


def _outputs(lm, enc, edits=(), positions="all", prompt_len=None):  # type: ignore[no-untyped-def]
    """Output of every block but the last, seen as the next block's input (after any edits).

    pyvene clears all hooks on the model at each call, so the next blocks' ``forward`` is wrapped.
    """
    blocks = lm.blocks
    seen: dict[int, torch.Tensor] = {}

    def wrap(layer: int, block):  # type: ignore[no-untyped-def]
        original = block.forward

        def forward(hidden_states, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen[layer - 1] = hidden_states.detach().clone()
            return original(hidden_states, *args, **kwargs)

        block.forward = forward

    for layer in range(1, lm.n_layers):
        wrap(layer, blocks[layer])
    try:
        with steering(lm, edits=edits, positions=positions) as s:
            logits = s.logits(enc, prompt_len=prompt_len)
    finally:
        for layer in range(1, lm.n_layers):
            del blocks[layer].forward
    return seen, logits


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_addition_is_exact_at_chosen_positions_only(tiny, tiny_vectors, positions: str) -> None:  # type: ignore[no-untyped-def]
    enc = pad_batch(tiny, tokenize(tiny, PROMPTS, 64))
    width = enc["input_ids"].shape[1]
    prompt_len = width - 4  # pretend the last 4 positions were generated
    clean, _ = _outputs(tiny, enc)
    edits = build_edits(tiny_vectors, [LAYER], add={"joyful": 4.0})
    steered, _ = _outputs(tiny, enc, edits, positions, prompt_len)
    delta = 4.0 * float(tiny_vectors.alpha_unit[LAYER]) * tiny_vectors.direction("joyful", LAYER)
    where = {
        "all": torch.ones(width, dtype=torch.bool),
        "prompt": torch.arange(width) < prompt_len,
        "generated": torch.arange(width) >= prompt_len,
    }[positions]
    content = enc["special_tokens_mask"] == 0  # BOS and padding are never edited
    cells = where[None, :] & content
    assert cells.any() and not cells.all()
    expected = torch.where(cells[..., None], clean[LAYER] + delta, clean[LAYER])
    assert torch.equal(steered[LAYER], expected)
    for layer in range(LAYER):
        assert torch.equal(steered[layer], clean[layer])  # upstream layers untouched
    assert not torch.equal(steered[LAYER + 1], clean[LAYER + 1])  # the edit propagates downstream


def test_edits_can_target_some_rows(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = pad_batch(tiny, tokenize(tiny, PROMPTS, 64))
    clean, _ = _outputs(tiny, enc)
    edits = [replace(e, rows=(1,)) for e in build_edits(tiny_vectors, [LAYER], add={"joyful": 4.0})]
    steered, _ = _outputs(tiny, enc, edits)
    assert torch.equal(steered[LAYER][[0, 2]], clean[LAYER][[0, 2]])
    assert not torch.equal(steered[LAYER][1], clean[LAYER][1])


def test_mean_ablation_keeps_the_mean_projection_and_zero_ablation_moves_it(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = pad_batch(tiny, tokenize(tiny, PROMPTS, 64))
    clean, _ = _outputs(tiny, enc)
    d = tiny_vectors.direction("grim", LAYER)
    centre = float(tiny_vectors.center[LAYER] @ d)
    content = enc["special_tokens_mask"] == 0
    assert abs(centre) > 1e-2  # the planted model's mean projection is far from zero, as in real models
    mean_ab, _ = _outputs(tiny, enc, build_edits(tiny_vectors, [LAYER], ablate=["grim"]))
    zero_ab, _ = _outputs(tiny, enc, build_edits(tiny_vectors, [LAYER], ablate=["grim:zero"]))
    got_mean = mean_ab[LAYER][content] @ d
    got_zero = zero_ab[LAYER][content] @ d
    assert torch.allclose(got_mean, torch.full_like(got_mean, centre), atol=1e-4)  # variation removed, mean kept
    assert got_zero.abs().max() < 1e-4
    # Zero-ablation = mean-ablation moved by -(centre . d) d: the push mean-ablation avoids.
    shift = zero_ab[LAYER][content] - mean_ab[LAYER][content]
    assert torch.allclose(shift, (-centre * d).expand_as(shift), atol=1e-4)
    assert torch.equal(mean_ab[LAYER][~content], clean[LAYER][~content])  # BOS / padding untouched


def test_directional_ablation_edits_every_layer(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    edits = build_edits(tiny_vectors, [LAYER], ablate=["grim:directional"])
    d = tiny_vectors.direction("grim", LAYER)
    assert [e.layer for e in edits] == list(range(tiny.n_layers))
    assert all(torch.equal(e.direction, d) for e in edits)
    assert [e.value for e in edits] == [
        pytest.approx(float(tiny_vectors.center[la] @ d)) for la in range(tiny.n_layers)
    ]
    with pytest.raises(InterventionError, match="grim:sideways"):
        build_edits(tiny_vectors, [LAYER], ablate=["grim:sideways"])


def test_displacement_is_recorded_per_edited_token(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = pad_batch(tiny, tokenize(tiny, PROMPTS, 64))
    clean, _ = _outputs(tiny, enc)
    content = enc["special_tokens_mask"] == 0
    record = Displacement()
    edits = [replace(e, label="add", rows=(1, 2)) for e in build_edits(tiny_vectors, [LAYER], add={"joyful": 2.0})]
    edits += [replace(e, label="ablate", rows=(0,)) for e in build_edits(tiny_vectors, [LAYER], ablate=["grim"])]
    with steering(tiny, edits=edits, record=record) as s:
        s.logits(enc)
    assert record.mean("add") == pytest.approx(2.0 * float(tiny_vectors.alpha_unit[LAYER]), rel=1e-4)
    d = tiny_vectors.direction("grim", LAYER)
    row0 = clean[LAYER][0][content[0]]
    moved = (row0 @ d - float(tiny_vectors.center[LAYER] @ d)).abs()  # |projection - its corpus mean|
    assert record.mean("ablate") == pytest.approx(float(moved.mean()), rel=1e-3)
    assert record.counts["ablate"] == int(content[0].sum())


def test_a_handle_used_after_its_block_refuses(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = tiny.tokenizer(PROMPTS[:1], return_tensors="pt")
    with steering(tiny, tiny_vectors, add={"grim": 4.0}) as s:
        pass
    with pytest.raises(InterventionError, match="after its"):
        s.generate(enc, max_new_tokens=2)


def test_clamp_sets_the_projection(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = pad_batch(tiny, tokenize(tiny, PROMPTS, 64))
    steered, _ = _outputs(tiny, enc, build_edits(tiny_vectors, [LAYER], clamp={"edgy": 2.0}))
    d = tiny_vectors.direction("edgy", LAYER)
    target = float(tiny_vectors.center[LAYER] @ d) + 2.0 * float(tiny_vectors.alpha_unit[LAYER])
    content = enc["special_tokens_mask"] == 0
    got = steered[LAYER][content] @ d
    assert torch.allclose(got, torch.full_like(got, target), atol=1e-4)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_kv_cache_matches_full_recompute(tiny, tiny_vectors, positions: Positions) -> None:  # type: ignore[no-untyped-def]
    edits = build_edits(tiny_vectors, [LAYER], add={"grim": 40.0})
    enc = tiny.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    runs = {}
    for cache in (True, False):
        with steering(tiny, edits=edits, positions=positions) as s:
            runs[cache] = s.generate(enc, max_new_tokens=8, do_sample=False, use_cache=cache, pad_token_id=0)
    with steering(tiny) as s:
        baseline = s.generate(enc, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(runs[True], runs[False])
    assert not torch.equal(runs[True], baseline)  # the edit does change the output


def test_generated_mode_leaves_the_first_new_token_to_the_clean_model(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = tiny.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    width = enc["input_ids"].shape[1]
    edits = build_edits(tiny_vectors, [LAYER], add={"grim": 40.0})
    with steering(tiny) as s:
        base = s.generate(enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
    with steering(tiny, edits=edits, positions="generated") as s:
        gen = s.generate(enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
    with steering(tiny, edits=edits, positions="prompt") as s:
        prm = s.generate(enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(gen[:, width], base[:, width])  # first new token: from the unedited prompt
    assert not torch.equal(gen[:, width:], base[:, width:])
    assert not torch.equal(prm[:, width], base[:, width]) or not torch.equal(prm, base)


def test_hooks_are_removed_even_after_an_exception(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    enc = pad_batch(tiny, tokenize(tiny, PROMPTS, 64))
    with torch.inference_mode():
        before = tiny.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    with (
        pytest.raises(RuntimeError, match="boom"),
        steering(tiny, tiny_vectors, add={"joyful": 8.0}, layers=[0, 1, 2]) as s,
    ):
        s.logits(enc)
        raise RuntimeError("boom")
    with torch.inference_mode():
        after = tiny.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.equal(before, after)
    for block in tiny.blocks:
        assert not block._forward_hooks and not block._forward_pre_hooks


def test_batched_generation_equals_one_by_one(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    edits = build_edits(tiny_vectors, [LAYER], add={"edgy": 6.0})
    batched = generate(tiny, PROMPTS, GenerationConfig(max_new_tokens=8, batch_size=3), edits)
    single = generate(tiny, PROMPTS, GenerationConfig(max_new_tokens=8, batch_size=1), edits)
    assert batched == single


def test_bad_steering_inputs(tiny, tiny_vectors) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InterventionError, match="did you mean 'joyful'"):
        build_edits(tiny_vectors, [LAYER], add={"joyfull": 1.0})
    with pytest.raises(InterventionError, match="not a finite number"):
        build_edits(tiny_vectors, [LAYER], add={"joyful": math.nan})
    with pytest.raises(Exception, match="out of range"):
        build_edits(tiny_vectors, [9], add={"joyful": 1.0})
    with (
        pytest.raises(InterventionError, match="hidden size"),
        steering(tiny, edits=[Edit("add", 0, torch.ones(3), 1.0)]),
    ):
        pass
    with pytest.raises(InterventionError, match="unknown positions"), steering(tiny, positions="middle"):  # type: ignore[arg-type]
        pass


def test_random_direction_is_seeded_unit(tiny) -> None:  # type: ignore[no-untyped-def]
    a, b = random_direction(64, 3), random_direction(64, 3)
    assert torch.equal(a, b) and abs(float(a.norm()) - 1) < 1e-6
    assert not torch.equal(a, random_direction(64, 4))


def test_plain_transcript_reply_ends_at_the_turn_separator(tiny) -> None:  # type: ignore[no-untyped-def]
    from steerlab.steer.generation import clean_reply

    assert clean_reply(tiny, " I'll pay rent.\n\nI'll pay rent.\n\nUser: ok", chat=True) == "I'll pay rent."
    assert clean_reply(tiny, "Sure.\nUser: more", chat=True) == "Sure."
    assert clean_reply(tiny, "one\n\ntwo", chat=False) == "one\n\ntwo"


def test_rows_whose_reply_has_ended_are_not_edited_and_user_positions_are_the_message() -> None:
    from steerlab.steer.edit_cells import EditCells, TrackEnded

    pos = EditCells("all", prompt_len=3, content=torch.ones(2, 3, dtype=torch.bool))
    track = TrackEnded(pos, stop_ids=[0, 7], prompt_len=3)
    ids = torch.tensor([[5, 5, 5, 9, 7], [5, 5, 5, 9, 4]])  # row 0 generated 9 then the stop token 7
    track(ids, torch.zeros(2, 10))
    assert pos.ended is not None and pos.ended.tolist() == [True, False]
    step = pos.mask(offset=5, length=1, device=torch.device("cpu"))  # the next decode step: padding for row 0
    assert step[:, 0].tolist() == [False, True]
    prompt = pos.mask(offset=0, length=3, device=torch.device("cpu"))  # prefill is never masked by the end
    assert prompt.all()
    pos.user = torch.tensor([[False, True, True], [False, False, True]])
    user = pos.mask(0, 3, torch.device("cpu"), "user")
    assert user.tolist() == [[False, True, True], [False, False, True]]
    assert not pos.mask(3, 1, torch.device("cpu"), "user").any()  # never a generated token


def test_user_positions_edit_exactly_the_message_tokens(tiny: LoadedModel, tiny_vectors: EmotionVectors) -> None:
    edits = build_edits(tiny_vectors, [1], add={"joyful": 4})
    record = Displacement()
    prompts = ["hello there", "sun"]
    generate(tiny, prompts, GenerationConfig(max_new_tokens=4), edits, "user", record)
    message_tokens = sum(len(tiny.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in prompts)
    assert record.counts["joyful"] == message_tokens  # the prompt's own tokens once, no generated token
