"""The ``steerlab`` command: thin click commands over the library, one module per stage."""

from __future__ import annotations

import os
import sys

import click

from steerlab.cli import corpus as _corpus  # noqa: F401  (each module registers its commands)
from steerlab.cli import emotions as _emotions  # noqa: F401
from steerlab.cli import evaluate as _evaluate  # noqa: F401
from steerlab.cli import export as _export  # noqa: F401
from steerlab.cli import extract as _extract  # noqa: F401
from steerlab.cli import fit_reader as _fit_reader  # noqa: F401
from steerlab.cli import gate as _gate  # noqa: F401
from steerlab.cli import models as _models  # noqa: F401
from steerlab.cli import report as _report  # noqa: F401
from steerlab.cli import scope as _scope  # noqa: F401
from steerlab.cli import serve as _serve  # noqa: F401
from steerlab.cli import steer as _steer  # noqa: F401
from steerlab.cli import validate as _validate  # noqa: F401
from steerlab.cli.common import cli
from steerlab.core.errors import SteerlabError


def main() -> None:
    """Entry point: every error is one line on stderr naming the value and the fix; exit code 2.

    Under ``torchrun`` the ranks share the forward passes and only rank 0 prints and writes."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from steerlab.core.parallel import init_from_env, is_main

        init_from_env()
        if not is_main():
            sys.stdout = open(os.devnull, "w")
    try:
        cli.main(standalone_mode=False)
    except SteerlabError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as err:
        command = err.ctx.command_path if err.ctx else "steerlab"
        message = " ".join(err.format_message().split())
        click.echo(f"error: {message} (see `{command} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as err:
        click.echo(f"error: {' '.join(err.format_message().split())}", err=True)
        sys.exit(2 if err.exit_code in (1, 2) else err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
