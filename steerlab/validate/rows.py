"""The rows of a suite, one per (condition, prompt, sample): which to generate, generating them in mixed
batches (each row carries its own condition's edits, ``Edit.rows``, so the cost grows with the rows, not
with conditions times an idle batch), reading them with the clean model and measuring their quality.

Chat replies are read in their conversation: the suite's prompt as the user's message (the same for
every condition, so a prompting condition's instruction is not read as part of the reply's context),
then the reply as the model's own turn; continuations are read alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from steerlab.core.parallel import gather_json, world
from steerlab.core.vectors import EmotionVectors
from steerlab.model.chat import prompt_text
from steerlab.model.models import LoadedModel
from steerlab.read.readers import get_reader, read_replies, read_texts
from steerlab.steer.edits import Edit
from steerlab.steer.generation import GenerationConfig, generate
from steerlab.steer.interventions import Displacement
from steerlab.validate.conditions import Condition
from steerlab.validate.decide import Readings
from steerlab.validate.measure import distinct2, quality_table, reply_perplexity
from steerlab.validate.prompts import Prompt
from steerlab.validate.spec import Suite

Job = tuple[int, int, int]  # (condition, prompt, sample)
Progress = Callable[[int, int], None]  # (rows done, rows total)


def with_instruction(text: str, instruction: str) -> str:
    return f"{text}\n\n{instruction}" if instruction else text


@dataclass(frozen=True)
class Rows:
    """What a suite generates: its conditions, prompts (as shown), and the rows of each."""

    suite: Suite
    conditions: list[Condition]
    prompts: list[Prompt]
    shown: list[str]  # each prompt after the suite's template
    jobs: list[Job]

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.conditions), len(self.prompts), max(s for _, _, s in self.jobs) + 1

    def grid(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Job-ordered values -> (conditions, prompts, samples), nan where a condition has no such row."""
        out = np.full(self.shape, np.nan)
        for value, (c, p, s) in zip(values, self.jobs, strict=True):
            out[c, p, s] = value
        return out

    def context(self, job: Job) -> str:
        """The text a row's reply continues (a prompting condition's instruction included)."""
        c, p, _ = job
        return with_instruction(self.shown[p], self.conditions[c].instruction)


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


def read_rows(
    lm: LoadedModel,
    vectors: EmotionVectors,
    rows: Rows,
    flat: list[str],
    reader: str,
    layer: int,
    primary: Readings | None,
) -> Readings:
    """Replies read in their conversation (:func:`read_replies`); prompts read alone, by the same reader;
    replies ``primary`` found incoherent stay unread."""
    scores = np.full((*rows.shape, len(vectors.emotions)), np.nan)
    broken = np.zeros(rows.shape, dtype=bool)
    # Which replies are too broken to read is decided once, with the primary reader, for every reader.
    known = None if primary is None else np.array([primary.incoherent[job] for job in rows.jobs])
    chat, detector = rows.suite.generation.chat, rows.suite.coherence.detector()
    read = read_replies(
        lm, vectors, flat, [rows.shown[p] for _, p, _ in rows.jobs], chat, reader, layer, detector, known
    )
    for j, job in enumerate(rows.jobs):
        scores[job] = read.scores[j]
        broken[job] = read.incoherent[j]
    prompt_scores = read_texts(lm, vectors, [q.text for q in rows.prompts], layer, reader)
    return Readings(reader, layer if get_reader(reader).layered else None, scores, prompt_scores, broken)


def generate_rows(
    lm: LoadedModel, rows: Rows, edits: list[list[list[Edit]]], progress: Progress | None
) -> tuple[list[list[list[str]]], Displacement]:
    """Every row's reply ([condition][prompt][sample]) and the displacement each condition caused;
    under torchrun each rank generates its share of the batches and the replies are gathered."""
    gen = rows.suite.generation
    config = GenerationConfig(
        max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=1.0, chat=gen.chat, frame=gen.frame
    )
    record = Displacement()
    rank, size = world()
    mine = []
    for b, lo in list(enumerate(range(0, len(rows.jobs), gen.batch_size)))[rank::size]:
        batch = rows.jobs[lo : lo + gen.batch_size]
        row_edits = [replace(e, rows=(i,)) for i, (c, p, _) in enumerate(batch) for e in edits[c][p]]
        texts = [rows.context(job) for job in batch]
        out = generate(lm, texts, replace(config, seed=gen.seed + b, batch_size=len(batch)), row_edits, record=record)
        mine += [[c, p, s, reply] for (c, p, s), reply in zip(batch, out, strict=True)]
        if progress:
            progress(len(mine), len(rows.jobs))
    replies: list[list[list[str]]] = [[[] for _ in rows.prompts] for _ in rows.conditions]
    for c, p, _ in rows.jobs:
        replies[c][p].append("")
    for share in gather_json(mine):
        for c, p, s, reply in share:
            replies[c][p][s] = reply
    if size > 1:
        totals = gather_json([record.sums, record.counts])
        record = Displacement()
        for sums, counts in totals:
            record.merge(sums, counts)
    return replies, record


def measure_rows(
    lm: LoadedModel,
    rows: Rows,
    replies: list[list[list[str]]],
    flat: list[str],
    record: Displacement,
    primary: Readings,
    known_ppl: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Per condition: perplexity ratio, distinct-2, echo, loops, incoherent share, displacement (and the
    calibration behind it); also the (conditions, prompts, samples) perplexity and distinct-2 grids.
    ``known_ppl`` (job order) is an earlier run's perplexity of the same replies, not measured again."""
    gen = rows.suite.generation
    # Perplexity (a 262k-way softmax per token) is estimated on the first sample of every prompt and
    # condition: enough for a per-condition ratio, at a third of the cost when samples = 3.
    first = [j for j, (_, _, s) in enumerate(rows.jobs) if s == 0]
    if known_ppl is None:
        ppl_flat = np.full(len(rows.jobs), np.nan)
        contexts = [prompt_text(lm.tokenizer, rows.context(rows.jobs[j]), gen.chat, gen.frame) for j in first]
        ppl_flat[first] = reply_perplexity(lm, contexts, [flat[j] for j in first], batch_size=16)
    else:
        ppl_flat = known_ppl
    ppl = rows.grid(ppl_flat)
    distinct = rows.grid([distinct2(lm.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in flat])
    conditions = rows.conditions
    baseline = next(i for i, c in enumerate(conditions) if c.op == "baseline")
    moved = [record.mean(c.name) for c in conditions]
    quality = quality_table(
        [c.name for c in conditions], replies, rows.shown, ppl, distinct, moved, baseline, rows.suite.coherence
    )
    for i, (row, cond) in enumerate(zip(quality, conditions, strict=True)):
        row["incoherent"] = float(primary.incoherent[i].mean())  # not read as any emotion
        row["emotion"] = cond.emotion
        row["expected_displacement"] = cond.expected_displacement
        row["pair"] = list(cond.pair) if cond.pair else None
        row["ablation_target"] = float(np.mean(list(cond.targets.values()))) if cond.targets else None
    return quality, ppl, distinct
