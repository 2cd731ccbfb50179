"""Running a suite: check it, expand its conditions, generate and re-read its rows (:mod:`.rows`),
measure quality and displacement, and decide the claims."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from steerlab.core.corpus import NEUTRAL
from steerlab.core.errors import SuiteError
from steerlab.core.vectors import EmotionVectors
from steerlab.model.chat import prompt_chat, prompt_text
from steerlab.model.models import LoadedModel
from steerlab.read.folds import Step
from steerlab.read.gate import GateDecision, gate_for, read_gate
from steerlab.read.readers import get_reader
from steerlab.steer.edits import Edit
from steerlab.validate.claims import evaluate_claims, low_power
from steerlab.validate.conditions import (
    Calibration,
    Condition,
    condition_edits,
    expand_conditions,
    needs_calibration,
)
from steerlab.validate.decide import Readings
from steerlab.validate.measure import dose_table
from steerlab.validate.prompts import Prompt, load_prompts, resolve_path, suite_prompts
from steerlab.validate.reuse import check_replies_from, reused_rows
from steerlab.validate.rows import Rows, generate_rows, measure_rows, read_rows, suite_jobs, with_instruction
from steerlab.validate.spec import LABEL, TARGET, Suite
from steerlab.validate.validity import model_reply_validity, reader_validation


@dataclass(frozen=True)
class RunOptions:
    prompts: str | None = None  # replace the suite's prompts with this file
    n: int | None = None  # use at most this many prompts (overrides the suite's n)
    allow_random_claims: bool = False  # tests: give verdicts on random-weight models too
    unvalidated_reader: bool = False  # run with a reader never validated on this model's judged replies
    replies_from: str | None = None  # an earlier run's folder: its replies are read again, not generated


@dataclass
class SuiteResult:
    suite: Suite
    prompts: list[Prompt]
    conditions: list[Condition]
    replies: list[list[list[str]]]  # [condition][prompt][sample]
    readings: Readings  # the primary reader's scores
    secondary: list[Readings]
    ppl: np.ndarray  # (conditions, prompts, samples)
    distinct: np.ndarray  # (conditions, prompts, samples)
    emotions: tuple[str, ...]
    is_claim: bool  # False on random weights: verdicts are not claims about the model
    seconds: float
    quality: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    dose: list[dict[str, Any]] = field(default_factory=list)
    gates: dict[str, list[GateDecision]] = field(default_factory=dict)  # gated condition -> decision per prompt
    validation: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    note: str = ""


def check_suite(suite: Suite, vectors: EmotionVectors, prompts: list[Prompt]) -> tuple[str, int]:
    """The reader and layer the suite uses; every emotion the suite names exists in the vectors."""
    reader = suite.measurement.reader or vectors.default_reader
    get_reader(reader)
    layer = vectors.layer_for_reading(suite.measurement.layer)
    vectors.check_layer(layer, f"{suite.path}: field 'measurement.layer'")
    for prompt in prompts:
        if prompt.label is not None and prompt.label not in (*vectors.emotions, NEUTRAL):
            raise SuiteError(
                f"prompt label {prompt.label!r} is not an emotion of the vectors ({', '.join(vectors.emotions)})"
            )
    for m in suite.metrics:
        for name in (m.emotion, *m.against):
            if name not in (TARGET, LABEL, *vectors.emotions):
                raise SuiteError(
                    f"{suite.path}: metric {m.name!r} names {name!r}: use 'target', 'label' or one of "
                    f"{', '.join(vectors.emotions)}"
                )
    return reader, layer


def run_suite(
    suite: Suite,
    lm: LoadedModel,
    vectors: EmotionVectors,
    options: RunOptions = RunOptions(),
    step: Step | None = None,
) -> SuiteResult:
    """Generate, re-read with the clean model, measure, decide (see the module doc). ``step(phase, done,
    total)`` follows each phase: calibrate, gates, generate (or reuse replies), re-read, measure, validate readers,
    decide."""
    start = time.perf_counter()
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    prompts = suite_prompts(suite, options.prompts, options.n)
    reader, layer = check_suite(suite, vectors, prompts)
    is_random = bool(lm.is_random or vectors.meta.get("is_random"))
    unvalidated = _unvalidated_readers(suite, lm, vectors, reader, is_random, options)
    gen = suite.generation
    shown = [suite.prompts.template.format(text=q.text) for q in prompts]
    _check_prompt_lengths(suite, lm, shown)
    with phase(step, "calibrate"):
        calibration = _calibration(suite, lm, vectors, shown) if needs_calibration(suite) else None
    conditions = expand_conditions(suite, vectors, prompts, calibration)
    rows = Rows(suite, conditions, prompts, shown, suite_jobs(conditions, len(prompts), gen.samples))
    with phase(step, "gates"):
        gates = read_gates(lm, vectors, conditions, shown)
    known_ppl = None
    if options.replies_from:  # an earlier run's replies: nothing to edit or generate
        with phase(step, "reuse replies"):
            replies, record, known_ppl = reused_rows(check_replies_from(options.replies_from), rows, gates)
    else:
        edits = _row_edits(vectors, conditions, prompts, gates)
        replies, record = generate_rows(lm, rows, edits, (lambda d, t: step("generate", d, t)) if step else None)
    flat = [replies[c][p][s] for c, p, s in rows.jobs]
    with phase(step, "re-read"):
        first = read_rows(lm, vectors, rows, flat, reader, layer, None)
        readings = [first] + [read_rows(lm, vectors, rows, flat, r, layer, first) for r in suite.measurement.secondary]
    with phase(step, "measure"):
        quality, ppl, distinct = measure_rows(lm, rows, replies, flat, record, first, known_ppl)
    with phase(step, "validate readers"):
        validation = reader_validation(lm, vectors, suite, [r.reader for r in readings], layer)
    degenerate = {row["name"] for row in quality if row["degenerate"]}
    decide = options.allow_random_claims or not is_random
    with phase(step, "decide"):
        claims = evaluate_claims(
            suite, conditions, prompts, vectors.emotions, first, readings[1:], degenerate, validation, decide, gen.seed
        )
    result = SuiteResult(
        suite, prompts, conditions, replies, first, readings[1:], ppl, distinct, tuple(vectors.emotions),
        not is_random, 0.0, quality, claims, validation=validation,
    )  # fmt: skip
    result.dose = dose_table(result)
    result.gates = gates
    _warn(result, unvalidated, is_random, options)
    result.seconds = time.perf_counter() - start
    return result


@contextmanager
def phase(step: Step | None, name: str) -> Iterator[None]:
    """One reported phase (opened at 0/1, closed at 1/1): a long call between progress lines is still
    named, timed and, in logs, heard from every 30 s."""
    if step:
        step(name, 0, 1)
    yield
    if step:
        step(name, 1, 1)


def _unvalidated_readers(
    suite: Suite, lm: LoadedModel, vectors: EmotionVectors, reader: str, is_random: bool, options: RunOptions
) -> list[str]:
    """The suite's readers never validated on the model's own replies; refused unless asked for (or random)."""
    unvalidated = [
        r for r in (reader, *suite.measurement.secondary) if model_reply_validity(vectors, lm.model_id, r) is None
    ]
    if unvalidated and not is_random and not options.unvalidated_reader:
        raise SuiteError(
            f"reader {', '.join(unvalidated)} was never validated on {lm.model_id}'s own replies: run "
            "`steerlab fit-reader --vectors FILE --judged LABELS.jsonl` (see eval/labels/), "
            "or pass --unvalidated-reader (every verdict then says so)"
        )
    return unvalidated


def _check_prompt_lengths(suite: Suite, lm: LoadedModel, shown: list[str]) -> None:
    """Every prompt, with the longest instruction of the suite, fits the model's context with the reply."""
    gen = suite.generation
    longest = max((c.instruction or "" for c in suite.conditions), key=len)
    for i, text in enumerate(shown):
        full = prompt_text(lm.tokenizer, with_instruction(text, longest), gen.chat, gen.frame)
        lm.check_length(len(lm.tokenizer(full)["input_ids"]), f"prompt {i + 1} of the suite", gen.max_new_tokens)


def _row_edits(
    vectors: EmotionVectors,
    conditions: list[Condition],
    prompts: list[Prompt],
    gates: dict[str, list[GateDecision]],
) -> list[list[list[Edit]]]:
    """The edits of every [condition][prompt]: none where the condition's gate did not fire."""
    return [
        [
            [] if c.name in gates and not gates[c.name][p].fired else condition_edits(c, vectors, q.label)
            for p, q in enumerate(prompts)
        ]
        for c in conditions
    ]


def _warn(result: SuiteResult, unvalidated: list[str], is_random: bool, options: RunOptions) -> None:
    """What every verdict of ``result`` must be read with: low power, an unvalidated reader, random weights."""
    weak = low_power(result.claims)
    if weak:
        result.warnings.append(
            f"power < 0.8 at the minimum effect of interest for {len(weak)} claim(s): "
            f"{', '.join(weak[:5])}{' ...' if len(weak) > 5 else ''}; a null verdict there "
            "is weak evidence of no effect"
        )
    if unvalidated and not is_random:
        result.warnings.append(
            f"reader {', '.join(unvalidated)} was never validated on this model's own replies (--unvalidated-reader): "
            "no verdict below is backed by a validated reader"
        )
    if is_random:
        result.note = "random weights: the verdicts test the plumbing and are not claims about the model" + (
            "" if options.allow_random_claims else "; every claim is reported inconclusive"
        )
    if options.replies_from:
        reused = f"replies, perplexity and displacement from an earlier run ({options.replies_from}), read again"
        result.note = f"{result.note}; {reused}" if result.note else reused


def read_gates(
    lm: LoadedModel, vectors: EmotionVectors, conditions: list[Condition], shown: list[str]
) -> dict[str, list[GateDecision]]:
    """Each gated condition's decision per prompt: a prompt whose gate does not fire gets no edit, so its
    replies are the baseline's (same rows, same seeds)."""
    decided: dict[str, list[GateDecision]] = {}
    out = {}
    for cond in conditions:
        if cond.when:
            if cond.when not in decided:
                decided[cond.when] = read_gate(lm, vectors, gate_for(vectors, cond.when), shown)
            out[cond.name] = decided[cond.when]
    return out


def _calibration(suite: Suite, lm: LoadedModel, vectors: EmotionVectors, shown: list[str]) -> Calibration:
    """The prompts' clean activations, with the held-out messages of ``generation.ablation_mean``."""
    gen = suite.generation
    reference = None
    if gen.ablation_mean:
        held = load_prompts(resolve_path(gen.ablation_mean, suite.path))
        reference = Calibration(lm, vectors, [prompt_chat(lm.tokenizer, q.text, gen.chat, gen.frame) for q in held])
    return Calibration(lm, vectors, [prompt_chat(lm.tokenizer, s, gen.chat, gen.frame) for s in shown], reference)
