"""Causal validation suites: state a claim, intervene, generate, re-read with the clean model, decide.

A suite (YAML, see ``eval/suites/``) names the prompts, the generation settings, the conditions
(baseline, add / ablate an emotion, norm-matched random-direction controls, ablating a similar emotion,
a prompting baseline), the measurement (a reader at a stated layer applied to every reply in a fresh
pass of the *unsteered* model), coherence thresholds and the claims, each with its direction and
threshold fixed before the run.

Every (prompt, condition, sample) is one row. Rows of *different* conditions share a generate call:
each row carries its own edits (``Edit.rows`` in :mod:`steerlab.interventions`, applied through
pyvene), so the cost of a suite grows with its rows, not with its conditions times an idle batch.

Verdicts, per claim (``s`` = +1 for "increase", -1 for "decrease"; differences are paired per prompt):

* PASS          the bootstrap 95 % CI of ``s * (condition - compare_to)`` lies above ``threshold`` (and the
                sign-flip permutation p < 0.05), the
                CI of ``s * (condition - control)`` lies above 0 for every control, and neither the
                condition nor its comparison is degenerate;
* FAIL          the CI lies below ``threshold`` (the effect is confidently smaller than claimed, or
                reversed), or some control confidently beats the condition;
* INCONCLUSIVE  anything else (also: a would-be PASS on a degenerate condition, or a random model).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import yaml

from .chat import prompt_text
from .errors import SuiteError
from .generate import GenerationConfig, generate
from .interventions import Edit, random_direction
from .models import LoadedModel
from .probes import bootstrap_ci, read_texts
from .vectors import EmotionVectors

Op = Literal["baseline", "add", "ablate", "random_add", "random_ablate", "ablate_similar", "prompt"]
Direction = Literal["increase", "decrease"]
Reader = Literal["cosine", "probe"]
MetricKind = Literal["reply", "shift", "specificity"]
Verdict = Literal["pass", "fail", "inconclusive"]
TARGET, LABEL = "target", "label"  # metric emotions resolved per claim / per prompt

# --- schema ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    text: str  # the prompt as written in the file
    label: str | None = None  # its emotion, when the file has an ``emotion`` field


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


@dataclass(frozen=True)
class ConditionSpec:
    name: str  # unique; a spec that expands to several conditions names their group
    op: Op  # what is done to the model or the prompt
    emotions: tuple[str, ...] = ()  # add / ablate: emotion names, "label" (the prompt's own) or "all"
    alphas: tuple[float, ...] = ()  # add / random_add: scale-free strengths (one condition each)
    seeds: int = 3  # random_*: number of random directions (seed, seed + 1, ...)
    seed: int = 1000  # random_*: first seed
    like: str = ""  # ablate_similar: ablate the same-valence emotion whose norm is closest to this one's
    instruction: str = ""  # prompt: text appended to every prompt (no intervention)
    layers: tuple[int, ...] | None = None  # None: the vector file's chosen layer


@dataclass(frozen=True)
class Condition:
    """One concrete condition after expansion."""

    name: str
    group: str  # the spec's name
    op: Op
    emotion: str | None = None  # the emotion added/ablated ("label" = each prompt's own); None for controls
    alpha: float | None = None  # add / random_add strength
    seed: int | None = None  # random direction seed
    instruction: str = ""
    layers: tuple[int, ...] = ()


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind  # reply: score(reply, e); shift: score(reply, e) - score(prompt, e);
    #                   specificity: score(reply, e) - mean score(reply, other emotions)
    emotion: str  # an emotion, "target" (the claim condition's emotion) or "label" (the prompt's own)


@dataclass(frozen=True)
class Measurement:
    reader: Reader = "cosine"  # cosine with the vectors, or the logistic probe's probability
    layer: int | None = None  # reader layer; None = chosen layer (prefer another layer: less circular)


@dataclass(frozen=True)
class Coherence:
    max_ppl_ratio: float = 3.0  # degenerate above this geometric-mean perplexity ratio to baseline
    min_distinct2: float = 0.3  # degenerate below this mean distinct-2 (unique token bigrams / bigrams)
    max_empty: float = 0.5  # degenerate above this share of empty replies


@dataclass(frozen=True)
class ClaimSpec:
    name: str
    condition: str  # a condition or group; a group of several gives one claim per member
    metric: str  # a metric name
    direction: Direction  # the claimed sign of condition - compare_to
    compare_to: str = "baseline"
    controls: tuple[str, ...] = ()  # conditions or groups the condition must beat (members matched by alpha)
    threshold: float = 0.0  # minimal effect, in metric units, in the claimed direction
    alpha: float | None = None  # select the members of a swept group with this alpha


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
    claims: tuple[ClaimSpec, ...]
    path: str = ""  # where the suite was read from (prompt paths resolve against it)


# --- parsing -----------------------------------------------------------------------------------

_MISSING = object()


class _Reader:
    """Typed access to one YAML mapping; every error names the suite file and the field."""

    def __init__(self, data: object, where: str, source: str, allowed: Sequence[str]) -> None:
        if not isinstance(data, dict):
            raise SuiteError(f"{source}: {where or 'the file'} must be a mapping (key: value), got {_show(data)}")
        for key in data:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise SuiteError(f"{source}: unknown field {self._at(where, key)!r}{hint}: allowed are {', '.join(allowed)}")
        self.data, self.where, self.source = data, where, source

    @staticmethod
    def _at(where: str, key: object) -> str:
        return f"{where}.{key}" if where else str(key)

    def fail(self, key: str, msg: str) -> SuiteError:
        return SuiteError(f"{self.source}: field {self._at(self.where, key)!r} {msg}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.fail(key, "is missing: add it")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {name}, got {_show(value)}")
        return value

    def number(self, key: str, default: Any = _MISSING, low: float | None = None) -> Any:
        value = self.get(key, float, default)
        if value is not None and (not math.isfinite(value) or (low is not None and value < low)):
            raise self.fail(key, f"must be a finite number{f' >= {low:g}' if low is not None else ''}, got {value!r}")
        return float(value) if value is not None else value

    def integer(self, key: str, default: Any = _MISSING, low: int = 0) -> int:
        value = self.get(key, int, default)
        if value is not None and value < low:
            raise self.fail(key, f"must be an integer >= {low}, got {value}")
        return value  # type: ignore[no-any-return]

    def choice(self, key: str, options: Sequence[str], default: Any = _MISSING) -> str:
        value = self.get(key, str, default)
        if value not in options:
            raise self.fail(key, f"is {value!r}: use one of {', '.join(options)}")
        return value  # type: ignore[no-any-return]

    def strings(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        if self.data.get(key) is None and default is not _MISSING:
            return default  # type: ignore[no-any-return]
        value = self.get(key, (list, str))
        items = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(v, str) and v.strip() for v in items):
            raise self.fail(key, f"must be a list of non-empty strings, got {_show(value)}")
        return tuple(v.strip() for v in items)

    def numbers(self, key: str, default: Any = _MISSING) -> tuple[float, ...]:
        if self.data.get(key) is None and default is not _MISSING:
            return default  # type: ignore[no-any-return]
        value = self.get(key, (list, int, float))
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items):
            raise self.fail(key, f"must be a number or a non-empty list of numbers, got {_show(value)}")
        return tuple(float(v) for v in items)

    def sub(self, key: str, allowed: Sequence[str], default: Any = _MISSING) -> _Reader:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.fail(key, "is missing: add it")
            value = default
        return _Reader(value, self._at(self.where, key), self.source, allowed)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; every problem is a SuiteError naming the field and the fix."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file {str(path)!r} not found: pass a YAML file such as eval/suites/necessity.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SuiteError(f"{path}: not valid YAML ({str(err).splitlines()[0]}): fix the syntax") from None
    return parse_suite(data, str(path))


def parse_suite(data: object, source: str = "<suite>") -> Suite:
    top = _Reader(data, "", source, ["name", "description", "model", "vectors", "prompts", "n", "generation",
                                     "conditions", "measurement", "metrics", "coherence", "claims"])
    prompts = _parse_prompts(top)
    g = top.sub("generation", ["max_new_tokens", "temperature", "seed", "samples", "chat", "batch_size"], {})
    generation = GenerationSpec(
        max_new_tokens=g.integer("max_new_tokens", 32, low=1), temperature=g.number("temperature", 0.0, low=0),
        seed=g.integer("seed", 0), samples=g.integer("samples", 1, low=1), chat=g.get("chat", bool, True),
        batch_size=g.integer("batch_size", 32, low=1))
    if generation.samples > 1 and generation.temperature == 0:
        raise g.fail("samples", f"is {generation.samples} but temperature is 0 (greedy replies are identical): "
                     "set temperature > 0 or samples: 1")
    conditions = _parse_conditions(top)
    m = top.sub("measurement", ["reader", "layer"], {})
    measurement = Measurement(reader=m.choice("reader", get_args(Reader), "cosine"),  # type: ignore[arg-type]
                              layer=m.integer("layer", None))
    metrics = _parse_metrics(top)
    c = top.sub("coherence", ["max_ppl_ratio", "min_distinct2", "max_empty"], {})
    coherence = Coherence(c.number("max_ppl_ratio", 3.0, low=1), c.number("min_distinct2", 0.3, low=0),
                          c.number("max_empty", 0.5, low=0))
    suite = Suite(
        name=top.get("name", str), description=top.get("description", str, ""), model=top.get("model", str, None),
        vectors=top.get("vectors", str, None), prompts=prompts, n=top.integer("n", None, low=1),
        generation=generation, conditions=conditions, measurement=measurement, metrics=metrics,
        coherence=coherence, claims=_parse_claims(top, conditions, metrics), path=source)
    return suite


def _parse_prompts(top: _Reader) -> PromptSpec:
    raw = top.data.get("prompts")
    if isinstance(raw, str):
        return PromptSpec(file=raw, inline=())
    if isinstance(raw, list):
        return PromptSpec(file=None, inline=top.strings("prompts"))
    p = top.sub("prompts", ["file", "inline", "template"])
    template = p.get("template", str, "{text}")
    if "{text}" not in template:
        raise p.fail("template", f"is {template!r}: it must contain {{text}} where the prompt goes")
    file, inline = p.get("file", str, None), p.strings("inline", ())
    if (file is None) == (not inline):
        raise p.fail("file", "and 'inline' are both set or both missing: give exactly one")
    return PromptSpec(file=file, inline=inline, template=template)


def _parse_conditions(top: _Reader) -> tuple[ConditionSpec, ...]:
    items = top.get("conditions", list)
    out: list[ConditionSpec] = []
    needs = {"add": ("emotions", "alphas"), "ablate": ("emotions",), "random_add": ("alphas",),
             "ablate_similar": ("like",), "prompt": ("instruction",), "random_ablate": (), "baseline": ()}
    for i, item in enumerate(items):
        r = _Reader(item, f"conditions[{i}]", top.source,
                    ["name", "op", "emotions", "alphas", "seeds", "seed", "like", "instruction", "layers"])
        op = r.choice("op", get_args(Op), "baseline" if r.data.get("name") == "baseline" else _MISSING)
        for key in needs[op]:
            r.get(key, object)  # present and not null
        layers = r.data.get("layers")
        if layers is not None and (not isinstance(layers, list) or not layers
                                   or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers)):
            raise r.fail("layers", f"must be a non-empty list of layer numbers, got {_show(layers)}")
        spec = ConditionSpec(
            name=r.get("name", str), op=op,  # type: ignore[arg-type]
            emotions=r.strings("emotions", ()), alphas=r.numbers("alphas", ()),
            seeds=r.integer("seeds", 3, low=1), seed=r.integer("seed", 1000), like=r.get("like", str, ""),
            instruction=r.get("instruction", str, ""), layers=tuple(layers) if layers else None)
        if spec.name in {s.name for s in out}:
            raise r.fail("name", f"{spec.name!r} is used twice: condition names must be unique")
        out.append(spec)
    if not any(s.op == "baseline" for s in out):
        raise top.fail("conditions", "has no baseline: add `- name: baseline`")
    return tuple(out)


def _parse_metrics(top: _Reader) -> tuple[MetricSpec, ...]:
    items = top.get("metrics", dict)
    out = []
    for name, item in items.items():
        r = _Reader(item, f"metrics.{name}", top.source, ["kind", "emotion"])
        out.append(MetricSpec(str(name), r.choice("kind", get_args(MetricKind)), r.get("emotion", str)))  # type: ignore[arg-type]
    if not out:
        raise top.fail("metrics", "is empty: define at least one metric")
    return tuple(out)


def _parse_claims(top: _Reader, conditions: Sequence[ConditionSpec], metrics: Sequence[MetricSpec]) -> tuple[ClaimSpec, ...]:
    names = [c.name for c in conditions]
    out = []
    for i, item in enumerate(top.get("claims", list, [])):
        r = _Reader(item, f"claims[{i}]", top.source,
                    ["name", "condition", "compare_to", "metric", "direction", "controls", "threshold", "alpha"])
        claim = ClaimSpec(
            name=r.get("name", str), condition=r.get("condition", str), metric=r.get("metric", str),
            direction=r.choice("direction", get_args(Direction)),  # type: ignore[arg-type]
            compare_to=r.get("compare_to", str, "baseline"), controls=r.strings("controls", ()),
            threshold=r.number("threshold", 0.0, low=0), alpha=r.number("alpha", None))
        for key, value in [("condition", claim.condition), ("compare_to", claim.compare_to),
                           *[("controls", c) for c in claim.controls]]:
            if value not in names:
                raise r.fail(key, f"names unknown condition {value!r}: defined are {', '.join(names)}")
        if claim.metric not in [m.name for m in metrics]:
            raise r.fail("metric", f"names unknown metric {claim.metric!r}: defined are {', '.join(m.name for m in metrics)}")
        out.append(claim)
    return tuple(out)


# --- prompts -----------------------------------------------------------------------------------


def load_prompts(path: str | Path) -> list[Prompt]:
    """JSONL with a ``text`` field (``emotion`` kept as the label, other fields ignored) or plain text."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"prompt file {str(path)!r} not found: pass a JSONL file with a 'text' field or a text file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(f"cannot read prompt file {str(path)!r} ({err}): pass a UTF-8 text or JSONL file") from None
    lines = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    lines = [(i, line) for i, line in lines if line]
    if not lines:
        raise SuiteError(f"prompt file {str(path)!r} is empty: give one prompt per line")
    if not lines[0][1].startswith("{"):
        return [Prompt(line) for _, line in lines]
    out = []
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SuiteError(f"{path} line {number}: not valid JSON ({err.msg}): one JSON object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise SuiteError(f"{path} line {number}: needs a non-empty 'text' field")
        label = row.get("emotion")
        out.append(Prompt(row["text"].strip(), str(label) if label else None))
    return out


def select_prompts(prompts: Sequence[Prompt], n: int | None) -> list[Prompt]:
    """The first ``n`` prompts; labelled prompts are taken round-robin over labels (file order)."""
    if n is None or n >= len(prompts):
        return list(prompts)
    if all(p.label is None for p in prompts):
        return list(prompts[:n])
    queues: dict[str | None, list[Prompt]] = {}
    for p in prompts:
        queues.setdefault(p.label, []).append(p)
    out: list[Prompt] = []
    while len(out) < n:
        for queue in queues.values():
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


def suite_prompts(suite: Suite, override: str | None = None, n: int | None = None) -> list[Prompt]:
    if override:
        prompts = load_prompts(override)
    elif suite.prompts.file:
        prompts = load_prompts(resolve_path(suite.prompts.file, suite.path))
    else:
        prompts = [Prompt(t) for t in suite.prompts.inline]
    return select_prompts(prompts, n if n is not None else suite.n)


def resolve_path(name: str, suite_path: str) -> Path:
    """A relative path, tried against the current directory, then the suite's folder and its parents."""
    path = Path(name)
    if path.is_absolute() or path.exists() or not suite_path:
        return path
    for base in Path(suite_path).resolve().parents:
        if (base / path).exists():
            return base / path
    return path


# --- conditions ---------------------------------------------------------------------------------


def expand_conditions(suite: Suite, vectors: EmotionVectors) -> list[Condition]:
    """Concrete conditions: one per emotion x alpha for add, one per seed (x alpha) for random controls."""
    out: list[Condition] = []
    for i, spec in enumerate(suite.conditions):
        layers = spec.layers if spec.layers is not None else (vectors.chosen_layer,)
        for layer in layers:
            if not 0 <= layer < vectors.n_layers:
                raise SuiteError(f"{suite.path}: field 'conditions[{i}].layers' has layer {layer}: "
                                 f"the vectors have layers 0-{vectors.n_layers - 1}")
        emotions = _emotions(spec, vectors, suite.path, i)
        base = Condition(spec.name, spec.name, spec.op, instruction=spec.instruction, layers=tuple(layers))
        if spec.op == "baseline" or spec.op == "prompt":
            items = [base]
        elif spec.op == "ablate":
            items = [replace(base, name=_join(spec.name, e, len(emotions)), emotion=e) for e in emotions]
        elif spec.op == "add":
            items = [replace(base, name=_join(_join(spec.name, e, len(emotions)), _num(a), len(spec.alphas)), emotion=e, alpha=a)
                     for e in emotions for a in spec.alphas]
        elif spec.op == "ablate_similar":
            items = [replace(base, emotion=similar_emotion(vectors, spec.like, layers[0]))]
        else:
            alphas: Sequence[float | None] = spec.alphas if spec.op == "random_add" else (None,)
            items = [replace(base, name=_join(_join(spec.name, _num(a), len(alphas)) if a is not None else spec.name,
                                              f"s{s}", 2), seed=s, alpha=a)
                     for a in alphas for s in range(spec.seed, spec.seed + spec.seeds)]
        out += items
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SuiteError(f"{suite.path}: two conditions expand to the name {dup!r}: rename one")
    return out


def _emotions(spec: ConditionSpec, vectors: EmotionVectors, source: str, i: int) -> list[str]:
    if spec.emotions == ("all",):
        return list(vectors.emotions)
    out = []
    for e in spec.emotions:
        if e != LABEL and e not in vectors.emotions:
            near = difflib.get_close_matches(e, vectors.emotions, n=1)
            raise SuiteError(f"{source}: field 'conditions[{i}].emotions' has unknown emotion {e!r}"
                             f"{f' (did you mean {near[0]!r}?)' if near else ''}: the vectors have {', '.join(vectors.emotions)}")
        out.append(e)
    if spec.op == "ablate_similar" and spec.like not in vectors.emotions:
        raise SuiteError(f"{source}: field 'conditions[{i}].like' is {spec.like!r}: use one of {', '.join(vectors.emotions)}")
    return out


def _join(name: str, part: str, count: int) -> str:
    return f"{name}:{part}" if count > 1 else name


def _num(value: float | None) -> str:
    return f"{value:g}"


def similar_emotion(vectors: EmotionVectors, like: str, layer: int) -> str:
    """The emotion of the same valence sign as ``like`` (negative for negative) whose raw norm at
    ``layer`` is closest to ``like``'s; all other emotions when the file carries no valence."""
    if like not in vectors.emotions:
        raise SuiteError(f"ablate_similar: unknown emotion {like!r}: use one of {', '.join(vectors.emotions)}")
    valence = vectors.meta.get("valence") or {}
    sign = np.sign(valence.get(like, 0.0))
    pool = [e for e in vectors.emotions if e != like and (sign == 0 or np.sign(valence.get(e, 0.0)) == sign)]
    pool = pool or [e for e in vectors.emotions if e != like]
    if not pool:
        raise SuiteError(f"ablate_similar: the vectors have no emotion other than {like!r}")
    norms = vectors.raw_norms[layer]
    ref = float(norms[vectors.index(like)])
    return min(pool, key=lambda e: abs(float(norms[vectors.index(e)]) - ref))


def condition_edits(cond: Condition, vectors: EmotionVectors, label: str | None) -> list[Edit]:
    """The edits one row of ``cond`` gets; ``label`` resolves the emotion "label"."""
    if cond.op in ("baseline", "prompt"):
        return []
    out = []
    for layer in cond.layers:
        unit = float(vectors.alpha_unit[layer])
        if cond.op in ("random_add", "random_ablate"):
            d = random_direction(vectors.hidden_size, int(cond.seed or 0))
        else:
            emotion = label if cond.emotion == LABEL else cond.emotion
            if emotion is None:
                raise SuiteError(f"condition {cond.name!r} uses emotion 'label' but a prompt has no 'emotion' field: "
                                 "use a labelled JSONL prompt file")
            d = vectors.direction(emotion, layer)
        if cond.op in ("add", "random_add"):
            out.append(Edit("add", layer, d, float(cond.alpha or 0.0) * unit, cond.name))  # norm-matched: same absolute value
        else:
            out.append(Edit("ablate", layer, d, 0.0, cond.name))
    return out


# --- measurement -----------------------------------------------------------------------------


def distinct2(tokens: Sequence[object]) -> float:
    """Unique bigrams / bigrams of a token sequence (nan for fewer than two tokens)."""
    pairs = list(itertools.pairwise(tokens))
    return len(set(pairs)) / len(pairs) if pairs else float("nan")


def reply_perplexity(lm: LoadedModel, contexts: Sequence[str], replies: Sequence[str], batch_size: int = 8) -> np.ndarray:
    """Perplexity of each reply given its context under the clean model (nan for empty replies).

    Rows are left-padded (positions from the attention mask) so every reply ends at the last position
    and only the reply's logits are computed: a 262k vocabulary makes full-sequence logits costly.
    """
    tok = lm.tokenizer
    out = np.full(len(replies), np.nan)
    items = []
    for i, (ctx, reply) in enumerate(zip(contexts, replies)):
        if reply.strip():
            a = list(tok(ctx)["input_ids"])
            b = list(tok(" " + reply, add_special_tokens=False)["input_ids"])
            items.append((i, a + b, len(b)))
    items.sort(key=lambda t: len(t[1]))
    pad = tok.pad_token_id or 0
    with torch.inference_mode():
        for lo in range(0, len(items), batch_size):
            chunk = items[lo : lo + batch_size]
            width = max(len(ids) for _, ids, _ in chunk)
            keep = max(n for _, _, n in chunk) + 1  # logits of the token before each reply token
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, (_, seq, _) in enumerate(chunk):
                ids[r, width - len(seq) :] = torch.tensor(seq)
                mask[r, width - len(seq) :] = 1
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                              position_ids=positions.to(lm.device), use_cache=False, logits_to_keep=keep).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            nxt = ids[:, width - keep + 1 :].to(lm.device)
            token_logp = logp.gather(-1, nxt[..., None])[..., 0]  # (rows, keep - 1)
            for r, (i, _, n) in enumerate(chunk):
                out[i] = math.exp(-float(token_logp[r, -n:].mean()))
    return out


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    effect: float  # mean paired difference (condition - other)
    ci: tuple[float, float]  # bootstrap 95 % CI of the mean difference
    p: float  # two-sided sign-flip permutation p-value
    effect_size: float  # Cohen's d_z = mean / sd of the differences
    reversed: float  # share of prompts whose difference has the sign opposite to the claim
    n: int  # prompts with a value in both conditions


def permutation_p(diff: np.ndarray, seed: int = 0, n_perm: int = 10000) -> float:
    """Two-sided sign-flip test of mean(diff) = 0: exact up to 12 pairs, Monte Carlo beyond."""
    diff = np.asarray(diff, dtype=float)
    n = len(diff)
    if n == 0:
        return float("nan")
    observed = abs(diff.mean())
    if n <= 12:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ diff) / n >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, n))
    hits = int(np.sum(np.abs(signs @ diff) / n >= observed - 1e-12))
    return (hits + 1) / (n_perm + 1)


def paired_stats(diff: np.ndarray, direction: Direction = "increase", seed: int = 0, n_boot: int = 2000) -> Stats:
    """Statistics of per-prompt differences (nan pairs dropped)."""
    diff = np.asarray(diff, dtype=float)
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return Stats(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan"), float("nan"), 0)
    sign = 1 if direction == "increase" else -1
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return Stats(
        effect=float(diff.mean()),
        ci=bootstrap_ci(diff, seed, n_boot=n_boot),
        p=permutation_p(diff, seed),
        effect_size=float(diff.mean() / sd) if sd > 0 else float("nan"),
        reversed=float(np.mean(sign * diff < 0)),
        n=len(diff),
    )


def decide(main: Stats, controls: Mapping[str, Stats], direction: Direction, threshold: float,
           degenerate: Sequence[str] = ()) -> tuple[Verdict, list[str]]:
    """PASS / FAIL / INCONCLUSIVE from the main comparison and the controls (see the module doc)."""
    sign = 1 if direction == "increase" else -1

    def signed(ci: tuple[float, float]) -> tuple[float, float]:
        lo, hi = sorted((sign * ci[0], sign * ci[1]))
        return lo, hi

    if main.n < 2 or not all(math.isfinite(x) for x in main.ci):
        return "inconclusive", [f"only {main.n} usable prompt pairs"]
    lo, hi = signed(main.ci)
    reasons = []
    if hi < threshold:
        reasons.append(f"the CI [{main.ci[0]:.4g}, {main.ci[1]:.4g}] excludes the claimed {direction} of > {threshold:g}")
    beaten = [name for name, s in controls.items() if s.n >= 2 and signed(s.ci)[1] < 0]
    if beaten:
        reasons.append(f"confidently beaten by control(s) {', '.join(beaten)}")
    if reasons:
        return "fail", reasons
    weak = [name for name, s in controls.items() if not (s.n >= 2 and signed(s.ci)[0] > 0)]
    if lo <= threshold:
        reasons.append(f"the CI [{main.ci[0]:.4g}, {main.ci[1]:.4g}] does not exclude {threshold:g}")
    elif not main.p < 0.05:  # the percentile bootstrap is optimistic for few prompts; the sign-flip test is exact
        reasons.append(f"permutation p = {main.p:.3g} is not below 0.05")
    if weak:
        reasons.append(f"does not beat control(s) {', '.join(weak)}")
    if degenerate:
        reasons.append(f"degenerate condition(s) {', '.join(degenerate)} cannot pass")
    return ("inconclusive", reasons) if reasons else ("pass", ["CI excludes the threshold and every control is beaten"])


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    prompts: str | None = None  # replace the suite's prompts with this file
    n: int | None = None  # use at most this many prompts (overrides the suite's n)
    allow_random_claims: bool = False  # tests: give verdicts on random-weight models too


@dataclass
class SuiteResult:
    suite: Suite
    prompts: list[Prompt]
    conditions: list[Condition]
    replies: list[list[list[str]]]  # [condition][prompt][sample]
    reply_scores: np.ndarray  # (conditions, prompts, samples, emotions); nan for empty replies
    prompt_scores: np.ndarray  # (prompts, emotions)
    ppl: np.ndarray  # (conditions, prompts, samples)
    distinct: np.ndarray  # (conditions, prompts, samples)
    emotions: tuple[str, ...]
    reader_layer: int
    is_claim: bool  # False on random weights: verdicts are not claims about the model
    seconds: float
    coherence: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    dose: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


Progress = Callable[[int, int], None]  # (rows done, rows total)


def run_suite(suite: Suite, lm: LoadedModel, vectors: EmotionVectors, options: RunOptions = RunOptions(),
              progress: Progress | None = None) -> SuiteResult:
    """Generate every (prompt, condition, sample), re-read the replies with the clean model, decide."""
    start = time.perf_counter()
    vectors.check_compatible(lm.model_id, lm.hidden_size, lm.n_layers)
    prompts = suite_prompts(suite, options.prompts, options.n)
    conditions = expand_conditions(suite, vectors)
    gen = suite.generation
    layer = suite.measurement.layer if suite.measurement.layer is not None else vectors.chosen_layer
    if not 0 <= layer < vectors.n_layers:
        raise SuiteError(f"{suite.path}: field 'measurement.layer' is {layer}: use 0-{vectors.n_layers - 1}")
    for prompt in prompts:
        if prompt.label is not None and prompt.label not in vectors.emotions:
            raise SuiteError(f"prompt label {prompt.label!r} is not an emotion of the vectors ({', '.join(vectors.emotions)})")
    for m in suite.metrics:
        if m.emotion not in (TARGET, LABEL, *vectors.emotions):
            raise SuiteError(f"{suite.path}: field 'metrics.{m.name}.emotion' is {m.emotion!r}: use 'target', 'label' "
                             f"or one of {', '.join(vectors.emotions)}")
    shown = [suite.prompts.template.format(text=q.text) for q in prompts]
    jobs = [(c, p, s) for p in range(len(prompts)) for c in range(len(conditions)) for s in range(gen.samples)]
    replies: list[list[list[str]]] = [[["" for _ in range(gen.samples)] for _ in prompts] for _ in conditions]
    edits = [[condition_edits(c, vectors, q.label) for q in prompts] for c in conditions]
    config = GenerationConfig(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=1.0,
                              chat=gen.chat, batch_size=gen.batch_size)
    # One generate call per batch; every row carries its own condition's edits (Edit.rows).
    for b, lo in enumerate(range(0, len(jobs), gen.batch_size)):
        batch = jobs[lo : lo + gen.batch_size]
        row_edits = [replace(e, rows=(i,)) for i, (c, p, _) in enumerate(batch) for e in edits[c][p]]
        texts = [_with_instruction(shown[p], conditions[c].instruction) for c, p, _ in batch]
        out = generate(lm, texts, replace(config, seed=gen.seed + b, batch_size=len(batch)), row_edits)
        for (c, p, s), reply in zip(batch, out):
            replies[c][p][s] = reply
        if progress:
            progress(lo + len(batch), len(jobs))
    flat = [replies[c][p][s] for c, p, s in jobs]
    E = len(vectors.emotions)
    scores = np.full((len(conditions), len(prompts), gen.samples, E), np.nan)
    unique = sorted({r for r in flat if r.strip()})
    if unique:
        read = read_texts(lm, vectors, unique, layer, suite.measurement.reader)
        lookup = {t: read[i] for i, t in enumerate(unique)}
        for (c, p, s), r in zip(jobs, flat):
            if r in lookup:
                scores[c, p, s] = lookup[r]
    prompt_scores = read_texts(lm, vectors, [p.text for p in prompts], layer, suite.measurement.reader)
    contexts = [prompt_text(lm.tokenizer, shown[p], gen.chat) for _, p, _ in jobs]
    ppl = reply_perplexity(lm, contexts, flat).reshape(len(prompts), len(conditions), gen.samples).transpose(1, 0, 2)
    d2 = [distinct2(lm.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in flat]
    distinct = np.array(d2).reshape(len(prompts), len(conditions), gen.samples).transpose(1, 0, 2)
    is_random = bool(lm.is_random or vectors.meta.get("is_random"))
    result = SuiteResult(suite, prompts, conditions, replies, scores, prompt_scores, ppl, distinct,
                         tuple(vectors.emotions), layer, not is_random, 0.0)
    if is_random:
        result.note = ("random weights: the verdicts test the plumbing and are not claims about the model"
                       + ("" if options.allow_random_claims else "; every claim is reported inconclusive"))
    result.coherence = coherence_table(result)
    result.claims = evaluate_claims(result, suite, random_ok=options.allow_random_claims or not is_random)
    result.dose = dose_table(result)
    result.seconds = time.perf_counter() - start
    return result


def _with_instruction(text: str, instruction: str) -> str:
    return f"{text}\n\n{instruction}" if instruction else text


def _baseline(result: SuiteResult) -> int:
    return next(i for i, c in enumerate(result.conditions) if c.op == "baseline")


def coherence_table(result: SuiteResult) -> list[dict[str, Any]]:
    co = result.suite.coherence
    base = np.log(np.nanmean(result.ppl[_baseline(result)], axis=1))  # (prompts,)
    rows = []
    for i, cond in enumerate(result.conditions):
        with np.errstate(all="ignore"):
            logr = np.log(result.ppl[i]) - base[:, None]
            ratio = float(np.exp(np.nanmean(logr))) if np.isfinite(logr).any() else float("nan")
            d2 = float(np.nanmean(result.distinct[i])) if np.isfinite(result.distinct[i]).any() else float("nan")
        empty = float(np.mean([not r.strip() for per in result.replies[i] for r in per]))
        why = []
        if ratio > co.max_ppl_ratio:
            why.append(f"perplexity ratio {ratio:.2f} > {co.max_ppl_ratio:g}")
        if d2 < co.min_distinct2:  # nan (no reply of two tokens) is left to the empty-reply check
            why.append(f"distinct-2 {d2:.2f} < {co.min_distinct2:g}")
        if empty > co.max_empty:
            why.append(f"{empty:.0%} empty replies > {co.max_empty:.0%}")
        rows.append({"name": cond.name, "group": cond.group, "op": cond.op, "emotion": cond.emotion, "alpha": cond.alpha,
                     "seed": cond.seed, "ppl": float(np.nanmedian(result.ppl[i])) if np.isfinite(result.ppl[i]).any() else float("nan"),
                     "ppl_ratio": ratio, "distinct2": d2, "empty": empty, "degenerate": bool(why), "why": "; ".join(why)})
    return rows


def metric_values(result: SuiteResult, metric: MetricSpec, cond: int, target: str | None) -> np.ndarray:
    """Per-prompt metric of one condition (mean over samples); ``target`` resolves "target"."""
    emotions = result.emotions
    idx = []
    for p in result.prompts:
        name: str | None = metric.emotion
        if name == TARGET:
            name = target if target != LABEL else p.label
        if name == LABEL:
            name = p.label
        if name is None or name not in emotions:
            raise SuiteError(f"metric {metric.name!r}: emotion {metric.emotion!r} resolves to {name!r}, which is not "
                             f"an emotion of the vectors (a 'target' metric needs a condition that adds or ablates one "
                             f"emotion; 'label' needs labelled prompts)")
        idx.append(emotions.index(name))
    e = np.array(idx)
    P = np.arange(len(result.prompts))
    r = result.reply_scores[cond]  # (prompts, samples, emotions)
    own = r[P, :, e]  # (prompts, samples)
    if metric.kind == "shift":
        own = own - result.prompt_scores[P, e][:, None]
    elif metric.kind == "specificity":
        others = (np.nansum(r, axis=2) - own) / (len(emotions) - 1)
        own = own - others
    with np.errstate(all="ignore"):
        return np.nanmean(own, axis=1) if np.isfinite(own).any() else np.full(len(P), np.nan)


def _members(result: SuiteResult, name: str) -> list[int]:
    return [i for i, c in enumerate(result.conditions) if c.name == name or c.group == name]


def evaluate_claims(result: SuiteResult, suite: Suite, random_ok: bool = True) -> list[dict[str, Any]]:
    metrics = {m.name: m for m in suite.metrics}
    degenerate = {row["name"] for row in result.coherence if row["degenerate"]}
    out = []
    for k, claim in enumerate(suite.claims):
        targets = [i for i in _members(result, claim.condition)
                   if claim.alpha is None or result.conditions[i].alpha == claim.alpha]
        if not targets:
            raise SuiteError(f"{suite.path}: claim {claim.name!r} selects no condition (alpha {claim.alpha}): "
                             f"check 'alpha' against the alphas of {claim.condition!r}")
        for ci in targets:
            cond = result.conditions[ci]
            metric = metrics[claim.metric]
            seed = suite.generation.seed + 7919 * k + ci
            mine = metric_values(result, metric, ci, cond.emotion)
            refs = [i for i in _members(result, claim.compare_to) if i != ci]
            if len(refs) != 1:
                refs = [i for i in refs if result.conditions[i].alpha in (None, cond.alpha)][:1]
            ref = refs[0]
            main = paired_stats(mine - metric_values(result, metric, ref, cond.emotion), claim.direction, seed)
            controls: dict[str, Stats] = {}
            for control in claim.controls:
                members = [i for i in _members(result, control) if i != ci]
                if cond.alpha is not None and any(result.conditions[i].alpha is not None for i in members):
                    members = [i for i in members if result.conditions[i].alpha == cond.alpha]
                for i in members:
                    diff = mine - metric_values(result, metric, i, cond.emotion)
                    controls[result.conditions[i].name] = paired_stats(diff, claim.direction, seed + i)
            bad = [n for n in (cond.name, result.conditions[ref].name) if n in degenerate]
            verdict, reasons = decide(main, controls, claim.direction, claim.threshold, bad)
            if not random_ok:
                verdict, reasons = "inconclusive", ["random weights: no claim is made", *reasons]
            out.append({
                "name": claim.name if len(targets) == 1 else f"{claim.name}[{cond.name}]",
                "condition": cond.name, "compare_to": result.conditions[ref].name, "metric": claim.metric,
                "direction": claim.direction, "threshold": claim.threshold, "verdict": verdict,
                "effect": main.effect, "ci": list(main.ci), "p": main.p, "effect_size": main.effect_size,
                "reversed": main.reversed, "n": main.n, "reasons": reasons,
                "controls": [{"name": n, "effect": s.effect, "ci": list(s.ci), "p": s.p} for n, s in controls.items()],
            })
    return out


def dose_table(result: SuiteResult) -> list[dict[str, Any]]:
    """For every condition that adds or ablates one emotion: target and mean off-target change vs baseline."""
    base = _baseline(result)
    co = {row["name"]: row for row in result.coherence}
    E = len(result.emotions)
    rows = []
    with np.errstate(all="ignore"):
        b = np.nanmean(result.reply_scores[base], axis=1)  # (prompts, emotions)
        for i, cond in enumerate(result.conditions):
            if cond.emotion is None:
                continue
            delta = np.nanmean(result.reply_scores[i], axis=1) - b
            idx = [result.emotions.index(p.label if cond.emotion == LABEL else cond.emotion) for p in result.prompts]
            P = np.arange(len(result.prompts))
            target = delta[P, idx]
            off = (np.nansum(delta, axis=1) - target) / (E - 1)
            ok = np.isfinite(target)
            lo, hi = bootstrap_ci(target[ok], 0) if ok.sum() else (float("nan"), float("nan"))
            rows.append({"name": cond.name, "op": cond.op, "emotion": cond.emotion, "alpha": cond.alpha,
                         "target_delta": float(np.nanmean(target)) if ok.any() else float("nan"), "target_ci": [lo, hi],
                         "offtarget_delta": float(np.nanmean(off)) if ok.any() else float("nan"),
                         "ppl_ratio": co[cond.name]["ppl_ratio"], "distinct2": co[cond.name]["distinct2"],
                         "degenerate": co[cond.name]["degenerate"]})
    return rows


# --- outputs ---------------------------------------------------------------------------------


def condition_means(result: SuiteResult, metric: MetricSpec) -> list[dict[str, Any]]:
    """Mean and bootstrap CI of ``metric`` per condition (a "target" metric uses each condition's own
    emotion, and is skipped for conditions without one)."""
    rows = []
    for i, cond in enumerate(result.conditions):
        if metric.emotion == TARGET and cond.emotion is None:
            continue
        v = metric_values(result, metric, i, cond.emotion)
        v = v[np.isfinite(v)]
        lo, hi = bootstrap_ci(v, 0) if len(v) else (float("nan"), float("nan"))
        rows.append({"condition": cond.name, "mean": float(v.mean()) if len(v) else float("nan"), "ci": [lo, hi], "n": len(v)})
    return rows


def summary(result: SuiteResult) -> dict[str, Any]:
    """The JSON-serialisable summary (``--json`` prints its first four keys)."""
    suite = result.suite
    fixed = [m for m in suite.metrics if m.emotion != TARGET] or list(suite.metrics)
    return {
        "suite": suite.name,
        "n": len(result.prompts),
        "claims": [{k: c[k] for k in ("name", "verdict", "effect", "ci", "p")} for c in result.claims],
        "conditions": [{"name": r["name"], "degenerate": r["degenerate"]} for r in result.coherence],
        "is_claim": result.is_claim,
        "note": result.note,
        "description": suite.description,
        "suite_path": suite.path,
        "reader": {"kind": suite.measurement.reader, "layer": result.reader_layer},
        "generation": vars(suite.generation),
        "seconds": result.seconds,
        "claim_details": result.claims,
        "coherence": result.coherence,
        "means": {m.name: condition_means(result, m) for m in fixed},
        "dose": result.dose,
    }


def write_outputs(result: SuiteResult, out_dir: str | Path) -> list[Path]:
    """rows.csv (one row per prompt x condition x sample, with the reply), summary.json, summary.md, figures."""
    import pandas as pd

    from .report import plot_condition_means, plot_dose_response

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SuiteError(f"cannot create output folder {str(out)!r} ({err.strerror}): choose another --out") from None
    rows = []
    for c, cond in enumerate(result.conditions):
        for p, prompt in enumerate(result.prompts):
            for s, reply in enumerate(result.replies[c][p]):
                row = {"prompt_index": p, "prompt": prompt.text, "label": prompt.label, "condition": cond.name,
                       "group": cond.group, "sample": s, "reply": reply, "ppl": result.ppl[c, p, s],
                       "distinct2": result.distinct[c, p, s]}
                for e, emotion in enumerate(result.emotions):
                    row[f"reply_{emotion}"] = result.reply_scores[c, p, s, e]
                    row[f"prompt_{emotion}"] = result.prompt_scores[p, e]
                rows.append(row)
    summ = summary(result)
    written = [out / "rows.csv", out / "summary.json", out / "summary.md"]
    pd.DataFrame(rows).to_csv(written[0], index=False, float_format="%.6g")
    written[1].write_text(json.dumps(summ, indent=1, default=_json_default) + "\n")
    written[2].write_text(markdown(result, summ))
    for name, means in summ["means"].items():
        if 0 < len(means) <= 40:
            written.append(plot_condition_means(means, out / f"means_{name}.png", title=f"{result.suite.name}: {name}",
                                                degenerate={r["name"] for r in result.coherence if r["degenerate"]}))
    if any(r["alpha"] is not None for r in result.dose):
        written.append(plot_dose_response(result.dose, out / "dose_response.png", title=result.suite.name))
    return written


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _f(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.4f}" if abs(x) < 100 else f"{x:.3g}"


def markdown(result: SuiteResult, summ: Mapping[str, Any]) -> str:
    suite = result.suite
    lines = [f"# {suite.name}", "", suite.description.strip(), "",
             (f"{len(result.prompts)} prompts x {len(result.conditions)} conditions x {suite.generation.samples} samples, "
              f"{suite.generation.max_new_tokens} new tokens; reader {suite.measurement.reader} at layer {result.reader_layer}; "
              f"{result.seconds:.0f} s."), ""]
    if result.note:
        lines += [f"**Note:** {result.note}", ""]
    lines += ["## Claims", "", "| claim | verdict | effect | 95% CI | p | d_z | reversed | n |", "|---|---|---|---|---|---|---|---|"]
    for c in result.claims:
        lines.append(f"| {c['name']} | **{c['verdict'].upper()}** | {_f(c['effect'])} | [{_f(c['ci'][0])}, {_f(c['ci'][1])}] | "
                     f"{c['p']:.3g} | {_f(c['effect_size'])} | {c['reversed']:.0%} | {c['n']} |")
    for c in result.claims:
        if c["verdict"] != "pass" or c["controls"]:
            ctl = "; ".join(f"vs {x['name']}: {_f(x['effect'])} [{_f(x['ci'][0])}, {_f(x['ci'][1])}]" for x in c["controls"])
            lines.append(f"- {c['name']}: {'; '.join(c['reasons'])}{'. Controls: ' + ctl if ctl else ''}")
    lines += ["", "## Conditions", "", "| condition | " + " | ".join(summ["means"]) + " | ppl ratio | distinct-2 | degenerate |",
              "|---|" + "---|" * (len(summ["means"]) + 3)]
    means = {k: {r["condition"]: r for r in v} for k, v in summ["means"].items()}
    for co in result.coherence:
        cells = [_f(means[k][co["name"]]["mean"]) if co["name"] in means[k] else "–" for k in means]
        lines.append(f"| {co['name']} | " + " | ".join(cells) +
                     f" | {co['ppl_ratio']:.2f} | {co['distinct2']:.2f} | {co['why'] or 'no'} |")
    if result.dose:
        lines += ["", "## Dose response (vs baseline)", "", "| condition | target Δ | 95% CI | mean off-target Δ | ppl ratio | distinct-2 | degenerate |",
                  "|---|---|---|---|---|---|---|"]
        for d in result.dose:
            lines.append(f"| {d['name']} | {_f(d['target_delta'])} | [{_f(d['target_ci'][0])}, {_f(d['target_ci'][1])}] | "
                         f"{_f(d['offtarget_delta'])} | {d['ppl_ratio']:.2f} | {d['distinct2']:.2f} | {'yes' if d['degenerate'] else 'no'} |")
    lines += ["", "## Example replies (first prompt)", "", f"> {result.prompts[0].text}", ""]
    for i, cond in enumerate(result.conditions[:12]):
        lines.append(f"- **{cond.name}**: {result.replies[i][0][0]!r}")
    return "\n".join(lines) + "\n"
