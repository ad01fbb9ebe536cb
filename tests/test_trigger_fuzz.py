"""
Fuzzed triggers: any text either compiles or raises TriggerError (never another exception), a compiled trigger
judges any event without raising, and reading the same text twice gives the same verdicts. Segment's verdicts
themselves are checked by the conformance vectors (test_conformance_triggers.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rehook_sdk._mapping.fql import REFUSALS, TriggerError, read_trigger

FIELDS = [
    "type",
    "event",
    "name",
    "userId",
    "properties.n",
    "properties.s",
    "traits.n",
    "context.a.b",
    "properties.a\\ b",
]
LITERALS = ['"x"', '"5"', '""', "5", "-1.5", "true", "false", "null", "an", "x"]
PATTERNS = ['"x*"', '"*x"', '"*"', '"x"']
WORDS = [
    *FIELDS,
    *LITERALS,
    "contains",
    "match",
    "and",
    "or",
    "=",
    "!=",
    "<",
    "!",
    "(",
    ")",
    ",",
    "'x'",
    "\\",
    '"',
    "😀",
]


@st.composite
def _condition(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return f"{draw(st.sampled_from(FIELDS))} {draw(st.sampled_from(['=', '!=', '<', '<=', '>', '>=']))} " + draw(
            st.sampled_from(LITERALS)
        )
    function = draw(st.sampled_from(["contains", "match", "!contains", "!match"]))
    argument = draw(st.sampled_from(PATTERNS if "match" in function else LITERALS))
    return f"{function}({draw(st.sampled_from(FIELDS))}, {argument})"


@st.composite
def _trigger(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        part = draw(_condition())
        if draw(st.integers(0, 4)) == 0:
            part = f"({part} {draw(st.sampled_from(['and', 'or']))} {draw(_condition())})"
        parts.append(part)
    text = parts[0]
    for part in parts[1:]:
        text += f" {draw(st.sampled_from(['and', 'or']))} {part}"
    words = text.split(" ")
    for _ in range(draw(st.integers(0, 2))):  # a few mutations: a word replaced, dropped or glued to the next
        at = draw(st.integers(0, len(words) - 1))
        how = draw(st.sampled_from(["replace", "drop", "glue"]))
        if how == "replace":
            words[at] = draw(st.sampled_from(WORDS))
        elif how == "drop" and len(words) > 1:
            del words[at]
        elif at + 1 < len(words):
            words[at : at + 2] = [words[at] + words[at + 1]]
    return " ".join(words)


TEXT = _trigger()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["n", "s", "a", "b"]), inner),
    max_leaves=8,
)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page"]),
        "event": JSON,
        "name": JSON,
        "userId": JSON,
        "properties": JSON,
        "traits": JSON,
        "context": JSON,
    },
)


@given(st.one_of(TEXT, st.text(max_size=30)), st.lists(EVENTS, max_size=4))
def test_any_text_compiles_or_is_refused_and_never_raises_on_events(text: str, events: list[dict[str, Any]]) -> None:
    refusal: TriggerError | None = None
    try:
        trigger = read_trigger(text)
    except TriggerError as exc:
        refusal = exc
    if refusal is not None:
        assert 0 <= refusal.position <= len(text)
        assert refusal.case is None or refusal.case in REFUSALS
        return
    again = read_trigger(text)
    for event in events:
        verdict = trigger.matches(event)
        assert verdict is True or verdict is False
        assert again.matches(event) is verdict
