"""Model-free degeneration and echo detectors: known loops and markup are flagged, prose is not."""

from __future__ import annotations

import math

import pytest

from steerlab.read.coherence import (
    DegenerationLimits,
    degenerate_reasons,
    degeneration,
    echo_fraction,
)

DEGENERATE = [
    "The earth, the earth, the earth, the earth, the earth, the earth.",
    "I'll be there. I'll be there. I'll be there. I'll be there.",
    "<div><div><div><div><div><div></div></div>",
    "**** **** **** ****",
    "ha ha ha ha ha ha ha ha ha ha",
    "The weather today is lovely and I think we should go for a walk in the park. " * 3,
    "sad sad sad sad sad sad sad sad sad sad sad sad sad sad sad sad sad sad sad sad",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    "```python\n```\n```python\n```",
    "I am so happy I am so happy I am so happy I am so happy",
]

FLUENT = [
    "Sure! The capital of France is Paris, which sits on the river Seine.",
    "I'm sorry to hear that. Losing a pet is hard, and it's okay to take some time to grieve.",
    "Honestly, I think the second option is better: it costs less and the reviews are stronger.",
    "Yes.",
    ("That sounds exciting! Have you decided which city you'll visit first, or are you still planning the route?"),
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "I don't know the answer, but a librarian at your local branch could point you to a source.",
    "Take a deep breath. The exam is only one part of your grade, and you have prepared well.",
    "We missed the last train, so we walked home under the stars and talked about everything.",
    "Try adding a pinch of salt to the dough; it brings out the sweetness of the butter.",
    (
        "My grandmother grew tomatoes every summer, and the kitchen always smelled of basil and "
        "warm soil. She taught me to pick them just before they split."
    ),
    (
        "The meeting has moved to Thursday at 3 pm. Please bring the quarterly numbers and your "
        "questions about the budget."
    ),
    "To install it, run pip install requests, then import it in your script... It should work.",
    "I think so. I think you're right.",
]


@pytest.mark.parametrize("text", DEGENERATE)
def test_degenerate_replies_are_flagged(text: str) -> None:
    assert degenerate_reasons(text, DegenerationLimits())


@pytest.mark.parametrize("text", FLUENT)
def test_fluent_replies_are_not_flagged(text: str) -> None:
    assert degenerate_reasons(text, DegenerationLimits()) == ()


def test_compression_separates_prose_from_loops() -> None:
    limit = DegenerationLimits().min_compression
    prose = [degeneration(t).compression for t in FLUENT if len(t) >= 60]
    loops = [degeneration(t).compression for t in DEGENERATE if len(t) >= 60]
    assert len(prose) >= 8 and len(loops) >= 3
    assert min(prose) > limit + 0.3 and max(loops) < limit  # measured: >= 0.79 and <= 0.36


def test_reasons_name_measure_value_and_limit() -> None:
    assert degenerate_reasons("ha ha ha ha ha ha ha ha ha ha") == ("repeat share 1.00 > 0.5",)
    assert degenerate_reasons("**** **** **** ****") == ("markup share 0.84 > 0.3",)
    loop = "sad " * 20
    assert f"compression {degeneration(loop).compression:.2f} < 0.4" in degenerate_reasons(loop)
    assert degenerate_reasons("") == ("empty",) and degenerate_reasons("  \n") == ("empty",)


def test_measures() -> None:
    d = degeneration("The earth, the earth, the earth, the earth, the earth, the earth.")
    assert d.repeat_share == 1.0 and d.markup_share == 0.0
    assert math.isnan(degeneration("Short reply.").compression)  # too short to compress
    assert degeneration("one two three four five one two three").repeat_share == 0.75
    assert degeneration("See <b>this</b> now").markup_share == pytest.approx(7 / 19)
    strict = DegenerationLimits(max_repeat_share=0.1)
    assert degenerate_reasons("one two three four five one two three", strict)


def test_echo_fraction() -> None:
    prompt = "Tell me a story about a dragon who lives in a cave under the old mountain."
    assert echo_fraction(prompt, prompt) == 1.0
    assert echo_fraction(prompt.upper().replace(" ", "  "), prompt) == 1.0  # case, spacing
    assert echo_fraction("Bananas are yellow and rich in potassium.", prompt) == 0.0
    half = "Tell me a story about a dragon! Once upon a time there was a princess."
    assert echo_fraction(half, prompt) == pytest.approx(0.5, abs=0.1)  # 7 of 16 words
    assert echo_fraction("hi, how are you?", "Hi there") == 0.5  # short prompt: word overlap
    assert echo_fraction("anything", "") == 0.0
