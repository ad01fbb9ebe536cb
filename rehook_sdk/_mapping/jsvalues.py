"""
JavaScript's value semantics, for evaluating Segment triggers and mapping-kit directives exactly as Segment does.

Segment's subscription and mapping code is JavaScript: ``String(x)``, ``Number(x)``, truthiness and a lodash-like
``get`` decide what matches. The functions here reproduce them on JSON values (None is ``null``, `UNDEFINED` is
``undefined``).
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any, Final

__all__ = ["UNDEFINED", "js_get", "js_number", "js_string", "js_trim", "js_truthy", "split_path"]


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()
"""JavaScript's ``undefined``: a key that is not there (``None`` is ``null``: a key that holds null)."""

_PATH_SEGMENT = re.compile(r"[^\[.\]]+")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_DECIMAL_LITERAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RADIX_LITERAL = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
# ECMAScript's StrWhiteSpaceChar: white space and line terminators.
_JS_WHITESPACE = (
    " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def split_path(path: str) -> list[str]:
    """
    The keys of a dot/bracket path, as Segment's ``get`` splits it: ``"a.b[0].c"`` -> ``["a", "b", "0", "c"]``.
    """
    return _PATH_SEGMENT.findall(path)


def js_trim(text: str) -> str:
    """
    JavaScript's ``text.trim()``: white space and line terminators off both ends.
    """
    return text.strip(_JS_WHITESPACE)


def js_truthy(value: Any) -> bool:
    """
    JavaScript truthiness: ``undefined``, ``null``, ``false``, ``0``, ``NaN`` and ``""`` are false.
    """
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def js_get(obj: Any, keys: list[str]) -> Any:
    """
    Segment's ``get(obj, path)``: ``keys.reduce((prev, key) => prev && prev[key], obj)``.

    Like the original, a falsy value met on the way is the result (``get({a: 0}, "a.b")`` is ``0``).
    """
    value = obj
    for key in keys:
        if not js_truthy(value):
            break
        value = _member(value, key)
    return value


def _member(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return value.get(key, UNDEFINED)
    if isinstance(value, list | str):
        if key == "length":
            return len(value)
        if _ARRAY_INDEX.fullmatch(key) and int(key) < len(value):
            return value[int(key)]
    return UNDEFINED


def js_string(value: Any) -> str:
    """
    JavaScript's ``String(value)`` for JSON values.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_to_string(value)
    if isinstance(value, list):
        return ",".join("" if item is None or item is UNDEFINED else js_string(item) for item in value)
    return "[object Object]"


def js_number(value: Any) -> float:
    """
    JavaScript's ``Number(value)`` for JSON values (NaN when it is not a number).
    """
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # JSON.parse reads such a number as Infinity
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip(_JS_WHITESPACE)
        if text == "":
            return 0.0
        if text in ("Infinity", "+Infinity"):
            return math.inf
        if text == "-Infinity":
            return -math.inf
        if _DECIMAL_LITERAL.fullmatch(text):
            return float(text)
        radix = _RADIX_LITERAL.fullmatch(text)
        if radix:
            base = {"x": 16, "o": 8, "b": 2}[text[1].lower()]
            return float(int(radix.group(1)[1:], base))
        return math.nan
    if isinstance(value, list):
        return js_number(js_string(value))
    return math.nan


def _number_to_string(x: float) -> str:
    # ECMAScript Number::toString: the shortest round-trip digits (Python's repr finds the same digits), laid out
    # in fixed notation from 1e-7 up to 1e21 and in exponent notation outside that range.
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    _, digit_tuple, exponent = decimal.Decimal(repr(abs(x))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = exponent + k  # the value is 0.<digits> * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text
