"""
Argument handling: analytics.js signatures, options, precedence, and TypeError for wrong types.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehook_sdk import CallType, RehookClient
from rehook_sdk.testing import FakeRehook


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.track(123, user_id="u1"), "event must be a str"),
        (lambda c: c.track(None, user_id="u1"), "event must be a str"),
        (lambda c: c.track("e", ["not", "a", "dict"], user_id="u1"), "properties must be a mapping"),
        (lambda c: c.identify("u1", "traits"), "traits must be a mapping"),
        (lambda c: c.identify("u1", {}, 5), "options must be a mapping"),
        (lambda c: c.track("e", {}, None, "not callable", user_id="u1"), "callback must be callable"),
        (lambda c: c.track("e", user_id=1.5), "userId must be a str, int or UUID"),
        (lambda c: c.track("e", user_id=True), "userId must be a str, int or UUID"),
        (lambda c: c.track("e", {"userId": ["x"]}), r"properties\['userId'\] must be"),
        (lambda c: c.track("e", user_id="u1", anonymous_id=object()), "anonymousId must be"),
        (lambda c: c.track("e", user_id="u1", context="ctx"), "context must be a mapping"),
        (lambda c: c.track("e", user_id="u1", integrations=1), "integrations must be a mapping"),
        (lambda c: c.track("e", user_id="u1", timestamp=12), "timestamp must be a datetime"),
        (lambda c: c.track("e", user_id="u1", message_id=5), "messageId must be a str"),
        (lambda c: c.track("e", None, {"userId": "u1", "context": 3}), r"options\['context'\] must be a mapping"),
        (lambda c: c.page(5, user_id="u1"), "name must be a str"),
        (lambda c: c.identify({"a": 1}, {"b": 2}, {"c": 3}), "pass at most traits and options"),
    ],
)
async def test_wrong_types_raise_type_error_naming_the_argument(
    client: RehookClient, fake: FakeRehook, call: Any, message: str
) -> None:
    """Wrong argument types are programmer errors: TypeError at the call, nothing queued."""
    with pytest.raises(TypeError, match=message):
        call(client)
    assert client.stats().accepted == 0


async def test_unknown_keyword_raises_type_error(client: RehookClient) -> None:
    """An unknown keyword argument is a TypeError naming it."""
    with pytest.raises(TypeError, match="userid"):
        _ = client.track("e", userid="u1")  # type: ignore[call-arg]


async def test_python_keywords_win_over_options(client: RehookClient) -> None:
    """user_id= and friends win over the same fields in options."""
    outcome = await client.track(
        "e",
        None,
        {"userId": "from-options", "anonymousId": "a-opt", "messageId": "m-opt"},
        user_id="from-keyword",
        message_id="m-kw",
    )

    assert outcome.call.user_id == "from-keyword"
    assert outcome.call.anonymous_id == "a-opt"
    assert outcome.call.message_id == "m-kw"


async def test_options_user_id_wins_over_properties_user_id(client: RehookClient) -> None:
    """properties["userId"] is only the last resort."""
    outcome = await client.track("e", {"userId": "from-props"}, {"userId": "from-options"})
    assert outcome.call.user_id == "from-options"


async def test_all_options_are_kept_on_the_call(client: RehookClient) -> None:
    """Every analytics.js option lands on the Call; unknown option keys join the context, as in analytics.js."""
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    outcome = await client.identify(
        "u1",
        {"plan": "pro"},
        {
            "anonymousId": "anon",
            "timestamp": when,
            "context": {"ip": "10.0.0.1"},
            "integrations": {"All": True},
            "messageId": "msg-1",
            "library": {"name": "custom"},
        },
    )
    call = outcome.call

    assert call.type is CallType.IDENTIFY
    assert (call.user_id, call.anonymous_id, call.timestamp, call.message_id) == ("u1", "anon", when, "msg-1")
    assert call.context == {"ip": "10.0.0.1", "library": {"name": "custom"}}
    assert call.integrations == {"All": True}
    assert call.traits == {"plan": "pro"}


async def test_uuid_and_int_ids_become_strings(client: RehookClient) -> None:
    """A UUID or int id is accepted and becomes its string."""
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")

    outcome = await client.track("e", user_id=uid, anonymous_id=99)  # the signature says so too (tests/typing)

    assert outcome.call.user_id == "12345678-1234-5678-1234-567812345678"
    assert outcome.call.anonymous_id == "99"


async def test_properties_are_copied_at_the_call(client: RehookClient, fake: FakeRehook) -> None:
    """Rebinding keys in the caller's dict after the call does not change what is sent."""
    props: dict[str, Any] = {"price": 1}

    handle = client.track("e", props, user_id="u1")
    props["price"] = 2
    props.clear()
    await handle

    assert fake.requests[0].json["metadata"] == {"price": 1}


async def test_iso_string_timestamp_is_accepted(client: RehookClient) -> None:
    """timestamp may be an ISO 8601 string, as analytics.js sends."""
    outcome = await client.track("e", user_id="u1", timestamp="2026-01-02T03:04:05Z")
    assert outcome.call.timestamp == "2026-01-02T03:04:05Z"


async def test_alias_and_group_keep_their_ids(client: RehookClient) -> None:
    """group() and alias() record their ids on the call even though nothing is sent."""
    group = await client.group("g1", {"name": "Acme"}, user_id="u1")
    alias = await client.alias("new", "old")

    assert (group.call.group_id, group.call.traits) == ("g1", {"name": "Acme"})
    assert (alias.call.user_id, alias.call.previous_id) == ("new", "old")


@settings(max_examples=100)
@given(
    event=st.text(max_size=10),
    data=st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    user_id=st.text(max_size=6),
)
async def test_fast_path_makes_the_same_call_as_the_general_path(
    client: RehookClient, event: str, data: dict[str, Any] | None, user_id: str
) -> None:
    """The common call shapes take a fast path; the Call they make is the one the general path makes."""
    fast_track = client.track(event, data, user_id=user_id)
    general_track = client.track(event, data, {}, user_id=user_id)  # an options dict forces the general path
    fast_identify = client.identify(user_id, data)
    general_identify = client.identify(user_id, data, {})

    assert fast_track.call == general_track.call
    assert fast_identify.call == general_identify.call
    assert fast_track.message_id is general_track.message_id is None
    await client.flush()
