"""``steerlab emotions``: the built-in emotion set (the names --emotion, --ablate and suites take)."""

from __future__ import annotations

import click

from steerlab.cli.common import cli, echo_json


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: name -> valence, arousal.")
def emotions(as_json: bool) -> None:
    """List the 20 built-in emotions with their valence and arousal (in [-1, 1])."""
    from steerlab.core.corpus import emotion_info

    info = emotion_info()
    if as_json:
        echo_json({name: {"valence": e.valence, "arousal": e.arousal} for name, e in info.items()})
        return
    click.echo(f"{'emotion':14} {'valence':>8} {'arousal':>8}")
    for name, e in sorted(info.items(), key=lambda kv: (-kv[1].valence, kv[0])):
        click.echo(f"{name:14} {e.valence:>+8.2f} {e.arousal:>+8.2f}")
    click.echo(f"{len(info)} emotions; a vector file holds those of the corpus it was extracted from.")
