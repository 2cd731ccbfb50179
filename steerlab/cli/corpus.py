"""``steerlab corpus stats | validate``."""

from __future__ import annotations

import click

from steerlab.cli.common import cli, echo_json
from steerlab.core.errors import SteerlabError


@cli.group()
def corpus() -> None:
    """Inspect emotion corpora (JSONL: text, emotion, optional topic/speaker/split/style)."""


@corpus.command("stats")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def corpus_stats_cmd(path: str | None, as_json: bool) -> None:
    """Counts, lengths, duplicates and self-naming texts (PATH default: the built-in corpus)."""
    import pandas as pd

    from steerlab.core.corpus import corpus_stats, load_corpus

    stats = corpus_stats(load_corpus(path))
    if as_json:
        echo_json(stats)
        return
    click.echo(
        f"{stats['source']}  sha256 {str(stats['sha256'])[:12]}  "
        f"{stats['n_texts']} texts, {stats['n_emotions']} emotions; styles: "
        + ", ".join(f"{k} {v}" for k, v in stats["styles"].items())
    )
    table = pd.DataFrame.from_dict(stats["per_emotion"], orient="index")
    click.echo(table.to_string(float_format=lambda v: f"{v:.1f}"))
    click.echo(f"duplicates: {len(stats['duplicates'])}   texts naming their own emotion: {len(stats['self_naming'])}")
    for item in stats["self_naming"][:20]:
        click.echo(f"  #{item['index']} ({item['emotion']}): {item['word']!r}")


@corpus.command("validate")
@click.argument("path")
def corpus_validate_cmd(path: str) -> None:
    """Check a corpus file; exit 2 with the first problem, 0 when it loads."""
    from steerlab.core.corpus import corpus_stats, load_corpus

    c = load_corpus(path)
    stats = corpus_stats(c)
    problems = len(stats["duplicates"]) + len(stats["self_naming"])
    click.echo(
        f"ok: {len(c.records)} texts, {len(c.emotions)} emotions; {len(stats['duplicates'])} duplicates, "
        f"{len(stats['self_naming'])} texts name their own emotion"
    )
    if problems:
        raise SteerlabError(f"{path}: fix the duplicates / self-naming texts listed by `steerlab corpus stats {path}`")
