"""Typed access to one YAML mapping of a suite file; every error names the file, the field and the fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from steerlab.core.checks import did_you_mean
from steerlab.core.errors import SuiteError

MISSING = object()


class Fields:
    """Typed access to one YAML mapping; every error names the suite file and the field."""

    def __init__(self, data: object, where: str, source: str, allowed: Sequence[str]) -> None:
        if not isinstance(data, dict):
            raise SuiteError(f"{source}: {where or 'the file'} must be a mapping (key: value), got {show(data)}")
        for key in data:
            if key not in allowed:
                raise SuiteError(
                    f"{source}: unknown field {self._at(where, key)!r}{did_you_mean(str(key), allowed)}: "
                    f"allowed are {', '.join(allowed)}"
                )
        self.data, self.where, self.source = data, where, source

    @staticmethod
    def _at(where: str, key: object) -> str:
        return f"{where}.{key}" if where else str(key)

    def fail(self, key: str, msg: str) -> SuiteError:
        return SuiteError(f"{self.source}: field {self._at(self.where, key)!r} {msg}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is MISSING:
                raise self.fail(key, "is missing: add it")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"must be {name}, got {show(value)}")
        return value

    def number(self, key: str, default: Any = MISSING, low: float | None = None) -> Any:
        value = self.get(key, float, default)
        if value is not None and (not math.isfinite(value) or (low is not None and value < low)):
            raise self.fail(key, f"must be a finite number{f' >= {low:g}' if low is not None else ''}, got {value!r}")
        return float(value) if value is not None else value

    def integer(self, key: str, default: Any = MISSING, low: int = 0) -> int:
        value = self.get(key, int, default)
        if value is not None and value < low:
            raise self.fail(key, f"must be an integer >= {low}, got {value}")
        return value  # type: ignore[no-any-return]

    def choice(self, key: str, options: Sequence[str], default: Any = MISSING) -> Any:
        value = self.get(key, str, default)
        if value is None and default is None:
            return None
        if value not in options:
            raise self.fail(key, f"is {value!r}: use one of {', '.join(options)}")
        return value  # type: ignore[no-any-return]

    def strings(self, key: str, default: Any = MISSING) -> tuple[str, ...]:
        if self.data.get(key) is None and default is not MISSING:
            return default  # type: ignore[no-any-return]
        value = self.get(key, (list, str))
        items = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(v, str) and v.strip() for v in items):
            raise self.fail(key, f"must be a list of non-empty strings, got {show(value)}")
        return tuple(v.strip() for v in items)

    def numbers(self, key: str, default: Any = MISSING) -> tuple[float, ...]:
        if self.data.get(key) is None and default is not MISSING:
            return default  # type: ignore[no-any-return]
        value = self.get(key, (list, int, float))
        items = value if isinstance(value, list) else [value]
        if not items or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items
        ):
            raise self.fail(key, f"must be a number or a non-empty list of numbers, got {show(value)}")
        return tuple(float(v) for v in items)

    def sub(self, key: str, allowed: Sequence[str], default: Any = MISSING) -> Fields:
        value = self.data.get(key, MISSING)
        if value is MISSING or value is None:
            if default is MISSING:
                raise self.fail(key, "is missing: add it")
            value = default
        return Fields(value, self._at(self.where, key), self.source, allowed)


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
