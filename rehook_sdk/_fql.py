"""
Segment's subscription language (FQL, the subset Segment's destinations use), compiled to a predicate.

Semantics follow Segment's own code (``@segment/fql-ts`` to lex, ``destination-subscriptions`` to parse and
match), quirks included:

- ``=`` and ``!=`` compare ``String(actual)`` with ``String(expected)``: ``properties.n = 5`` matches ``5`` and
  ``"5"``, and a missing property equals ``"undefined"``.
- ``<``, ``<=``, ``>``, ``>=`` compare ``Number(actual)`` with ``Number(expected)``; a value that is not a number
  (NaN) matches nothing.
- ``= null`` means "missing or null", ``!= null`` means "present and not null" (for userId, properties, traits,
  context); ``= true`` / ``= false`` match the boolean or its string.
- ``contains()`` and ``match()`` only match strings; ``match(f, "X*")`` is "starts with X" and
  ``match(f, "*X")`` "ends with X"; ``!`` negates a function.
- ``properties.x`` reads the event's properties and ``traits.x`` its traits, whatever the call's type.
- There is no precedence: within one level (the whole trigger, or one pair of parentheses) the *last*
  ``and``/``or`` applies to every condition of that level, so ``a and b or c`` means ``a or b or c``.
- Paths take the first falsy value met on the way (``properties.a.b`` is ``0`` when ``a`` is ``0``).

Where Segment would silently ignore part of a trigger or never match it, this module refuses it instead, with
the position: unknown fields, single-quoted strings (Segment keeps the quotes in the value), ``!`` before
anything but a function, ``match()`` patterns without a leading or trailing ``*``, nested parentheses (an
error in Segment too), and a missing operand or conjunction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ._jsvalues import UNDEFINED, js_get, js_number, js_string, split_path

__all__ = ["TriggerError", "compile_trigger"]

Predicate = Callable[[dict[str, Any]], bool]


class TriggerError(Exception):
    """
    A trigger that cannot be compiled; ``position`` is the 0-based index of the offending character.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@attrs.frozen
class _Token:
    kind: str  # ident string number operator conditional null dot comma parenleft parenright brackleft ...
    text: str
    pos: int


# -- lexing, as @segment/fql-ts does it ---------------------------------------------------------------------

_WHITESPACE = " \t\n"
_TERMINATORS = _WHITESPACE + ",])"


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_ident_char(c: str) -> bool:
    return _is_alpha(c) or _is_digit(c) or c in "_-"


def _lex(code: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(code)

    def peek(at: int) -> str:
        return code[at] if at < n else ""

    def terminated(at: int) -> bool:
        return at >= n or code[at] in _TERMINATORS

    def accept(at: int, word: str) -> bool:
        # fql-ts accepts a keyword only when a terminator follows it.
        return code.startswith(word, at) and terminated(at + len(word))

    while i < n:
        c = code[i]
        start = i
        if c in _WHITESPACE:
            i += 1
            continue
        if c == "!" and (_is_alpha(peek(i + 1)) or peek(i + 1) == "("):
            tokens.append(_Token("operator", "!", start))
            i += 1
            continue
        if c == "=":
            tokens.append(_Token("operator", "=", start))
            i += 1
            continue
        if c == "!":
            if accept(i + 1, "="):
                tokens.append(_Token("operator", "!=", start))
                i += 2
                continue
            raise TriggerError(
                "'!' must start '!=' followed by white space, or negate contains()/match() "
                "(Segment's lexer needs white space after '!=')",
                start,
            )
        if c in "<>":
            if accept(i + 1, "="):
                tokens.append(_Token("operator", c + "=", start))
                i += 2
            else:
                tokens.append(_Token("operator", c, start))
                i += 1
            continue
        if _is_alpha(c) or c == "_":
            if c == "a" and accept(i, "and"):
                tokens.append(_Token("conditional", "and", start))
                i += 3
                continue
            if c == "o" and accept(i, "or"):
                tokens.append(_Token("conditional", "or", start))
                i += 2
                continue
            if c == "n" and accept(i, "null"):
                tokens.append(_Token("null", "null", start))
                i += 4
                continue
            i += 1
            while i < n and _is_ident_char(code[i]):
                i += 1
            if not (i >= n or code[i] in _TERMINATORS or code[i] in ".(=!"):
                raise TriggerError(
                    f"expected white space or an operator after {code[start:i]!r}, got {code[i]!r} "
                    "(Segment's lexer needs white space before '<', '>', '<=' and '>=')",
                    i,
                )
            tokens.append(_Token("ident", code[start:i], start))
            continue
        if _is_digit(c) or c in "+-":
            i += 1
            seen_dot = False
            while i < n and (_is_digit(code[i]) or code[i] == "."):
                if code[i] == ".":
                    if terminated(i + 1):
                        raise TriggerError("unexpected terminator after decimal point", i)
                    if seen_dot:
                        raise TriggerError("multiple decimal points in one number", i)
                    seen_dot = True
                i += 1
            tokens.append(_Token("number", code[start:i], start))
            continue
        if c in "\"'":
            end = code.find(c, i + 1)
            if end < 0:
                raise TriggerError("unterminated string", start)
            tokens.append(_Token("string", code[start : end + 1], start))
            i = end + 1
            continue
        single = {".": "dot", ",": "comma", "(": "parenleft", ")": "parenright", "[": "brackleft", "]": "brackright"}
        if c in single:
            tokens.append(_Token(single[c], c, start))
            i += 1
            continue
        raise TriggerError(f"invalid character {c!r}", start)
    return _join_dotted(tokens)


def _join_dotted(tokens: list[_Token]) -> list[_Token]:
    # destination-subscriptions' normalize(): ident '.' ident becomes one ident, "properties.a.b".
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if (
            out
            and out[-1].kind == "ident"
            and tok.kind == "dot"
            and i + 1 < len(tokens)
            and tokens[i + 1].kind == "ident"
        ):
            prev = out.pop()
            out.append(_Token("ident", f"{prev.text}.{tokens[i + 1].text}", prev.pos))
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


# -- parsing and compiling ----------------------------------------------------------------------------------

_SIMPLE_FIELDS = {"type", "event", "name", "userId"}
_PATH_FIELDS = {"properties", "traits", "context"}
_ORDERING = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}


def _getter(field: str, pos: int) -> Callable[[dict[str, Any]], Any]:
    head, _, rest = field.partition(".")
    if head in _SIMPLE_FIELDS:
        if rest:
            raise TriggerError(f"{head!r} has no sub-fields (Segment would compare {head!r} and ignore {rest!r})", pos)
        return lambda data: data.get(head, UNDEFINED)
    if head in _PATH_FIELDS:
        if not rest:
            raise TriggerError(f"name a field: {head}.<name>", pos)
        keys = split_path(rest)
        if head == "context":
            return lambda data: js_get(data.get("context", UNDEFINED), keys)

        # properties.x reads the event's properties and traits.x its traits, whatever the call's type, as
        # destination-subscriptions does (it read one shared bag until 2021).
        return lambda data: js_get(data.get(head, UNDEFINED), keys)
    raise TriggerError(
        f"unknown field {field!r}; use type, event, name, userId, properties.*, traits.* or context.*", pos
    )


class _Parser:
    def __init__(self, tokens: list[_Token], length: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.length = length

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> _Token:
        tok = self.peek()
        if tok is None:
            raise TriggerError(f"expected {what}, got the end of the trigger", self.length)
        self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> _Token:
        tok = self.take(what)
        if tok.kind != kind:
            raise TriggerError(f"expected {what}, got {tok.text!r}", tok.pos)
        return tok

    def group(self, depth: int) -> Predicate:
        items = [self.item(depth)]
        conjunction = "and"
        while (tok := self.peek()) is not None and tok.kind != "parenright":
            if tok.kind != "conditional":
                raise TriggerError(f"expected 'and' or 'or', got {tok.text!r}", tok.pos)
            self.i += 1
            conjunction = tok.text  # Segment: the last conjunction of a level applies to the whole level
            items.append(self.item(depth))
        if len(items) == 1:
            return items[0]
        if conjunction == "and":
            return lambda data: all(item(data) for item in items)
        return lambda data: any(item(data) for item in items)

    def item(self, depth: int) -> Predicate:
        tok = self.take("a condition")
        if tok.kind == "parenleft":
            if depth > 0:
                raise TriggerError("nested parentheses are not supported (Segment cannot parse them)", tok.pos)
            if (nxt := self.peek()) is not None and nxt.kind == "parenright":
                raise TriggerError("empty parentheses", nxt.pos)
            inner = self.group(depth + 1)
            self.expect("parenright", "')'")
            return inner
        if tok.kind == "operator" and tok.text == "!":
            func = self.take("contains() or match() after '!'")
            if func.kind != "ident" or func.text not in ("contains", "match"):
                raise TriggerError(
                    "'!' negates only contains() and match() (Segment ignores it anywhere else)", tok.pos
                )
            return self.function(func, negate=True)
        if tok.kind != "ident":
            raise TriggerError(f"expected a condition, got {tok.text!r}", tok.pos)
        if tok.text in ("contains", "match") and (nxt := self.peek()) is not None and nxt.kind == "parenleft":
            return self.function(tok)
        return self.condition(tok)

    def value(self) -> _Token:
        tok = self.take("a value")
        if tok.kind == "string" and tok.text.startswith("'"):
            raise TriggerError(
                "use double quotes: Segment keeps single quotes as part of the value, so this would never match",
                tok.pos,
            )
        if tok.kind not in ("string", "number", "ident", "null"):
            raise TriggerError(f"expected a value, got {tok.text!r}", tok.pos)
        return tok

    def condition(self, field_tok: _Token) -> Predicate:
        get = _getter(field_tok.text, field_tok.pos)
        op = self.take("an operator")
        if op.kind != "operator" or op.text == "!":
            raise TriggerError(f"expected =, !=, <, <=, > or >=, got {op.text!r}", op.pos)
        val = self.value()
        simple = field_tok.text in ("type", "event", "name")
        if not simple and val.kind == "null" and op.text in ("=", "!="):
            exists = op.text == "!="
            return lambda data: (get(data) not in (None, UNDEFINED)) is exists
        if not simple and val.kind == "ident" and val.text in ("true", "false") and op.text == "=":
            wanted = val.text == "true"
            text = val.text
            return lambda data: (actual := get(data)) is wanted or actual == text
        expected = _token_value(val)
        if simple:
            expected = js_string(expected)
        return _compare(get, op.text, expected)

    def function(self, name: _Token, *, negate: bool = False) -> Predicate:
        # Segment's negated functions (not_contains, not_starts_with, not_ends_with) still match only strings.
        get, test = self._function_parts(name)

        def matches(data: dict[str, Any]) -> bool:
            actual = get(data)
            return isinstance(actual, str) and test(actual) is not negate

        return matches

    def _function_parts(self, name: _Token) -> tuple[Callable[[dict[str, Any]], Any], Callable[[str], bool]]:
        self.expect("parenleft", f"'(' after {name.text}")
        field_tok = self.expect("ident", "a field")
        if field_tok.text == "type":
            raise TriggerError(f"{name.text}() does not take 'type' (Segment ignores it)", field_tok.pos)
        get = _getter(field_tok.text, field_tok.pos)
        self.expect("comma", "','")
        val = self.value()
        self.expect("parenright", "')'")
        if name.text == "contains":
            needle = js_string(_token_value(val))
            return get, lambda actual: needle in actual
        if val.kind != "string":
            raise TriggerError('match() takes a quoted pattern such as "Order*" or "*Completed"', val.pos)
        pattern = val.text[1:-1]
        if pattern.endswith("*") and "*" not in pattern[:-1]:
            prefix = pattern[:-1]
            return get, lambda actual: actual.startswith(prefix)
        if pattern.startswith("*") and "*" not in pattern[1:]:
            suffix = pattern[1:]
            return get, lambda actual: actual.endswith(suffix)
        raise TriggerError(
            f"match() patterns are a prefix ending in '*' or a suffix starting with '*', got {val.text}", val.pos
        )


def _token_value(tok: _Token) -> Any:
    # destination-subscriptions' getTokenValue().
    if tok.kind == "string":
        return tok.text[1:-1]
    if tok.kind == "number":
        return js_number(tok.text)
    if tok.kind == "ident" and tok.text in ("true", "false"):
        return tok.text == "true"
    return tok.text


def _compare(get: Callable[[dict[str, Any]], Any], op: str, expected: Any) -> Predicate:
    if op in ("=", "!="):
        text = js_string(expected)
        if op == "=":
            return lambda data: js_string(get(data)) == text
        return lambda data: js_string(get(data)) != text
    number = js_number(expected)
    order = _ORDERING[op]
    return lambda data: order(js_number(get(data)), number)


def compile_trigger(trigger: str) -> Predicate:
    """
    Compile ``trigger`` once into a predicate over a Segment event (a JSON dict).

    Raises:
        TriggerError: with the message and the position of the problem.
    """
    tokens = _lex(trigger)
    if not tokens:
        raise TriggerError("the trigger is empty", 0)
    parser = _Parser(tokens, len(trigger))
    predicate = parser.group(0)
    if (tok := parser.peek()) is not None:
        raise TriggerError(f"unexpected {tok.text!r}", tok.pos)
    return predicate
