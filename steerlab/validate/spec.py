"""The typed schema of a suite file (what :mod:`.schema` parses): prompts (and an optional few-shot frame
that makes a base model answer as an assistant), generation, conditions, the reader, the metrics,
degeneration limits, the statistics (correction, alpha, minimum effect of interest) and the claims, each
with its direction, threshold, controls and, optionally, the premise it depends on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from steerlab.core.names import Ablation, Positions
from steerlab.read.coherence import DegenerationLimits

Op = Literal["baseline", "add", "ablate", "clamp", "random_add", "random_ablate", "ablate_similar", "prompt"]
Direction = Literal["increase", "decrease", "unchanged"]  # unchanged: equivalent within a margin (TOST)
MetricKind = Literal["reply", "shift", "specificity"]
Correction = Literal["holm", "bh", "none"]
TARGET, LABEL = "target", "label"  # metric emotions resolved per claim / per prompt
NONE = "none"  # compare_to: none makes a one-sample claim (the metric itself against the threshold)


OUTPUT_FILES = ("rows.csv", "summary.json", "summary.md")  # what a run writes into its --out folder


@dataclass(frozen=True)
class PromptSpec:
    file: str | None  # JSONL (``text`` field) or plain text file, one prompt per line
    inline: tuple[str, ...]  # prompts written in the suite itself (used when ``file`` is None)
    template: str = "{text}"  # how a prompt is presented to the model; must contain {text}


@dataclass(frozen=True)
class GenerationSpec:
    max_new_tokens: int = 32  # tokens generated per reply
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0  # sampling seed
    samples: int = 1  # replies per prompt and condition; > 1 needs temperature > 0
    chat: bool = True  # True: the prompt is a user turn and the reply the assistant's; False: continuation
    batch_size: int = 32  # rows (prompt x condition x sample) per generate call
    frame: tuple[tuple[str, str], ...] = ()  # (user, assistant) exchanges shown before each prompt (chat, base models)
    ablation_mean: str | None = None  # held-out messages: mean-ablation sets the projection to their tokens' mean


@dataclass(frozen=True)
class ConditionSpec:
    name: str  # unique; a spec that expands to several conditions names their group
    op: Op  # what is done to the model or the prompt
    emotions: tuple[str, ...] = ()  # add / ablate / clamp: emotion names, "label" (the prompt's own) or "all"
    alphas: tuple[float, ...] = ()  # add / random_add: scale-free strengths; clamp: values (one condition each)
    mode: Ablation = "mean"  # ablate / random_ablate / ablate_similar: how the projection is removed
    directions: int = 20  # random_*: size of the control population (directions drawn from the activations)
    per_prompt: int | None = None  # random_*: directions each prompt gets, in rotation (None: every direction)
    samples: int | None = None  # replies per prompt for this condition (None: generation.samples)
    seed: int = 1000  # random_*: seed of the draw
    match: str = ""  # random_ablate: the ablation whose displacement the population's directions match
    like: str = ""  # ablate_similar: ablate the same-valence emotion whose displacement is closest to this one's
    instruction: str = ""  # prompt: text appended to every prompt (no intervention)
    when: str = ""  # add / ablate / clamp: a gate (EMOTION or EMOTION>T): edit only prompts whose user turn reads it
    layers: tuple[int, ...] | None = None  # None: the vector file's steering layer
    positions: Positions = "all"  # where the edit applies: all, prompt, user (the message replied to), generated


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind  # reply: score(reply, e); shift: score(reply, e) - score(prompt, e);
    #                   specificity: score(reply, e) - mean score(reply, ``against``)
    emotion: str  # an emotion, "target" (the claim condition's emotion) or "label" (the prompt's own)
    against: tuple[str, ...] = ()  # specificity: the named comparison emotions (e.g. happy, calm)


@dataclass(frozen=True)
class Measurement:
    reader: str | None = None  # a reader name; None = the vector file's validated default
    layer: int | None = None  # reader layer; None = the vector file's reading layer
    secondary: tuple[str, ...] = ()  # other readers the claims are also judged with (disagreement is reported)
    validate_on: str | None = None  # labelled replies (JSONL with context) to report the reader's AUROC on


@dataclass(frozen=True)
class Coherence:
    max_ppl_ratio: float = 3.0  # degenerate above this geometric-mean perplexity ratio to baseline
    min_distinct2: float = 0.3  # degenerate below this mean distinct-2 (unique token bigrams / bigrams)
    max_empty: float = 0.5  # degenerate above this share of empty replies
    max_repeat_share: float = (
        DegenerationLimits.max_repeat_share
    )  # a reply loops above this share of words in repeated 3-grams
    min_compression: float = DegenerationLimits.min_compression  # a reply loops when zlib shrinks it below this ratio
    max_markup_share: float = (
        DegenerationLimits.max_markup_share
    )  # markup junk above this share of tag / symbol-run chars
    max_degenerate_share: float = 0.25  # degenerate when the share of looping / junk replies exceeds baseline's by this

    def detector(self) -> DegenerationLimits:
        """The loop/markup detector's limits: they flag a condition's looping replies and leave them unread."""
        return DegenerationLimits(self.max_repeat_share, self.min_compression, self.max_markup_share)


@dataclass(frozen=True)
class Statistics:
    correction: Correction = "holm"  # family-wise (holm) or false-discovery (bh) correction across claims
    alpha: float = 0.05  # level of every decision, after correction
    min_effect: float = 0.0  # minimum effect of interest in metric units; 0 = use min_effect_dz
    min_effect_dz: float = 0.5  # ... else as a standardised paired effect (mean / sd of the differences)


@dataclass(frozen=True)
class ClaimSpec:
    name: str
    condition: str  # a condition or group; a group of several gives one claim per member
    metric: str  # a metric name
    direction: Direction  # the claimed sign of condition - compare_to
    compare_to: str = "baseline"  # a condition, or "none" for a one-sample claim on the metric itself
    controls: tuple[str, ...] = ()  # conditions or groups the condition must beat (members matched by alpha)
    threshold: float = 0.0  # minimal effect, in metric units, in the claimed direction
    alpha: float | None = None  # select the members of a swept group with this alpha
    premise: str = ""  # a claim that must PASS for this one to be testable
    min_effect: float | None = None  # overrides statistics.min_effect
    prompts: str = ""  # only the prompts with this label (e.g. desperate / neutral); "" = every prompt
    margin: float | None = None  # direction unchanged: equivalence margin in metric units (None: min_effect_dz x the
    #                              compare_to condition's sd between the claim's prompts)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    model: str | None  # model spec; None = the vector file's
    vectors: str | None  # vector file; None = the shipped one for the model
    prompts: PromptSpec
    n: int | None  # use at most this many prompts (stratified by label when labelled)
    generation: GenerationSpec
    conditions: tuple[ConditionSpec, ...]
    measurement: Measurement
    metrics: tuple[MetricSpec, ...]
    coherence: Coherence
    statistics: Statistics
    claims: tuple[ClaimSpec, ...]
    path: str = ""  # where the suite was read from (prompt paths resolve against it)
