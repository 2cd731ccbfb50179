"""Suite files (YAML, see ``eval/suites/``) parsed into the typed schema of :mod:`.spec`. Every problem
names the file, the field and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import yaml

from steerlab.core.errors import SuiteError
from steerlab.core.files import existing_file
from steerlab.core.names import ABLATIONS, POSITIONS, READER_NAMES
from steerlab.validate.claim_schema import parse_claims
from steerlab.validate.fields import MISSING, Fields, show
from steerlab.validate.spec import (
    Coherence,
    ConditionSpec,
    Correction,
    GenerationSpec,
    Measurement,
    MetricKind,
    MetricSpec,
    Op,
    PromptSpec,
    Statistics,
    Suite,
)


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; every problem is a SuiteError naming the field and the fix."""
    path = existing_file(path, "suite file", "pass a YAML file such as eval/suites/necessity.yaml", SuiteError)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SuiteError(f"{path}: not valid YAML{where} ({str(err).splitlines()[0]}): fix the syntax") from None
    return parse_suite(data, str(path))


TOP_KEYS = (
    *("name", "description", "model", "vectors", "prompts", "n", "generation", "conditions", "measurement"),
    *("metrics", "coherence", "statistics", "claims"),
)


def parse_suite(data: object, source: str = "<suite>") -> Suite:
    top = Fields(data, "", source, TOP_KEYS)
    prompts = _parse_prompts(top)
    generation = _parse_generation(top)
    conditions = _parse_conditions(top)
    measurement = _parse_measurement(top)
    metrics = _parse_metrics(top)
    coherence, statistics = _parse_coherence(top), _parse_statistics(top)
    return Suite(
        name=top.get("name", str),
        description=top.get("description", str, ""),
        model=top.get("model", str, None),
        vectors=top.get("vectors", str, None),
        prompts=prompts,
        n=top.integer("n", None, low=1),
        generation=generation,
        conditions=conditions,
        measurement=measurement,
        metrics=metrics,
        coherence=coherence,
        statistics=statistics,
        claims=parse_claims(top, conditions, metrics),
        path=source,
    )


def _parse_generation(top: Fields) -> GenerationSpec:
    g = top.sub("generation", [*GENERATION_KEYS], {})
    generation = GenerationSpec(
        max_new_tokens=g.integer("max_new_tokens", 32, low=1),
        temperature=g.number("temperature", 0.0, low=0),
        seed=g.integer("seed", 0),
        samples=g.integer("samples", 1, low=1),
        chat=g.get("chat", bool, True),
        batch_size=g.integer("batch_size", 32, low=1),
        frame=_parse_frame(g),
        ablation_mean=g.get("ablation_mean", str, None),
    )
    if generation.samples > 1 and generation.temperature == 0:
        raise g.fail(
            "samples",
            f"is {generation.samples} but temperature is 0 (greedy replies are identical): "
            "set temperature > 0 or samples: 1",
        )
    if generation.frame and not generation.chat:
        raise g.fail("frame", "needs chat: true (a frame is a list of user/assistant exchanges)")
    return generation


def _parse_measurement(top: Fields) -> Measurement:
    m = top.sub("measurement", ["reader", "layer", "secondary", "validate_on"], {})
    readers = list(READER_NAMES)
    return Measurement(
        reader=m.choice("reader", readers, None),
        layer=m.integer("layer", None),
        secondary=tuple(_known(m, "secondary", m.strings("secondary", ()), readers)),
        validate_on=m.get("validate_on", str, None),
    )


def _parse_coherence(top: Fields) -> Coherence:
    c = top.sub("coherence", [f for f in Coherence.__dataclass_fields__], {})
    return Coherence(
        **{name: c.number(name, getattr(Coherence(), name), low=0) for name in Coherence.__dataclass_fields__}
    )


def _parse_statistics(top: Fields) -> Statistics:
    s = top.sub("statistics", ["correction", "alpha", "min_effect", "min_effect_dz"], {})
    statistics = Statistics(
        correction=s.choice("correction", get_args(Correction), "holm"),  # type: ignore[arg-type]
        alpha=s.number("alpha", 0.05, low=0),
        min_effect=s.number("min_effect", 0.0, low=0),
        min_effect_dz=s.number("min_effect_dz", 0.5, low=0),
    )
    if not 0 < statistics.alpha < 1:
        raise s.fail("alpha", f"is {statistics.alpha}: use a level between 0 and 1, e.g. 0.05")
    return statistics


def _known(r: Fields, key: str, values: Sequence[str], options: Sequence[str]) -> Sequence[str]:
    for value in values:
        if value not in options:
            raise r.fail(key, f"names unknown {value!r}: use one of {', '.join(options)}")
    return values


def _parse_frame(g: Fields) -> tuple[tuple[str, str], ...]:
    out = []
    for i, item in enumerate(g.get("frame", list, [])):
        r = Fields(item, f"{g.where}.frame[{i}]" if g.where else f"frame[{i}]", g.source, ["user", "assistant"])
        user, assistant = r.get("user", str), r.get("assistant", str)
        if not user.strip() or not assistant.strip():
            raise r.fail("user", "and 'assistant' must both be non-empty text")
        out.append((user.strip(), assistant.strip()))
    return tuple(out)


def _parse_prompts(top: Fields) -> PromptSpec:
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


NEEDS: dict[str, tuple[str, ...]] = {
    "add": ("emotions", "alphas"),
    "ablate": ("emotions",),
    "clamp": ("emotions", "alphas"),
    "random_add": ("alphas",),
    "random_ablate": (),
    "ablate_similar": ("like",),
    "prompt": ("instruction",),
    "baseline": (),
}


CONDITION_KEYS = (
    *("name", "op", "emotions", "alphas", "mode", "directions", "seed", "match", "like", "instruction"),
    *("layers", "positions", "per_prompt", "samples", "when"),
)


GENERATION_KEYS = ("max_new_tokens", "temperature", "seed", "samples", "chat", "batch_size", "frame", "ablation_mean")


def _parse_conditions(top: Fields) -> tuple[ConditionSpec, ...]:
    items = top.get("conditions", list)
    out: list[ConditionSpec] = []
    for i, item in enumerate(items):
        r = Fields(
            item,
            f"conditions[{i}]",
            top.source,
            CONDITION_KEYS,
        )
        op = r.choice("op", get_args(Op), "baseline" if r.data.get("name") == "baseline" else MISSING)
        for key in NEEDS[op]:
            r.get(key, object)  # present and not null
        layers = r.data.get("layers")
        if layers is not None and (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers)
        ):
            raise r.fail("layers", f"must be a non-empty list of layer numbers, got {show(layers)}")
        spec = ConditionSpec(
            name=r.get("name", str),
            op=op,  # type: ignore[arg-type]
            emotions=r.strings("emotions", ()),
            alphas=r.numbers("alphas", ()),
            mode=r.choice("mode", ABLATIONS, "mean"),  # type: ignore[arg-type]
            directions=r.integer("directions", 20, low=2),
            seed=r.integer("seed", 1000),
            match=r.get("match", str, ""),
            like=r.get("like", str, ""),
            instruction=r.get("instruction", str, ""),
            layers=tuple(layers) if layers else None,
            positions=r.choice("positions", POSITIONS, "all"),
            per_prompt=r.integer("per_prompt", None, low=1),
            samples=r.integer("samples", None, low=1),
            when=r.get("when", str, ""),
        )
        if spec.when and spec.op not in ("add", "ablate", "clamp", "random_add", "random_ablate"):
            raise r.fail("when", f"gates an edit, and op {spec.op!r} has none: use it with an edit")
        if spec.op == "random_ablate" and spec.mode == "directional":
            raise r.fail("mode", "is 'directional', which random_ablate does not support: use mean or zero")
        if spec.name in {s.name for s in out}:
            raise r.fail("name", f"{spec.name!r} is used twice: condition names must be unique")
        out.append(spec)
    names = [s.name for s in out]
    for i, spec in enumerate(out):
        if spec.match and spec.match not in names:
            raise SuiteError(
                f"{top.source}: field 'conditions[{i}].match' names unknown condition {spec.match!r}: "
                f"defined are {', '.join(names)}"
            )
    if not any(s.op == "baseline" for s in out):
        raise top.fail("conditions", "has no baseline: add `- name: baseline`")
    return tuple(out)


def _parse_metrics(top: Fields) -> tuple[MetricSpec, ...]:
    items = top.get("metrics", dict)
    out = []
    for name, item in items.items():
        r = Fields(item, f"metrics.{name}", top.source, ["kind", "emotion", "against"])
        kind = r.choice("kind", get_args(MetricKind))
        against = r.strings("against", ())
        if kind == "specificity" and not against:
            raise r.fail(
                "against",
                "is missing: a specificity metric names its comparison emotions, "
                "e.g. against: [happy, calm, confident]",
            )
        out.append(MetricSpec(str(name), kind, r.get("emotion", str), against))  # type: ignore[arg-type]
    if not out:
        raise top.fail("metrics", "is empty: define at least one metric")
    return tuple(out)
