"""
Segment's mapping-kit directives (``@path``, ``@if``, ``@template``, ``@literal``), compiled once into resolvers.

A field value is literal JSON or a directive object: an object whose only key starts with ``@``. Resolving gives
a JSON value, or `UNDEFINED` for "missing": a missing value removes its key from an object (and is ``null``
inside an array), while ``null`` stays ``null``. Semantics follow mapping-kit, quirks included:

- ``@path`` drops the first ``"$."`` and reads like Segment's ``get`` (``a.b[0].c``).
- ``@if`` needs a truthy ``exists`` or ``blank`` operand. ``exists`` holds when the value is not null or missing;
  ``blank`` holds when it is not null, missing or loosely equal to ``""`` (so ``0``, ``false`` and ``[]`` count
  as blank). ``then`` is used when given (even ``null``); ``else`` only when its value is truthy.
- ``@template`` replaces ``{{path}}`` with the value HTML-escaped and ``{{{path}}}`` unescaped; a missing value
  becomes ``""``, anything else ``String(value)``.
- ``@literal`` resolves its argument (so a directive inside it still runs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._jsvalues import UNDEFINED, js_get, js_string, js_truthy, split_path

__all__ = ["DirectiveError", "DirectiveRuntimeError", "Resolver", "compile_value", "object_resolver", "producible"]

Resolver = Callable[[dict[str, Any]], Any]

DIRECTIVES = ("@if", "@literal", "@path", "@template")
_IF_KEYS = {"exists", "blank", "then", "else"}
_TRIPLE = re.compile(r"\{\{\{([^}]+)\}\}\}")
_DOUBLE = re.compile(r"\{\{([^}]+)\}\}")
_HTML_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&#39;",
    "/": "&#x2F;",
    "`": "&#x60;",
    "=": "&#x3D;",
}
_HTML_SPECIAL = re.compile(r"[&<>\"'`=/]")


class DirectiveError(Exception):
    """
    A field value that is not valid mapping-kit; ``where`` is its location (``metadata.amount``).
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class DirectiveRuntimeError(Exception):
    """
    A directive met a value it cannot use while resolving an event (for example a nested @path that is not a string).
    """


def _directive_name(spec: dict[Any, Any], where: str) -> str | None:
    names = [k for k in spec if isinstance(k, str) and k.startswith("@")]
    if not names:
        return None
    if len(names) > 1:
        raise DirectiveError(where, f"an object may hold only one directive, got {', '.join(sorted(names))}")
    if len(spec) > 1:
        others = ", ".join(repr(k) for k in spec if k != names[0])
        raise DirectiveError(where, f"a directive object cannot have other keys ({names[0]} with {others})")
    if names[0] not in DIRECTIVES:
        raise DirectiveError(where, f"unknown directive {names[0]}; known: {', '.join(DIRECTIVES)}")
    return names[0]


def compile_value(spec: Any, where: str) -> Resolver:
    """
    Compile a field value (literal JSON with directives anywhere inside) into a resolver over a Segment event.

    Raises:
        DirectiveError: the value is not valid mapping-kit or not JSON.
    """
    if isinstance(spec, dict):
        name = _directive_name(spec, where)
        if name is not None:
            return _compile_directive(name, spec[name], f"{where}.{name}")
        for key in spec:
            if not isinstance(key, str):
                raise DirectiveError(where, f"keys must be strings, got {key!r}")
        return object_resolver([(key, compile_value(value, f"{where}.{key}")) for key, value in spec.items()])
    if isinstance(spec, list | tuple):
        elements = [compile_value(value, f"{where}[{i}]") for i, value in enumerate(spec)]

        def resolve_array(event: dict[str, Any]) -> list[Any]:
            return [None if (v := resolve(event)) is UNDEFINED else v for resolve in elements]

        return resolve_array
    if spec is None or isinstance(spec, str | bool | int | float):
        if isinstance(spec, float) and spec != spec:
            raise DirectiveError(where, "NaN is not JSON")
        return lambda event: spec
    raise DirectiveError(where, f"{type(spec).__qualname__} values are not JSON")


def object_resolver(items: list[tuple[str, Resolver]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """
    Resolve each key's value; a value that resolves to nothing (`UNDEFINED`) removes its key.
    """

    def resolve_object(event: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, resolve in items:
            value = resolve(event)
            if value is not UNDEFINED:
                out[key] = value
        return out

    return resolve_object


def _string_argument(arg: Any, where: str, directive: str) -> tuple[str | None, Resolver | None]:
    # mapping-kit resolves the argument first, so it may itself be a directive that yields a string.
    if isinstance(arg, str):
        return arg, None
    if isinstance(arg, dict) and _directive_name(arg, where) is not None:
        return None, compile_value(arg, where)
    raise DirectiveError(where, f"{directive} takes a string (or a directive that gives one), got {arg!r}")


def _dynamic(resolve: Resolver, directive: str, use: Callable[[str, dict[str, Any]], Any]) -> Resolver:
    def run(event: dict[str, Any]) -> Any:
        arg = resolve(event)
        if not isinstance(arg, str):
            raise DirectiveRuntimeError(f"{directive}: expected a string, got {js_string(arg)!r}")
        return use(arg, event)

    return run


def _compile_directive(name: str, arg: Any, where: str) -> Resolver:
    if name == "@literal":
        return compile_value(arg, where)
    if name == "@path":
        path, dynamic = _string_argument(arg, where, name)
        if dynamic is not None:
            return _dynamic(dynamic, name, lambda p, event: _read_path(event, p))
        assert path is not None
        keys = split_path(path.replace("$.", "", 1))
        if not keys:
            raise DirectiveError(where, f"the path {path!r} names no field")
        return lambda event: js_get(event, keys)
    if name == "@template":
        template, dynamic = _string_argument(arg, where, name)
        if dynamic is not None:
            return _dynamic(dynamic, name, render_template)
        assert template is not None
        return lambda event: render_template(template, event)
    return _compile_if(arg, where)


def _read_path(event: dict[str, Any], path: str) -> Any:
    keys = split_path(path.replace("$.", "", 1))
    return js_get(event, keys) if keys else UNDEFINED


def _compile_if(arg: Any, where: str) -> Resolver:
    if not isinstance(arg, dict):
        raise DirectiveError(where, '@if takes an object with "exists" or "blank", and "then" and/or "else"')
    unknown = set(arg) - _IF_KEYS
    if unknown:
        raise DirectiveError(where, f"unknown @if keys: {', '.join(sorted(map(str, unknown)))}")
    if not (js_truthy(arg.get("exists", UNDEFINED)) or js_truthy(arg.get("blank", UNDEFINED))):
        raise DirectiveError(where, '@if needs an "exists" or a "blank" operand')
    if "then" not in arg and "else" not in arg:
        raise DirectiveError(where, '@if needs a "then" or an "else" branch')
    test_blank = "exists" not in arg
    operand = compile_value(arg["blank" if test_blank else "exists"], f"{where}.{'blank' if test_blank else 'exists'}")
    then = compile_value(arg["then"], f"{where}.then") if "then" in arg else None
    # mapping-kit takes the else branch only when its (unresolved) value is truthy.
    otherwise = compile_value(arg["else"], f"{where}.else") if js_truthy(arg.get("else", UNDEFINED)) else None

    def resolve_if(event: dict[str, Any]) -> Any:
        value = operand(event)
        holds = value is not None and value is not UNDEFINED and (not test_blank or not _loosely_blank(value))
        if holds and then is not None:
            return then(event)
        if not holds and otherwise is not None:
            return otherwise(event)
        return UNDEFINED

    return resolve_if


def _loosely_blank(value: Any) -> bool:
    # JavaScript's `value == ''` for JSON values.
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bool | int | float):
        return value == 0
    if isinstance(value, list):
        return js_string(value) == ""
    return False


def render_template(template: str, event: dict[str, Any]) -> str:
    """
    mapping-kit's template rendering: ``{{{path}}}`` unescaped first, then ``{{path}}`` HTML-escaped.
    """

    def value_at(match: re.Match[str]) -> Any:
        return js_get(event, split_path(match.group(1).strip()))

    def raw(match: re.Match[str]) -> str:
        value = value_at(match)
        return "" if value is None or value is UNDEFINED else js_string(value)

    def escaped(match: re.Match[str]) -> str:
        value = value_at(match)
        if value is None or value is UNDEFINED:
            return ""
        if isinstance(value, str):
            return _HTML_SPECIAL.sub(lambda m: _HTML_ENTITIES[m.group(0)], value)
        return js_string(value)

    return _DOUBLE.sub(escaped, _TRIPLE.sub(raw, template))


def producible(spec: Any) -> bool:
    """
    Whether ``spec`` can ever give a non-empty string or a number (what Rehook's required fields need).
    """
    if isinstance(spec, str):
        return spec != ""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return True
    if isinstance(spec, dict) and len(spec) == 1:
        ((name, arg),) = spec.items()
        if name in ("@path", "@template"):
            return True
        if name == "@literal":
            return producible(arg)
        if name == "@if" and isinstance(arg, dict):
            return ("then" in arg and producible(arg["then"])) or (
                js_truthy(arg.get("else", UNDEFINED)) and producible(arg["else"])
            )
    return False
