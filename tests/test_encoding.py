"""
What gets sent: Python values made JSON-safe with numbers kept numbers, and invalid_payload for the rest.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehook_sdk import OutcomeStatus, Reason, RehookClient
from rehook_sdk.testing import FakeRehook


class Plan(enum.Enum):
    PRO = "pro"


class Level(enum.IntEnum):
    GOLD = 3


async def test_python_values_are_made_json_safe(client: RehookClient, fake: FakeRehook) -> None:
    """datetimes, Decimal, UUID, Enum, sets, tuples and bytes become JSON; numbers stay numbers."""
    properties = {
        "at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
        "day": dt.date(2026, 1, 2),
        "time": dt.time(12, 30),
        "price": decimal.Decimal("18.99"),
        "count": decimal.Decimal("3"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "plan": Plan.PRO,
        "level": Level.GOLD,
        "tags": {"b", "a"},
        "pair": (1, 2),
        "raw": b"caf\xc3\xa9",
        "nested": {"list": [1, 2.5, None, True], 7: "int key"},
    }

    outcome = await client.track("e", properties, user_id="u1")

    assert outcome.delivered
    assert fake.requests[0].json["metadata"] == {
        "at": "2026-01-02T03:04:05+00:00",
        "naive": "2026-01-02T03:04:05",
        "day": "2026-01-02",
        "time": "12:30:00",
        "price": 18.99,
        "count": 3,
        "id": "12345678-1234-5678-1234-567812345678",
        "plan": "pro",
        "level": 3,
        "tags": ["a", "b"],
        "pair": [1, 2],
        "raw": "café",
        "nested": {"list": [1, 2.5, None, True], "7": "int key"},
    }


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        ({"price": math.nan}, "properties.price", "not a JSON number"),
        ({"price": math.inf}, "properties.price", "not a JSON number"),
        ({"price": decimal.Decimal("NaN")}, "properties.price", "not a JSON number"),
        ({"price": decimal.Decimal("1e400")}, "properties.price", "beyond what a JSON number holds"),
        ({"price": decimal.Decimal("-1.5e309")}, "properties.price", "beyond what a JSON number holds"),
        ({"items": [{"bad": object()}]}, "properties.items[0].bad", "object value cannot be sent"),
        ({"raw": b"\xff\xfe"}, "properties.raw", "not UTF-8"),
        ({"k": {(1, 2): "tuple key"}}, "properties.k", "keys must be strings"),
        ({"k": {1: "a", "1": "b"}}, "properties.k", "two keys both become '1'"),
    ],
)
async def test_unencodable_values_drop_the_event_naming_the_key(
    client: RehookClient, fake: FakeRehook, value: dict[str, Any], path: str, problem: str
) -> None:
    """A value JSON cannot carry ends the event as invalid_payload naming its key path; nothing is sent."""
    outcome = await client.track("e", value, user_id="u1")

    assert (outcome.status, outcome.reason) == (OutcomeStatus.DROPPED, Reason.INVALID_PAYLOAD)
    assert outcome.message.startswith(path + ":")
    assert problem in outcome.message
    assert fake.requests == []


async def test_circular_reference_is_invalid(client: RehookClient, fake: FakeRehook) -> None:
    """A dict that contains itself is invalid_payload, not a crash."""
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop

    outcome = await client.identify("u1", loop)

    assert outcome.reason is Reason.INVALID_PAYLOAD
    assert "traits.self" in outcome.message
    assert "contains itself" in outcome.message


async def test_very_deep_nesting_is_invalid(client: RehookClient) -> None:
    """Nesting deeper than the limit is invalid_payload rather than a RecursionError in the sender."""
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]

    outcome = await client.track("e", deep, user_id="u1")

    assert outcome.reason is Reason.INVALID_PAYLOAD
    assert "nested deeper than" in outcome.message
    assert (await client.track("e", {"ok": 1}, user_id="u1")).delivered  # the sender survived


async def test_shared_value_that_is_not_circular_is_fine(client: RehookClient, fake: FakeRehook) -> None:
    """The same list under two keys is not a cycle."""
    shared = [1, 2]
    assert (await client.track("e", {"a": shared, "b": shared}, user_id="u1")).delivered
    assert fake.requests[0].json["metadata"] == {"a": [1, 2], "b": [1, 2]}


async def test_invalid_referral_code_type_is_invalid_payload(client: RehookClient) -> None:
    """traits.referral_code becomes a string as Segment coerces it (1.5 -> "1.5"); an object or a list of two is
    invalid_payload, with Segment's message."""
    coerced = await client.identify("u1", {"referral_code": 1.5})
    outcome = await client.identify("u2", {"referral_code": ["A", "B"]})
    assert coerced.delivered
    assert outcome.reason is Reason.INVALID_PAYLOAD
    assert "referral_code must be a string or null but it was an array" in outcome.message


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60)
@given(properties=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
async def test_json_values_arrive_unchanged(client: RehookClient, fake: FakeRehook, properties: dict[str, Any]) -> None:
    """Any JSON-native properties reach Rehook exactly as given (numbers stay numbers, text stays text)."""
    fake.requests.clear()

    outcome = await client.track("e", properties, user_id="u1")

    assert outcome.delivered
    assert fake.requests[-1].json["metadata"] == json.loads(json.dumps(properties))


mixed_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["\ud800", "a\udfffb", 10**4100, decimal.Decimal("1.5"), dt.date(2026, 1, 2), uuid.UUID(int=7)])
    | st.builds(tuple, st.lists(st.integers(), max_size=2)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(["\ud800", 1, True]), children, max_size=4)
    ),
    max_leaves=20,
)


@given(value=mixed_values)
def test_the_plain_shortcut_never_changes_what_is_sent(value: Any) -> None:
    """json_safe returns plain JSON as it is, without walking it; that shortcut gives exactly what the walk gives,
    and everything else still goes through the walk (converted, or refused with its message)."""
    from rehook_sdk._core.encoding import PayloadError, _convert, _plain, json_safe

    try:
        walked = _convert(value, "v", 0, set())
    except PayloadError as exc:
        assert not _plain(value, 0)
        with pytest.raises(PayloadError, match=re.escape(exc.problem)):
            json_safe(value, "v")
        return
    assert json_safe(value, "v") == walked
    if _plain(value, 0):
        assert json_safe(value, "v") is value
        assert json.loads(json.dumps(value, allow_nan=False)) == walked


def test_a_container_that_contains_itself_is_not_plain() -> None:
    from rehook_sdk._core.encoding import _plain

    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert not _plain(loop, 0)
    assert not _plain([[[]]] * 1 + [loop], 0)


@pytest.mark.parametrize("accelerated", [True, False])
def test_the_body_encoder_with_and_without_the_c_accelerator(
    accelerated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compact UTF-8 JSON, NaN and unknown types refused, whether or not json's C encoder exists."""
    from rehook_sdk._mapping import actions as _actions

    if not accelerated:
        monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    encode = _actions._make_encoder()
    body = {"event_name": "Été", "metadata": {"n": [1, 2.5, None, True]}}
    assert encode(body) == '{"event_name":"Été","metadata":{"n":[1,2.5,null,true]}}'
    assert encode(body) == encode(body)  # nothing kept between bodies
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode({"x": math.nan})
    with pytest.raises(TypeError, match="not JSON"):
        encode({"x": object()})
    assert encode({"ok": 1}) == '{"ok":1}'  # a failed body leaves the encoder as it was


@given(
    name=st.text(max_size=6) | st.sampled_from(["signup", "Été", "a\ud800"]),
    user_id=st.text(max_size=4) | st.just("u1"),
    properties=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    conversion=st.booleans(),
    max_bytes=st.sampled_from([40, 10_000]),
)
def test_the_track_shortcut_builds_what_the_rules_build(
    name: str, user_id: str, properties: dict[str, Any], conversion: bool, max_bytes: int
) -> None:
    """The common Track Event is built without the general rules; it gives exactly what they give (the same bytes,
    or the same drop with its message), whatever the strings, properties, conversion events and size bound."""
    from rehook_sdk._core.types import Call, CallType
    from rehook_sdk._mapping.actions import Action, build_request

    fields = {"event_name": name, "source_id": user_id, "metadata": properties}
    call = Call(type=CallType.TRACK, user_id=user_id, event=name, properties=properties)
    events = frozenset([name]) if conversion else frozenset()
    quick = build_request(Action.TRACK_EVENT, fields, call, events, trusted=True, max_bytes=max_bytes)
    # The general rules: the same fields with a fourth key no rule reads, so the shortcut cannot take them.
    general = build_request(
        Action.TRACK_EVENT, {**fields, "unused": 1}, call, events, trusted=True, max_bytes=max_bytes
    )
    assert quick == general
