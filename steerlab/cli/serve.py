"""``steerlab serve``: the live view in a browser (needs the ``serve`` extra: FastAPI and uvicorn)."""

from __future__ import annotations

import click

from steerlab.cli.common import cli, get_vectors_and_model, model_options, say
from steerlab.core.errors import SteerlabError


@cli.command("serve")
@click.option(
    "--vectors", "vectors_path", default=None, help="Vector file (default: the shipped vectors of the model)."
)
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (local only by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve_cmd(
    vectors_path: str | None, model_spec: str | None, revision: str | None, dtype: str | None, host: str, port: int
) -> None:
    """Chat with the model in a browser and watch both turns' emotions token by token; compare a
    steered reply with the baseline. Everything is served locally; no network is needed."""
    try:
        import uvicorn

        from steerlab.serve.app import create_app
    except ImportError as err:
        raise SteerlabError(
            f"the live view needs FastAPI and uvicorn ({err.name} is missing): pip install 'steerlab[serve]'"
        ) from None
    vectors, lm = get_vectors_and_model(vectors_path, model_spec, revision, dtype)
    say(f"steerlab live on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(create_app(lm, vectors), host=host, port=port, log_level="warning")
