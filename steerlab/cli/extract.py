"""``steerlab extract``: one direction per emotion at every layer, with the held-out layer sweep."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from steerlab.cli.common import Phases, check_out, cli, get_model, model_options, say
from steerlab.core.errors import SteerlabError
from steerlab.core.names import (
    DEFAULT_METHOD,
    DEFAULT_READOUT,
    DEFAULT_SKIP_TOKENS,
    EMBEDDED,
    METHOD_NAMES,
    READOUT_NAMES,
)

if TYPE_CHECKING:
    import pandas as pd

    from steerlab.core.corpus import Corpus
    from steerlab.core.vectors import EmotionVectors
    from steerlab.model.models import LoadedModel
    from steerlab.read.extraction import ExtractConfig, ExtractResult

# Progress units of extract's phases (see extraction.extract).
UNITS = {"forward": "text", "directions": "layer", "probes": "fit", "reply forward": "reply", "reader choice": "step"}


@cli.command("extract")
@model_options
@click.option("--corpus", "corpus_path", default=None, help="JSONL corpus (default: the built-in one).")
@click.option("--method", type=click.Choice(METHOD_NAMES), default=DEFAULT_METHOD, show_default=True)
@click.option(
    "--out",
    default=None,
    help="Output .safetensors (default: <cache>/vectors/<model>/emotions.safetensors, see `steerlab models`).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--test-fraction", default=0.25, show_default=True, type=float, help="Held-out share per emotion.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 1024))
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(8, 8192))
@click.option(
    "--readout",
    type=click.Choice(READOUT_NAMES),
    default=DEFAULT_READOUT,
    show_default=True,
    help="Positions pooled per text: mean of its tokens, its last token, or prep (the text as a user turn, "
    "read where the model is about to reply).",
)
@click.option(
    "--skip-tokens",
    default=DEFAULT_SKIP_TOKENS,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="Content tokens skipped at the start of each text (mean readout).",
)
def extract_cmd(
    model_spec: str | None,
    revision: str | None,
    dtype: str | None,
    corpus_path: str | None,
    method: str,
    out: str | None,
    force: bool,
    seed: int,
    test_fraction: float,
    batch_size: int,
    max_length: int,
    readout: str,
    skip_tokens: int,
) -> None:
    """Extract one direction per emotion at every layer and sweep the layers on held-out texts."""
    import time

    from steerlab.core.corpus import load_corpus

    start = time.perf_counter()
    target, sides = _outputs(out, model_spec, test_fraction, force)
    c = load_corpus(corpus_path)  # everything above needs no torch: errors answer at once
    _claim(target, (target, *sides.values()), force)

    from steerlab.model.activations import PoolingConfig
    from steerlab.read.extraction import ExtractConfig

    lm = get_model(model_spec, revision, dtype)
    load = time.perf_counter() - start
    config = ExtractConfig(
        method=method,  # type: ignore[arg-type]  # click.Choice checked it
        test_fraction=test_fraction,
        seed=seed,
        pooling=PoolingConfig(batch_size, max_length, skip_tokens, readout),  # type: ignore[arg-type]
    )
    result = _extract(lm, c, config)
    timing = {"load": round(load, 2), **result.timing, "total": round(time.perf_counter() - start, 2)}
    v = replace(result.vectors, meta={**result.vectors.meta, "timing": timing})  # the file records its run
    say(
        f"{len(c.records)} texts, {result.pooled.n_tokens} content tokens in {result.pooled.seconds:.1f}s "
        f"({result.pooled.n_tokens / result.pooled.seconds:.0f} tok/s); phases (s): {timing}"
    )
    table = _print_sweep(result, v, lm)
    from steerlab.core.parallel import is_main

    if not is_main():
        return  # rank 0 writes
    _write(v, result, table, target, sides, title=f"{lm.spec} · {method} · {readout} readout · {c.source}")
    if not out:
        say(f"use them with --vectors {target}")


def _outputs(
    out: str | None, model_spec: str | None, test_fraction: float, force: bool
) -> tuple[Path, dict[str, Path]]:
    """The vector file and its side files, checked writable before any work."""
    from steerlab.core.vectorfile import side_files, user_vectors

    if not 0 < test_fraction < 1:
        raise SteerlabError(f"--test-fraction {test_fraction} must lie between 0 and 1, e.g. 0.25")
    target = Path(out) if out else user_vectors(model_spec or EMBEDDED)
    if target.suffix != ".safetensors":
        raise SteerlabError(f"--out {str(target)!r} must end in .safetensors")
    sides = side_files(target)
    for path in (target, *sides.values()):
        check_out(path, "--out", force=force)
    return target, sides


def _claim(target: Path, outputs: tuple[Path, ...], force: bool) -> None:
    """Hold ``target`` until the command ends, then check the outputs again: a run that finished in the
    meantime has written them."""
    from steerlab.core.files import claimed
    from steerlab.core.parallel import is_main

    if is_main():  # under torchrun rank 0 writes
        click.get_current_context().with_resource(claimed(target))
        for path in outputs:
            check_out(path, "--out", force=force)


def _extract(lm: LoadedModel, c: Corpus, config: ExtractConfig) -> ExtractResult:
    """:func:`extraction.extract` with one progress bar per phase."""
    from steerlab.read.extraction import extract

    with Phases(UNITS) as phases:
        pooled = [0]

        def tick(n_texts: int, n_tokens: int) -> None:
            pooled[0] += n_texts
            phases("forward", pooled[0], len(c.records), n_tokens)

        return extract(lm, c, config, tick, phases)


def _print_sweep(result: ExtractResult, v: EmotionVectors, lm: LoadedModel) -> pd.DataFrame:
    """The layer sweep as a table on stdout, then the layers chosen; returns the table."""
    import pandas as pd

    table = pd.DataFrame([r.row() for r in result.sweep]).set_index("layer")
    click.echo(table.to_string(float_format=lambda x: f"{x:.3f}"))
    click.echo(
        f"chance top-1 = {1 / len(v.emotions):.3f} ({len(v.emotions)} emotions); "
        f"best layer {v.meta['best_layer']}, steering layer {v.steering_layer}, reading layer {v.reading_layer} "
        f"({v.default_reader} reader)"
    )
    click.echo(f"layers chosen {v.meta['selection']}; rule: {v.meta['layer_rule']}")
    if lm.is_random:
        click.echo("note: random weights — these vectors test the plumbing and say nothing about emotions")
    return table


def _write(
    v: EmotionVectors,
    result: ExtractResult,
    table: pd.DataFrame,
    target: Path,
    sides: dict[str, Path],
    title: str,
) -> None:
    """The vector file, the sweep as CSV and (with matplotlib) as a figure."""
    from steerlab.core.vectors import save_vectors

    save_vectors(v, target)
    table.to_csv(sides["sweep_csv"], float_format="%.6f")
    if "sweep_png" in sides:
        from steerlab.report.plots import plot_layer_sweep

        plot_layer_sweep(
            result.sweep, v.steering_layer, len(v.emotions), sides["sweep_png"], title=title, reading=v.reading_layer
        )
    click.echo(f"wrote {target}, {', '.join(p.name for p in sides.values())}")
    if "sweep_png" not in sides:
        say("no layer_sweep.png: the figure needs matplotlib, pip install 'steerlab[plots]'")
