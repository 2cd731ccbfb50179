"""The self-contained HTML report (``steerlab report``): layer sweep, geometry, intensity scales, dual
speaker and scope examples on one page, figures inline. Every analysis reads at the vectors'
reading layer; the steering layer is recorded beside it. The sections are :mod:`steerlab.report.sections`."""

from __future__ import annotations

import html
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerlab.core.files import atomic_write
from steerlab.report.sections import (
    dual_speaker_section,
    examples_section,
    geometry_section,
    intensity_section,
    sweep_section,
)

if TYPE_CHECKING:
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel


@dataclass(frozen=True)
class ReportConfig:
    external_scales: str | None = None  # EmotionScope-format scales file to add (skipped if absent)
    generate: bool = True  # let the model write the reply of the first scope example
    max_new_tokens: int = 40  # reply length for generated examples
    dialogues: str | None = None  # dialogue JSONL (default: package data)
    title: str = "steerlab report"


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "img{max-width:100%;display:block;margin:1em 0}table{border-collapse:collapse;font-size:12px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}.warn{color:#b00}"
    ".wide{overflow-x:auto}.wide img{max-width:none}"
)


def build_report(
    lm: LoadedModel,
    vectors: EmotionVectors,
    path: str | Path,
    config: ReportConfig = ReportConfig(),
    progress: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write one self-contained HTML file (inline PNGs, no network); returns it and the key numbers.

    Every analysis reads at ``vectors.reading_layer``; ``numbers`` records it and the steering layer."""
    note = progress or (lambda _m: None)
    path = Path(path)
    numbers: dict[str, Any] = {
        "model": lm.spec,
        "reading_layer": vectors.reading_layer,
        "steering_layer": vectors.steering_layer,
    }
    parts = _header(lm, vectors, config.title)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        parts += sweep_section(lm, vectors, tmp)
        note("geometry")
        parts += geometry_section(vectors, tmp, numbers)
        note("intensity scales")
        parts += intensity_section(lm, vectors, config, tmp, numbers)
        note("dual speaker (one pass over the dialogues)")
        parts += dual_speaker_section(lm, vectors, config, tmp, numbers)
        note("scope examples")
        parts += examples_section(lm, vectors, config, tmp, numbers)
    page = _page(config.title, parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path, numbers


def _header(lm: LoadedModel, vectors: EmotionVectors, title: str) -> list[str]:
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        (
            f"<p>model <b>{html.escape(lm.spec)}</b> ({html.escape(lm.model_id)}), "
            f"vectors: {len(vectors.emotions)} emotions, method {html.escape(str(vectors.meta.get('method')))}, "
            f"reading layer {vectors.reading_layer} (steering layer {vectors.steering_layer}). Scores are cosines "
            "of the centred activation (minus the training grand mean at that layer) with unit emotion directions, "
            "so they are comparable across texts and positions; the noise floor is the same cosine for random "
            "directions.</p>"
        ),
    ]
    if lm.is_random:
        parts.append(
            '<p class="warn">Random weights: every number here tests the plumbing and says nothing about emotions.</p>'
        )
    return parts


def _page(title: str, parts: list[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}'
        "</style></head><body>" + "\n".join(parts) + "</body></html>"
    )
