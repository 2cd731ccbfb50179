"""``steerlab models``: the built-in model specs."""

from __future__ import annotations

import click

from steerlab.cli.common import cli


@cli.command()
def models() -> None:
    """List the built-in model specs with layers, hidden size and cache state."""
    from steerlab.core.cache import cache_dir
    from steerlab.model.models import KNOWN_SPECS, is_cached, model_shape

    cache_dir()  # a cache that cannot be a folder is one error, before the table starts
    click.echo(f"{'spec':22} {'layers':>6} {'hidden':>6}  cached")
    for spec in KNOWN_SPECS:
        layers, hidden = model_shape(spec)
        click.echo(f"{spec:22} {layers:>6} {hidden:>6}  {'yes' if is_cached(spec) else 'no (built on first use)'}")
    click.echo("Any Hugging Face id or local path also works, e.g. --model google/gemma-2-2b-it.")
