"""Optional dependencies: what each extra of ``pip install 'steerlab[EXTRA]'`` brings, whether it is
installed, and the one-line error that names it. The main job (extract, steer, scope on the built-in
models) needs none of them."""

from __future__ import annotations

import importlib.util
from typing import Final

from steerlab.core.errors import SteerlabError

EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "plots": ("matplotlib",),  # figures: the layer sweep's PNG, scope --plot, suite figures, the report
    "lexicon": ("vaderSentiment", "nrclex"),  # the model-free `lexicon` reader
    "serve": ("fastapi", "uvicorn"),  # steerlab serve: the live view
    "llamacpp": ("xllamacpp",),  # a real llama.cpp for the exported control vectors
}


def missing(extra: str) -> tuple[str, ...]:
    """The modules of ``extra`` that cannot be imported here."""
    return tuple(m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None)


def has(extra: str) -> bool:
    return not missing(extra)


def require(extra: str, what: str) -> None:
    """Raise one line naming the extra to install when ``what`` cannot run without it."""
    gone = missing(extra)
    if gone:
        raise SteerlabError(f"{what} needs {', '.join(gone)}: pip install 'steerlab[{extra}]'")
