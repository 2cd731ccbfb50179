"""Running a suite: generate every (prompt, condition, sample), re-read the replies with the clean model,
measure quality and displacement, and decide the claims.

Rows of *different* conditions share a generate call: each row carries its own condition's edits
(``Edit.rows``), so the cost of a suite grows with its rows, not with conditions times an idle batch.
Chat replies are read in their conversation: the suite's prompt as the user's message (the same for
every condition, so a prompting condition's instruction is not read as part of the reply's context),
then the reply as the model's own turn; continuations are read alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..chat import prompt_chat, prompt_text
from ..corpus import NEUTRAL
from ..errors import SuiteError
from ..gate import GateDecision, gate_for, read_gate
from ..generation import GenerationConfig, generate
from ..interventions import Displacement
from ..models import LoadedModel
from ..parallel import gather_json, world
from ..readers import get_reader, read_replies, read_texts
from ..vectors import EmotionVectors
from .conditions import (
    Calibration,
    Condition,
    condition_edits,
    expand_conditions,
    needs_calibration,
)
from .decide import Readings, evaluate_claims, low_power
from .measure import distinct2, dose_table, quality_table, reply_perplexity
from .prompts import Prompt, load_prompts, resolve_path, suite_prompts
from .spec import LABEL, TARGET, Suite
from .validity import model_reply_validity, reader_validation


@dataclass(frozen=True)
class RunOptions:
    prompts: str | None = None  # replace the suite's prompts with this file
    n: int | None = None  # use at most this many prompts (overrides the suite's n)
    allow_random_claims: bool = False  # tests: give verdicts on random-weight models too
    unvalidated_reader: bool = False  # run with a reader never validated on this model's judged replies


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


Progress = Callable[[int, int], None]  # (rows done, rows total)


def _with_instruction(text: str, instruction: str) -> str:
    return f"{text}\n\n{instruction}" if instruction else text


def check_suite(suite: Suite, vectors: EmotionVectors, prompts: list[Prompt]) -> tuple[str, int]:
    """The reader and layer the suite uses; every emotion the suite names exists in the vectors."""
    reader = suite.measurement.reader or vectors.default_reader
    get_reader(reader)
    layer = suite.measurement.layer if suite.measurement.layer is not None else vectors.reading_layer
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
    progress: Progress | None = None,
) -> SuiteResult:
    """Generate, re-read with the clean model, measure, decide (see the module doc)."""
    start = time.perf_counter()
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    prompts = suite_prompts(suite, options.prompts, options.n)
    reader, layer = check_suite(suite, vectors, prompts)
    is_random = bool(lm.is_random or vectors.meta.get("is_random"))
    unvalidated = [
        r for r in (reader, *suite.measurement.secondary) if model_reply_validity(vectors, lm.model_id, r) is None
    ]
    if unvalidated and not is_random and not options.unvalidated_reader:
        raise SuiteError(
            f"reader {', '.join(unvalidated)} was never validated on {lm.model_id}'s own replies: run "
            "`steerlab fit-reader --vectors FILE --judged LABELS.jsonl` (see eval/labels/), "
            "or pass --unvalidated-reader (every verdict then says so)"
        )
    gen = suite.generation
    shown = [suite.prompts.template.format(text=q.text) for q in prompts]
    longest = max((c.instruction or "" for c in suite.conditions), key=len)
    for i, text in enumerate(shown):
        full = prompt_text(lm.tokenizer, _with_instruction(text, longest), gen.chat, gen.frame)
        lm.check_length(len(lm.tokenizer(full)["input_ids"]), f"prompt {i + 1} of the suite", gen.max_new_tokens)
    calibration = _calibration(suite, lm, vectors, shown) if needs_calibration(suite) else None
    conditions = expand_conditions(suite, vectors, prompts, calibration)
    jobs = suite_jobs(conditions, len(prompts), gen.samples)
    replies: list[list[list[str]]] = [[[] for _ in prompts] for _ in conditions]
    for c, p, _ in jobs:
        replies[c][p].append("")
    gates = read_gates(lm, vectors, conditions, shown)
    edits = [
        [
            [] if c.name in gates and not gates[c.name][p].fired else condition_edits(c, vectors, q.label)
            for p, q in enumerate(prompts)
        ]
        for c in conditions
    ]
    config = GenerationConfig(
        max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=1.0,
        chat=gen.chat,
        batch_size=gen.batch_size,
        frame=gen.frame,
    )
    record = Displacement()
    rank, size = world()
    mine = []  # under torchrun each rank generates its share of the batches; the replies are gathered
    for b, lo in list(enumerate(range(0, len(jobs), gen.batch_size)))[rank::size]:
        batch = jobs[lo : lo + gen.batch_size]
        row_edits = [replace(e, rows=(i,)) for i, (c, p, _) in enumerate(batch) for e in edits[c][p]]
        texts = [_with_instruction(shown[p], conditions[c].instruction) for c, p, _ in batch]
        out = generate(lm, texts, replace(config, seed=gen.seed + b, batch_size=len(batch)), row_edits, record=record)
        mine += [[c, p, s, reply] for (c, p, s), reply in zip(batch, out, strict=True)]
        if progress:
            progress(len(mine), len(jobs))
    for share in gather_json(mine):
        for c, p, s, reply in share:
            replies[c][p][s] = reply
    if size > 1:
        totals = gather_json([record.sums, record.counts])
        record = Displacement()
        for sums, counts in totals:
            record.merge(sums, counts)
    flat = [replies[c][p][s] for c, p, s in jobs]
    first_read = _read(lm, vectors, reader, layer, conditions, prompts, shown, jobs, flat, gen.chat, suite, None)
    readings = [first_read] + [
        _read(lm, vectors, name, layer, conditions, prompts, shown, jobs, flat, gen.chat, suite, first_read)
        for name in suite.measurement.secondary
    ]
    # Perplexity (a 262k-way softmax per token) is estimated on the first sample of every prompt and
    # condition: enough for a per-condition ratio, at a third of the cost when samples = 3.
    first = [j for j, (_, _, s) in enumerate(jobs) if s == 0]
    contexts = [
        prompt_text(
            lm.tokenizer, _with_instruction(shown[jobs[j][1]], conditions[jobs[j][0]].instruction), gen.chat, gen.frame
        )
        for j in first
    ]
    ppl_flat = np.full(len(jobs), np.nan)
    ppl_flat[first] = reply_perplexity(lm, contexts, [flat[j] for j in first], batch_size=16)
    shape = (len(conditions), len(prompts), max(s for _, _, s in jobs) + 1)
    ppl = _grid(ppl_flat, jobs, shape)
    d2 = [distinct2(lm.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in flat]
    distinct = _grid(np.array(d2), jobs, shape)
    baseline = next(i for i, c in enumerate(conditions) if c.op == "baseline")
    quality = quality_table(
        [c.name for c in conditions],
        replies,
        shown,
        ppl,
        distinct,
        [record.mean(c.name) for c in conditions],
        baseline,
        suite.coherence,
    )
    for i, (row, cond) in enumerate(zip(quality, conditions, strict=True)):
        row["incoherent"] = float(readings[0].incoherent[i].mean())  # not read as any emotion
        row["emotion"] = cond.emotion
        row["expected_displacement"] = cond.expected_displacement
        row["pair"] = list(cond.pair) if cond.pair else None
        row["ablation_target"] = float(np.mean(list(cond.targets.values()))) if cond.targets else None
    validation = reader_validation(lm, vectors, suite, [r.reader for r in readings], layer)
    degenerate = {row["name"] for row in quality if row["degenerate"]}
    claims = evaluate_claims(
        suite,
        conditions,
        prompts,
        vectors.emotions,
        readings[0],
        readings[1:],
        degenerate,
        validation,
        options.allow_random_claims or not is_random,
        suite.generation.seed,
    )
    result = SuiteResult(
        suite,
        prompts,
        conditions,
        replies,
        readings[0],
        readings[1:],
        ppl,
        distinct,
        tuple(vectors.emotions),
        not is_random,
        0.0,
        quality,
        claims,
        validation=validation,
    )
    result.dose = dose_table(result)
    result.gates = gates
    weak = low_power(claims)
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
    result.seconds = time.perf_counter() - start
    return result


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


def suite_jobs(conditions: list[Condition], n_prompts: int, samples: int) -> list[tuple[int, int, int]]:
    """Every (condition, prompt, sample) row to generate: a condition runs on its prompts (all by
    default) with its own number of samples (the suite's by default)."""
    return [
        (c, p, s)
        for p in range(n_prompts)
        for c, cond in enumerate(conditions)
        if cond.prompts is None or p in cond.prompts
        for s in range(cond.samples or samples)
    ]


def _grid(values: np.ndarray, jobs: list[tuple[int, int, int]], shape: tuple[int, int, int]) -> np.ndarray:
    """Job-ordered values -> (conditions, prompts, samples), nan where a condition has no such row."""
    out = np.full(shape, np.nan)
    for value, (c, p, s) in zip(values, jobs, strict=True):
        out[c, p, s] = value
    return out


def _read(
    lm: LoadedModel,
    vectors: EmotionVectors,
    reader: str,
    layer: int,
    conditions: list[Condition],
    prompts: list[Prompt],
    shown: list[str],
    jobs: list[tuple[int, int, int]],
    flat: list[str],
    chat: bool,
    suite: Suite,
    primary: Readings | None,
) -> Readings:
    """Replies read in their conversation (:func:`read_replies`); prompts read alone, by the same reader;
    replies ``primary`` found incoherent stay unread."""
    samples = max(s for _, _, s in jobs) + 1
    scores = np.full((len(conditions), len(prompts), samples, len(vectors.emotions)), np.nan)
    broken = np.zeros((len(conditions), len(prompts), samples), dtype=bool)
    # Which replies are too broken to read is decided once, with the primary reader, for every reader.
    known = None if primary is None else np.array([primary.incoherent[c, p, s] for c, p, s in jobs])
    read = read_replies(
        lm, vectors, flat, [shown[p] for _, p, _ in jobs], chat, reader, layer, suite.coherence.detector(), known
    )
    for j, (c, p, s) in enumerate(jobs):
        scores[c, p, s] = read.scores[j]
        broken[c, p, s] = read.incoherent[j]
    prompt_scores = read_texts(lm, vectors, [q.text for q in prompts], layer, reader)
    return Readings(reader, layer if get_reader(reader).layered else None, scores, prompt_scores, broken)
