"""
Turning user values into JSON Rehook can read, without losing anything silently.

Rules (also in the README, "What gets sent"):
- str, int, bool, None and finite floats pass through; numbers stay numbers.
- NaN and +/-Infinity cannot be written as JSON numbers: the event is dropped as ``invalid_payload``.
- datetime, date and time become ISO 8601 strings (a naive datetime stays naive: no zone is invented).
- Decimal becomes a JSON number (an integral Decimal an int, otherwise a float); a non-finite one is invalid.
- UUID becomes its canonical string; an Enum member becomes its value (converted by these same rules).
- tuple, list, set and frozenset become arrays (sets sorted when their items can be sorted).
- bytes and bytearray must be UTF-8 and become strings.
- Mapping keys must be str (an int key becomes its string, as json.dumps does); two keys that become the
  same string are invalid.
- Anything else, a container that contains itself, or nesting deeper than `MAX_NESTING_DEPTH`, is invalid.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import uuid
from collections.abc import Mapping
from typing import Any

from ._constants import MAX_NESTING_DEPTH

__all__ = ["PayloadError", "json_safe"]

_PASS_THROUGH = (str, bool, int, type(None))


class PayloadError(Exception):
    """
    A value at ``path`` cannot be sent as JSON; internal, it becomes an ``invalid_payload`` outcome.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def json_safe(value: Any, path: str) -> Any:
    """
    Return a JSON-safe copy of ``value``.

    Args:
        value: Any user value.
        path: Where the value sits, for error messages (``properties``, ``traits``...).

    Raises:
        PayloadError: naming the key path of the first value that cannot be carried.
    """
    return _convert(value, path, 0, set())


def _convert(value: Any, path: str, depth: int, seen: set[int]) -> Any:
    # Exact-type checks first: they are the common case and cheaper than isinstance chains.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise PayloadError(path, f"{value!r} is not a JSON number")
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if depth >= MAX_NESTING_DEPTH:
            raise PayloadError(path, f"nested deeper than {MAX_NESTING_DEPTH} levels")
        marker = id(value)
        if marker in seen:
            raise PayloadError(path, "contains itself (a circular reference)")
        seen.add(marker)
        try:
            if isinstance(value, Mapping):
                return _convert_mapping(value, path, depth, seen)
            items: Any = value
            if isinstance(value, set | frozenset):
                try:
                    items = sorted(value)
                except TypeError:
                    items = list(value)
            return [_convert(item, f"{path}[{i}]", depth + 1, seen) for i, item in enumerate(items)]
        finally:
            seen.discard(marker)
    if isinstance(value, enum.Enum):
        return _convert(value.value, path, depth + 1, seen)
    if isinstance(value, _PASS_THROUGH):  # subclasses of str/int that are not enums
        return value
    if isinstance(value, float):
        return _convert(float(value), path, depth, seen)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise PayloadError(path, f"Decimal {value} is not a JSON number")
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(path, f"bytes that are not UTF-8 ({exc.reason} at byte {exc.start})") from None
    raise PayloadError(path, f"a {kind.__qualname__} value cannot be sent as JSON")


def _convert_mapping(value: Mapping[Any, Any], path: str, depth: int, seen: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is str:
            name = key
        elif isinstance(key, enum.Enum) and isinstance(key.value, str | int) and not isinstance(key.value, bool):
            name = str(key.value)
        elif isinstance(key, str):
            name = str(key)
        elif isinstance(key, int) and not isinstance(key, bool):
            name = str(int(key))
        else:
            raise PayloadError(path, f"key {key!r} is a {type(key).__qualname__}; keys must be strings")
        if name in out:
            raise PayloadError(path, f"two keys both become {name!r}")
        out[name] = _convert(item, f"{path}.{name}", depth + 1, seen)
    return out
