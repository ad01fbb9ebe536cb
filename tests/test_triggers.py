"""
Triggers in Segment's subscription language: what matches, Segment's quirks, and what is refused.

Each case sends calls through a client whose only mapping fires a Track Event when the trigger matches, so a
match is a delivered call and a miss is dropped as no_matching_mapping (or unsupported_call for group/alias).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rehook_sdk import EventHandle, Mapping, MappingError, Reason, RehookClient
from rehook_sdk._mapping.fql import REFUSALS, TriggerError, read_trigger
from rehook_sdk.testing import FakeRehook

Send = Callable[[RehookClient], EventHandle]


def track(event: str = "e", properties: dict[str, Any] | None = None, **kw: Any) -> Send:
    kw.setdefault("user_id", "u1")
    return lambda c: c.track(event, properties, **kw)


def identify(traits: dict[str, Any] | None = None, user_id: str | None = "u1", **kw: Any) -> Send:
    return lambda c: c.identify(user_id, traits, **kw)


def page(name: str | None = None, properties: dict[str, Any] | None = None) -> Send:
    return lambda c: c.page(name, properties, user_id="u1")


def group() -> Send:
    return lambda c: c.group("g1", {"plan": "pro"}, user_id="u1")


# (trigger, [(call, matches)]): the documented examples of Segment's destination-subscriptions and its quirks.
CASES: list[tuple[str, list[tuple[Send, bool]]]] = [
    ('type = "track"', [(track(), True), (identify(), False), (page(), False)]),
    ('type = "track" or type = "identify"', [(track(), True), (identify(), True), (page(), False)]),
    ('type != "identify"', [(track(), True), (page(), True), (identify(), False)]),
    ('event = "Page Viewed"', [(track("Page Viewed"), True), (track("Product Added"), False)]),
    (
        'event = "Page Viewed" or event = "Product Viewed"',
        [(track("Page Viewed"), True), (track("Product Viewed"), True), (track("Product Added"), False)],
    ),
    ('event = "Page Viewed" and type = "track"', [(track("Page Viewed"), True), (track("Other"), False)]),
    ('properties.value = "x"', [(track(properties={"value": "x"}), True), (track(properties={"value": "y"}), False)]),
    # Segment's verdicts (destination-subscriptions 3.37, checked with node): a number literal equals only a number,
    # a string literal only that string.
    (
        "properties.value = 123",
        [
            (track(properties={"value": 123}), True),
            (track(properties={"value": "123"}), False),
            (track(properties={"value": 0}), False),
        ],
    ),
    (
        'properties.value = "123"',
        [(track(properties={"value": 123}), False), (track(properties={"value": "123"}), True)],
    ),
    (
        "properties.value = 1.50",
        [(track(properties={"value": 1.5}), True), (track(properties={"value": "1.5"}), False)],
    ),
    # != with a number needs a number too: a missing value is not "not 123".
    (
        "properties.value != 123",
        [
            (track(properties={"value": 123}), False),
            (track(properties={"value": 456}), True),
            (track(properties={}), False),
        ],
    ),
    # A missing value is not "undefined", and an array is not its items joined with commas.
    ('properties.value = "undefined"', [(track(properties={}), False), (track(properties={"value": 1}), False)]),
    ('properties.tags = "a,b"', [(track(properties={"tags": ["a", "b"]}), False)]),
    # Orderings match only a value that is a number (never a numeric string, null or a missing value).
    (
        "properties.value < 10",
        [
            (track(properties={"value": 5}), True),
            (track(properties={"value": "5"}), False),
            (track(properties={"value": 10}), False),
            (track(properties={"value": "abc"}), False),
            (track(properties={}), False),
            (track(properties={"value": None}), False),
        ],
    ),
    ('properties.value <= "10"', [(track(properties={"value": 10}), True), (track(properties={"value": 11}), False)]),
    ("properties.value > 10", [(track(properties={"value": 11}), True), (track(properties={"value": " 11 "}), False)]),
    ("properties.value >= -5", [(track(properties={"value": -5}), True), (track(properties={"value": -6}), False)]),
    (
        "properties.value > 10",
        [(track(properties={"value": True}), False), (track(properties={"value": [11]}), False)],
    ),
    # contains/match only match strings.
    (
        'contains(properties.value, "b")',
        [
            (track(properties={"value": "abc"}), True),
            (track(properties={"value": "xyz"}), False),
            (track(properties={"value": ["b"]}), False),
        ],
    ),
    (
        '!contains(properties.value, "b")',
        [
            (track(properties={"value": "abc"}), False),
            (track(properties={"value": "xyz"}), True),
            (track(properties={}), False),
        ],
    ),
    ('contains(event, "Order")', [(track("Order Completed"), True), (track("Refund"), False)]),
    (
        'match(properties.value, "x*")',
        [(track(properties={"value": "xabc"}), True), (track(properties={"value": "abc"}), False)],
    ),
    (
        'match(properties.value, "*x")',
        [(track(properties={"value": "abcx"}), True), (track(properties={"value": "abc"}), False)],
    ),
    ('!match(event, "Order*")', [(track("Order Completed"), False), (track("Refund"), True)]),
    ('match(userId, "test-*")', [(track(user_id="test-1"), True), (track(user_id="real-1"), False)]),
    # null: "= null" is missing or null, "!= null" present and not null.
    (
        "properties.value != null",
        [
            (track(properties={"value": "x"}), True),
            (track(properties={}), False),
            (track(properties={"value": None}), False),
            (track(properties={"value": 0}), True),
        ],
    ),
    ("properties.value = null", [(track(properties={}), True), (track(properties={"value": None}), True)]),
    # = true / = false match only booleans; != true compares with the string "true".
    (
        "properties.active = true",
        [
            (track(properties={"active": True}), True),
            (track(properties={"active": "true"}), False),
            (track(properties={"active": False}), False),
            (track(properties={"active": 1}), False),
        ],
    ),
    ("properties.active = false", [(track(properties={"active": False}), True), (track(properties={}), False)]),
    (
        'properties.active = "true"',
        [(track(properties={"active": True}), False), (track(properties={"active": "true"}), True)],
    ),
    (
        "properties.active != true",
        [
            (track(properties={"active": False}), True),
            (track(properties={"active": True}), True),
            (track(properties={"active": "true"}), False),
        ],
    ),
    ('userId = "u1"', [(track(user_id="u1"), True), (track(user_id="u2"), False)]),
    ("userId != null", [(track(user_id="u1"), True)]),
    ('name = "Home"', [(page("Home"), True), (page("Pricing"), False)]),
    ('context.ip = "1.1.1.1"', [(track(context={"ip": "1.1.1.1"}), True), (track(context={"ip": "8.8.8.8"}), False)]),
    ('context.page.path = "/signup"', [(track(context={"page": {"path": "/signup"}}), True), (track(), False)]),
    # properties.* reads the properties and traits.* the traits, whatever the call (Segment's bags are separate).
    ('traits.plan = "pro"', [(identify({"plan": "pro"}), True), (track(properties={"plan": "pro"}), False)]),
    ('properties.plan = "pro"', [(identify({"plan": "pro"}), False), (track(properties={"plan": "pro"}), True)]),
    ('type = "group" and traits.plan = "pro"', [(group(), True)]),
    # Nested paths, array indexes, and the first falsy value met being the value.
    ("properties.a.b = 1", [(track(properties={"a": {"b": 1}}), True), (track(properties={"a": {}}), False)]),
    ("properties.a.b = 0", [(track(properties={"a": 0}), True)]),
    ("properties.items.length = 2", [(track(properties={"items": [1, 2]}), True)]),
    # No precedence: the last conjunction of a level applies to all of it.
    (
        'type = "identify" and event = "a" or event = "b"',
        [(track("a"), True), (identify(), True), (track("c"), False)],
    ),
    (
        'type = "track" and (event = "a" or event = "b")',
        [(track("a"), True), (track("b"), True), (track("c"), False), (identify(), False)],
    ),
    (
        '(event = "a" or event = "b") and properties.n > 1',
        [(track("a", {"n": 2}), True), (track("a", {"n": 1}), False)],
    ),
    ('type="track" and event="a"', [(track("a"), True)]),
    ("event = Signup", [(track("Signup"), True), (track("signup"), False)]),
    ("type = track", [(track(), True)]),
    ('properties.first-name = "Bo"', [(track(properties={"first-name": "Bo"}), True)]),
    # fql-ts: a backslash escapes any character of a field name (Segment's own UI writes them for spaces).
    (r'properties.first\ name = "Bob"', [(track(properties={"first name": "Bob"}), True)]),
    (r"properties.a\.b = 1", [(track(properties={"a": {"b": 1}}), True), (track(properties={"a.b": 1}), False)]),
    # fql-ts: a word that begins "and", "or" or "null" at the very end loses the rest of itself.
    ("event = an", [(track("a"), True), (track("an"), False)]),
    ("event = nul", [(track("n"), True), (track("nul"), False)]),
    # destination-subscriptions: a group ends at the first ')', even a function's, so the rest of the group
    # belongs to the level around it: this reads 'type = "track" or contains(...) or event = "x"'.
    (
        'type = "identify" and (contains(properties.s, "x") or event = "x")',
        [(identify(), True), (track("y", {"s": "x"}), True), (track("x"), True), (track("y"), False)],
    ),
    # ... and a function last in its group reads as written.
    (
        'type = "identify" or (event = "x" and contains(properties.s, "x"))',
        [(identify(), True), (track("x", {"s": "x"}), True), (track("x"), False), (track("y", {"s": "x"}), False)],
    ),
]


def _ids() -> list[str]:
    return [trigger for trigger, _ in CASES]


@pytest.mark.parametrize(("trigger", "calls"), CASES, ids=_ids())
async def test_trigger_matches_like_segment(fake: FakeRehook, trigger: str, calls: list[tuple[Send, bool]]) -> None:
    """The trigger matches exactly the calls Segment's subscription code would match."""
    fake.conversion_events = frozenset()
    mapping = Mapping(trigger=trigger, action="track_event", fields={"event_name": "matched", "source_id": "u1"})
    async with fake.client(mappings=[mapping], concurrency=1, conversion_events=()) as client:
        for i, (send, expected) in enumerate(calls):
            outcome = await send(client)
            assert outcome.delivered is expected, (i, outcome.reason, outcome.message)
            if not expected:
                assert outcome.reason in (Reason.NO_MATCHING_MAPPING, Reason.UNSUPPORTED_CALL)


INVALID: list[tuple[str, str, int]] = [
    ("", "empty", 0),
    ('type = "track" and', "'and' with no condition after it", 15),
    ("type = ", "a condition is missing its value", 7),
    ('foo = "x"', "unknown field 'foo'", 0),
    ('type = "track" event = "x"', "expected 'and' or 'or'", 15),
    ('!(type = "track")', "'!' negates only contains() and match()", 0),
    ("event = 'x'", "use double quotes", 8),
    ('match(event, "a*b")', "match() patterns are a prefix", 13),
    ('match(event, "Order")', "match() patterns are a prefix", 13),
    ("properties.price>5", "needs white space", 16),
    ('type!="x"', "expected '=' after '!'", 4),
    ('((type = "a"))', "nested parentheses", 1),
    ('type = "a")', "')' closes nothing", 10),
    ('(type = "a"', "'(' is never closed", 0),
    ('contains(type, "x")', "contains() and match() do not take type", 9),
    ('event = "unterminated', "unterminated string", 8),
    ('type = "a" $', "invalid character '$'", 11),
    ('properties = "x"', "name a field", 0),
    ('event.name = "x"', "has no sub-fields", 0),
    ('contains(event "x")', "contains(field, value) expected, got '\"x\"'", 15),
    ('type == "track"', "expected a value", 6),
    ("()", "empty parentheses", 1),
    ('type = "a" and ()', "empty parentheses", 16),
    ("properties.x = 1.2.3", "multiple decimal points", 18),
    ('event = "a" or', "'or' with no condition after it", 12),
    ('contains(event, "x"', "'(' is never closed", 8),
    ('properties.items.0.sku = "S1"', "expected =, !=, <, <=, > or >=", 16),
]


@pytest.mark.parametrize(("trigger", "message", "position"), INVALID, ids=[t or "<empty>" for t, _, _ in INVALID])
def test_invalid_triggers_are_refused_at_construction(trigger: str, message: str, position: int) -> None:
    """A trigger Segment would reject, misread or silently ignore raises MappingError with the position."""
    mappings = [Mapping(trigger='type = "track"', action="track_event"), Mapping(trigger=trigger, action="track_event")]

    with pytest.raises(MappingError) as info:
        RehookClient("k", "s", mappings=mappings)

    error = info.value
    assert message in str(error)
    assert (error.index, error.part, error.text, error.position) == (1, "trigger", trigger, position)
    assert str(error).startswith("mappings[1]: trigger: ")
    assert str(error).endswith("\n    " + trigger + "\n    " + " " * position + "^")
    assert isinstance(error, ValueError)


# One trigger per refusal case: each is one Segment accepts and misreads (docs/mappings.md, "Where rehook-sdk differs").
REFUSED: list[tuple[str, str]] = [
    ("event = 'x'", "single-quote"),
    ('match(event, "Order")', "match-pattern"),
    ('match(event, "*Ord*")', "match-pattern"),
    ('foo = "x"', "unknown-field"),
    ('contains(type, "x")', "unknown-field"),
    ('event.name = "x"', "unknown-field"),
    ('!(type = "track")', "negation"),
    ("properties.n <=5", "comparison"),
    ('type = and event = "x"', "comparison"),
    ('"track" and type = "track"', "stray"),
    ('type = "a")', "stray"),
    ('type = "track" and', "stray"),
    ('type = "a" type = "b"', "stray"),
    ('((type = "a"))', "parentheses"),
    ('contains(event, "x"', "parentheses"),
]


@pytest.mark.parametrize(("trigger", "case"), REFUSED, ids=[t for t, _ in REFUSED])
def test_each_refusal_names_its_case(trigger: str, case: str) -> None:
    """Every refusal of a trigger Segment accepts names one documented case, and explains it in the message."""
    with pytest.raises(TriggerError) as info:
        read_trigger(trigger)
    assert info.value.case == case
    assert REFUSALS[case] in info.value.message


def test_every_refusal_case_is_exercised() -> None:
    assert {case for _, case in REFUSED} == set(REFUSALS)


def test_a_group_cut_short_by_a_function_warns(caplog: pytest.LogCaptureFixture) -> None:
    """A function inside parentheses that is not last in them ends the group early in Segment: a warning says so."""
    RehookClient(
        "k",
        "s",
        mappings=[Mapping(trigger='type = "track" and (contains(event, "x") or event = "y")', action="track_event")],
    )
    assert "ends at the ')' of the contains() or match() in it" in caplog.text
    caplog.clear()
    RehookClient(
        "k",
        "s",
        mappings=[Mapping(trigger='type = "track" and (event = "y" or contains(event, "x"))', action="track_event")],
    )
    assert caplog.text == ""


def test_mixed_conjunctions_warn(caplog: pytest.LogCaptureFixture) -> None:
    """A level that mixes and/or without parentheses works as in Segment, with a warning saying how."""
    RehookClient(
        "k", "s", mappings=[Mapping(trigger='event = "a" and type = "track" or event = "b"', action="track_event")]
    )
    assert "the last one ('or') applies to all its conditions" in caplog.text
