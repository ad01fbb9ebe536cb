"""
Turning user values into JSON Rehook can read, without losing anything silently.

Rules (also in docs/concepts.md, "What gets sent"):
- str, int, bool, None and finite floats pass through; numbers stay numbers.
- A str with a lone surrogate (``"\\ud800"``) is not Unicode that UTF-8 can carry: the event is dropped as
  ``invalid_payload``. So is an int too long to write in decimal under the interpreter's limit (4,300 digits by
  default, `sys.set_int_max_str_digits`).
- NaN and +/-Infinity cannot be written as JSON numbers: the event is dropped as ``invalid_payload``.
- datetime, date and time become ISO 8601 strings (a naive datetime stays naive: no zone is invented).
- Decimal becomes a JSON number (an integral Decimal an int, otherwise a float); a non-finite one, or one beyond
  the double range (about 1.8e308), is invalid.
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
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from .constants import MAX_NESTING_DEPTH

__all__ = ["PayloadError", "header_problem", "json_safe", "safe_repr", "text_problem"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# Ints inside these bounds can always be written in decimal (the interpreter refuses from 4,300 digits by default);
# outside them the check runs, so the common case costs two comparisons.
_INT_BOUND = 10**4000

_DOUBLE_MAX = decimal.Decimal(sys.float_info.max)


def safe_repr(value: object) -> str:
    """
    ``repr(value)``, or a description of it when its ``__repr__`` raises (a user's class, an int too long).
    """
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__} that cannot be shown: {type(exc).__name__}>"


def text_problem(text: str) -> str | None:
    """
    Why ``text`` cannot be sent as UTF-8, or None when it can.
    """
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"contains a lone surrogate {found.group()!r} at position {found.start()}, which is not valid Unicode "
        "and cannot be sent as UTF-8"
    )


def header_problem(text: str) -> str | None:
    """
    Why ``text`` cannot travel as an HTTP header value unchanged (the Idempotency-Key), or None when it can.
    """
    found = _CONTROL.search(text)
    if found is not None:
        where = f"{found.group()!r} at position {found.start()}"
        return f"contains the control character {where}, which HTTP headers cannot carry"
    return text_problem(text)


def _checked_int(value: int, path: str) -> int:
    if -_INT_BOUND < value < _INT_BOUND:
        return value
    try:
        int.__repr__(value)
    except ValueError:
        raise PayloadError(
            path, f"an int of about {int(value.bit_length() * 0.30103)} digits is too long to write as a number"
        ) from None
    return value


def _checked_str(value: str, path: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PayloadError(path, problem)
    return value


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
    if _plain(value, 0):
        # Already JSON as it stands (the common case): no copy, and no key paths formatted for messages never
        # shown. It is encoded at once by the sender, and nothing on the way changes it.
        return value
    try:
        return _convert(value, path, 0, set())
    except PayloadError:
        raise
    except Exception as exc:  # a user's object whose methods raise (isoformat, value, ...)
        raise PayloadError(path, f"reading it raised {safe_repr(exc)}") from None


def _plain(value: Any, depth: int) -> bool:
    """
    Whether ``value`` is JSON `_convert` would return unchanged: str (UTF-8-safe), int within the bounds, finite
    float, bool, None, and dicts (str keys) and lists of those, nested less than `MAX_NESTING_DEPTH` (a container that
    contains itself ends there too, and the walk then names the problem). Exact types only: anything else is walked.
    """
    kind = type(value)
    if kind is str:
        return value.isascii() or _SURROGATE.search(value) is None
    if kind is int:
        return bool(-_INT_BOUND < value < _INT_BOUND)
    if kind is float:
        return math.isfinite(value)
    if kind is bool or value is None:
        return True
    if kind is dict:
        if depth >= MAX_NESTING_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _SURROGATE.search(key) is None):
                return False
            # The common scalars checked here rather than by a call each: most properties are flat.
            item_kind = type(item)
            if item_kind is str:
                if not (item.isascii() or _SURROGATE.search(item) is None):
                    return False
            elif item_kind is float:
                if not math.isfinite(item):
                    return False
            elif not (item_kind is bool or item is None or _plain(item, depth + 1)):
                return False
        return True
    if kind is list:
        if depth >= MAX_NESTING_DEPTH:
            return False
        return all(_plain(item, depth + 1) for item in value)
    return False


def _convert(value: Any, path: str, depth: int, seen: set[int]) -> Any:
    # Exact-type checks first: they are the common case and cheaper than isinstance chains.
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _checked_str(value, path)
    if kind is int:
        return value if -_INT_BOUND < value < _INT_BOUND else _checked_int(value, path)
    if kind is bool or value is None:
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
        except PayloadError:
            raise
        except Exception as exc:  # a user's Mapping whose items() raises, a set changed while it is read
            raise PayloadError(path, f"reading it raised {safe_repr(exc)}") from None
        finally:
            seen.discard(marker)
    if isinstance(value, enum.Enum):
        return _convert(value.value, path, depth + 1, seen)
    if isinstance(value, str):  # subclasses of str that are not enums: their text, not their __str__
        return _checked_str(str.__str__(value), path)
    if isinstance(value, int) and not isinstance(value, bool):
        return _checked_int(int(value), path)
    if isinstance(value, float):
        return _convert(float(value), path, depth, seen)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise PayloadError(path, f"Decimal {value} is not a JSON number")
        if abs(value) > _DOUBLE_MAX:
            # Rehook (and every JSON reader with double numbers) would read it as Infinity.
            raise PayloadError(path, f"Decimal {value} is beyond what a JSON number holds (about 1.8e308)")
        if value == value.to_integral_value():
            return _checked_int(int(value), path)
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return _checked_str(bytes(value).decode("utf-8"), path)
        except UnicodeDecodeError as exc:
            raise PayloadError(path, f"bytes that are not UTF-8 ({exc.reason} at byte {exc.start})") from None
    raise PayloadError(path, f"a {kind.__qualname__} value cannot be sent as JSON")


def _convert_mapping(value: Mapping[Any, Any], path: str, depth: int, seen: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is str:
            name = key
        elif isinstance(key, enum.Enum) and isinstance(key.value, str | int) and not isinstance(key.value, bool):
            name = _key_text(key.value, path)
        elif isinstance(key, str | int) and not isinstance(key, bool):
            name = _key_text(key, path)
        else:
            raise PayloadError(path, f"key {safe_repr(key)} is a {type(key).__qualname__}; keys must be strings")
        if not name.isascii():
            problem = text_problem(name)
            if problem is not None:
                raise PayloadError(path, f"key {name!r} {problem}")
        if name in out:
            raise PayloadError(path, f"two keys both become {name!r}")
        out[name] = _convert(item, f"{path}.{name}", depth + 1, seen)
    return out


def _key_text(key: str | int, path: str) -> str:
    # The key's own text or digits, never its class's __str__ (which may do anything, or raise).
    if isinstance(key, str):
        return str.__str__(key)
    try:
        return int.__repr__(key)
    except ValueError:
        raise PayloadError(path, "an int key is too long to write as a string") from None
