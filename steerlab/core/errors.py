"""Typed exceptions. The CLI turns every SteerlabError into one line on stderr and exit code 2."""


class SteerlabError(Exception):
    """A problem with the user's input; the message names the bad value and the fix."""


class ModelError(SteerlabError):
    """A model spec that cannot be resolved or loaded."""


class CorpusError(SteerlabError):
    """A corpus file that is missing, malformed or too small."""


class VectorsError(SteerlabError):
    """A vector file that is missing, malformed or built for another model."""


class InterventionError(SteerlabError):
    """An intervention that cannot be applied (unknown emotion, bad layer, bad alpha)."""


class SuiteError(SteerlabError):
    """A validation suite file with a missing or malformed field."""
