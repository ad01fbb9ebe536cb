"""
Mappings: field directives, defaults and overrides, several mappings per call, validation, callables, Engage.
"""

from __future__ import annotations

from typing import Any

import pytest

from rehook_sdk import (
    DEFAULT_MAPPINGS,
    MAX_MAPPINGS,
    Action,
    ActionResult,
    Mapping,
    MappingError,
    OutcomeStatus,
    Reason,
    RehookClient,
)
from rehook_sdk.testing import FakeRehook

TRACK = 'type = "track"'
PROPS = {
    "total": 12.5,
    "payment": "card",
    "items": [{"sku": "S1", "qty": 2}, {"sku": "S2"}],
    "empty": "",
    "zero": 0,
    "none": None,
    "html": "<b>&",
}

# (metadata field value, what Rehook receives as metadata) for track("Order Completed", PROPS, user_id="u1").
DIRECTIVES: list[tuple[Any, Any]] = [
    ({"amount": {"@path": "$.properties.total"}}, {"amount": 12.5}),
    ({"amount": {"@path": "properties.total"}}, {"amount": 12.5}),  # "$." is optional
    ({"sku": {"@path": "$.properties.items[1].sku"}}, {"sku": "S2"}),
    ({"sku": {"@path": "$.properties.items.0.sku"}}, {"sku": "S1"}),
    ({"gone": {"@path": "$.properties.missing"}, "kept": 1}, {"kept": 1}),  # missing removes the key
    ({"none": {"@path": "$.properties.none"}}, {"none": None}),  # null stays null
    (
        {"user": {"@path": "$.userId"}, "event": {"@path": "$.event"}, "type": {"@path": "$.type"}},
        {"user": "u1", "event": "Order Completed", "type": "track"},
    ),
    ({"all": {"@path": "$.properties.items"}}, {"all": [{"sku": "S1", "qty": 2}, {"sku": "S2"}]}),
    (
        {"literal": "x", "n": 3, "b": False, "nil": None, "list": [1, "a"]},
        {"literal": "x", "n": 3, "b": False, "nil": None, "list": [1, "a"]},
    ),
    ({"arr": [{"@path": "$.properties.total"}, {"@path": "$.nope"}]}, {"arr": [12.5, None]}),  # missing in array: null
    ({"m": {"@if": {"exists": {"@path": "$.properties.total"}, "then": "yes", "else": "no"}}}, {"m": "yes"}),
    ({"m": {"@if": {"exists": {"@path": "$.properties.nope"}, "then": "yes", "else": "no"}}}, {"m": "no"}),
    ({"m": {"@if": {"exists": {"@path": "$.properties.none"}, "then": "yes", "else": "no"}}}, {"m": "no"}),
    ({"m": {"@if": {"exists": {"@path": "$.properties.zero"}, "then": "yes", "else": "no"}}}, {"m": "yes"}),
    ({"m": {"@if": {"exists": {"@path": "$.properties.nope"}, "then": "yes"}}}, {}),  # no else: removed
    ({"m": {"@if": {"exists": {"@path": "$.properties.nope"}, "then": 1, "else": False}}}, {}),  # falsy else: removed
    ({"m": {"@if": {"exists": {"@path": "$.properties.total"}, "then": None, "else": 1}}}, {"m": None}),
    ({"m": {"@if": {"blank": {"@path": "$.properties.payment"}, "then": "set", "else": "blank"}}}, {"m": "set"}),
    ({"m": {"@if": {"blank": {"@path": "$.properties.empty"}, "then": "set", "else": "blank"}}}, {"m": "blank"}),
    ({"m": {"@if": {"blank": {"@path": "$.properties.zero"}, "then": "set", "else": "blank"}}}, {"m": "blank"}),
    ({"m": {"@if": {"exists": {"@path": "$.userId"}, "then": {"@path": "$.userId"}, "else": "anon"}}}, {"m": "u1"}),
    (
        {"t": {"@template": "{{userId}} paid {{properties.total}} by {{properties.payment}}"}},
        {"t": "u1 paid 12.5 by card"},
    ),
    ({"t": {"@template": "[{{properties.nope}}]"}}, {"t": "[]"}),
    ({"t": {"@template": "{{properties.html}} {{{properties.html}}}"}}, {"t": "<b>& <b>&"}),  # no HTML escaping
    ({"t": {"@template": "{{properties.items}}|{{properties.none}}"}}, {"t": "[object Object],[object Object]|"}),
    ({"m": {"@if": {"exists": {"@path": "$.properties.total"}}}}, {}),  # no branch to take: nothing
    ({"m": {"@if": {"exists": 1, "then": 1, "when": 2}}}, {"m": 1}),  # other keys are ignored
    ({"w": {"@path": "$."}}, "whole event"),  # "$." (and "") is the whole event
    ({"q": {"@path": "$.properties['payment']"}, "r": {"@path": "$.properties[payment]"}}, {"q": "card"}),
    ({"k": {"@path": "$.type", "_metadata": {"label": "x"}}}, {"k": "track"}),  # _metadata beside a directive
    ({"t": {"@template": "{{ properties.payment }}"}}, {"t": "card"}),
    ({"l": {"@literal": "{{not a template}}"}}, {"l": "{{not a template}}"}),
    ({"l": {"@literal": {"@path": "$.properties.total"}}}, {"l": 12.5}),  # mapping-kit resolves inside @literal
    ({"d": {"@path": {"@template": "$.properties.{{properties.payment}}"}}}, {}),  # nested directive as the path
    ({"d": {"@path": {"@literal": "$.properties.payment"}}}, {"d": "card"}),
]


@pytest.mark.parametrize(("metadata", "expected"), DIRECTIVES, ids=[str(i) for i in range(len(DIRECTIVES))])
async def test_directives_resolve_like_mapping_kit(fake: FakeRehook, metadata: Any, expected: Any) -> None:
    """Each directive resolves against the Segment event exactly as Segment's mapping-kit does."""
    mapping = Mapping(trigger=TRACK, action="track_event", fields={"metadata": metadata})
    async with fake.client(mappings=[mapping]) as client:
        outcome = await client.track("Order Completed", PROPS, user_id="u1")

    assert outcome.delivered, outcome.message
    if expected == "whole event":
        event = fake.requests[0].json["metadata"]["w"]
        assert event == {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "properties": PROPS,
            "messageId": outcome.message_id,
        }
    else:
        assert fake.requests[0].json["metadata"] == expected


async def test_issue_example_mapping(fake: FakeRehook) -> None:
    """The documented example: Order Completed becomes order_success with chosen metadata; identify keeps defaults."""
    mappings = [
        Mapping(
            trigger='type = "track" and event = "Order Completed"',
            action="track_event",
            fields={
                "event_name": "order_success",
                "source_id": {"@path": "$.userId"},
                "metadata": {"amount": {"@path": "$.properties.total"}, "mode": {"@path": "$.properties.payment"}},
            },
        ),
        Mapping(trigger='type = "identify" and traits.plan != null', action="identify_user"),
    ]
    async with fake.client(mappings=mappings) as client:
        order = await client.track("Order Completed", {"total": 99.5, "payment": "card", "coupon": "X"}, user_id="u1")
        other = await client.track("Product Viewed", {"price": 1}, user_id="u1")
        plan = await client.identify("u1", {"plan": "pro", "referral_code": "U1CODE"})
        no_plan = await client.identify("u2", {"email": "x@example.com"})

    assert order.delivered
    assert plan.delivered
    assert (other.reason, no_plan.reason) == (Reason.NO_MATCHING_MAPPING, Reason.NO_MATCHING_MAPPING)
    assert [r.json for r in fake.requests] == [
        {"event_name": "order_success", "source_id": "u1", "metadata": {"amount": 99.5, "mode": "card"}},
        {"source_id": "u1", "metadata": {"plan": "pro", "referral_code": "U1CODE"}, "referral_code": "U1CODE"},
    ]
    assert [r.mapping for r in plan.results] == ["mappings[1]"]


async def test_fields_override_some_and_inherit_the_rest(fake: FakeRehook) -> None:
    """A mapping that sets only event_name keeps the default source_id and metadata."""
    mapping = Mapping(trigger=TRACK, action="track_event", fields={"event_name": {"@template": "web_{{event}}"}})
    async with fake.client(mappings=[mapping]) as client:
        await client.track("signup_started", {"plan": "pro"}, user_id="u1")

    assert fake.requests[0].json == {
        "event_name": "web_signup_started",
        "source_id": "u1",
        "metadata": {"plan": "pro"},
    }


async def test_default_mappings_are_importable_and_equivalent(fake: FakeRehook) -> None:
    """Passing DEFAULT_MAPPINGS explicitly behaves as passing nothing."""
    assert [m.action for m in DEFAULT_MAPPINGS] == [Action.IDENTIFY_USER, Action.TRACK_EVENT]
    async with fake.client(mappings=DEFAULT_MAPPINGS) as client:
        await client.identify("u1", {"referral_code": "C1"})
        await client.track("e", {"a": 1}, user_id="u1")
        screen = await client.screen("Home", user_id="u1")

    assert [r.json for r in fake.requests] == [
        {"source_id": "u1", "metadata": {"referral_code": "C1"}, "referral_code": "C1"},
        {"event_name": "e", "source_id": "u1", "metadata": {"a": 1}},
    ]
    assert screen.reason is Reason.NO_MATCHING_MAPPING


async def test_page_and_screen_are_sent_with_one_mapping(fake: FakeRehook) -> None:
    """0.1.0 sent page and screen calls by default; the one Mapping on the Mappings page keeps that."""
    pages = Mapping(
        name="Page or Screen",
        trigger='type = "page" or type = "screen"',
        action="track_event",
        fields={"event_name": {"@path": "$.type"}},
    )
    async with fake.client(mappings=[*DEFAULT_MAPPINGS, pages]) as client:
        page = await client.page("Home", {"path": "/"}, user_id="u1")
        screen = await client.screen("Settings", user_id="u1")

    assert (page.status, screen.status) == (OutcomeStatus.DELIVERED, OutcomeStatus.DELIVERED)
    assert [r.json for r in fake.requests] == [
        {"event_name": "page", "source_id": "u1", "metadata": {"path": "/", "name": "Home"}},
        {"event_name": "screen", "source_id": "u1", "metadata": {"name": "Settings"}},
    ]


async def test_several_mappings_fire_for_one_call(fake: FakeRehook) -> None:
    """Every matching mapping sends its request, in order; the outcome has one result per action."""
    mappings = [
        *DEFAULT_MAPPINGS,
        Mapping(
            name="Upsert buyer",
            trigger='type = "track" and event = "Order Completed"',
            action="identify_user",
            fields={"metadata": {"last_order": {"@path": "$.properties.total"}}, "referral_code": None},
        ),
    ]
    async with fake.client(mappings=mappings) as client:
        outcome = await client.track("Order Completed", {"total": 5}, user_id="u1", message_id="m1")

    assert outcome.status is OutcomeStatus.DELIVERED
    assert outcome.message == "all 2 actions delivered"
    assert [(r.mapping, r.action, r.status) for r in outcome.results] == [
        ("Track Event", Action.TRACK_EVENT, OutcomeStatus.DELIVERED),
        ("Upsert buyer", Action.IDENTIFY_USER, OutcomeStatus.DELIVERED),
    ]
    assert [r.path for r in fake.requests] == ["/events/invoke", "/customers"]
    assert fake.requests[1].json == {"source_id": "u1", "metadata": {"last_order": 5}, "referral_code": None}
    # One Idempotency-Key per request, derived from the call's messageId.
    assert [r.idempotency_key for r in fake.requests] == ["m1-1", "m1-2"]
    assert [r.message_id for r in outcome.results] == ["m1-1", "m1-2"]
    assert client.stats().delivered == 1  # counted per call


async def test_partial_failure_is_reported_per_action(fake: FakeRehook) -> None:
    """One action rejected and one delivered: the call fails, naming the failed action; both results are kept."""
    mappings = [
        Mapping(name="A", trigger=TRACK, action="track_event"),
        Mapping(name="B", trigger=TRACK, action="identify_user", fields={"metadata": {}}),
    ]
    fake.fail_next(1, status=400)
    async with fake.client(mappings=mappings) as client:
        outcome = await client.track("e", user_id="u1")

    assert (outcome.status, outcome.reason, outcome.http_status) == (OutcomeStatus.FAILED, Reason.REJECTED, 400)
    assert outcome.message.startswith("1 of 2 actions not delivered; A: Rehook rejected")
    assert [r.status for r in outcome.results] == [OutcomeStatus.FAILED, OutcomeStatus.DELIVERED]
    assert outcome.attempts == 2


async def test_group_call_can_be_mapped(fake: FakeRehook) -> None:
    """group() is unsupported by default but a mapping can send it, as in Segment."""
    mapping = Mapping(
        trigger='type = "group"',
        action="identify_user",
        fields={"metadata": {"company": {"@path": "$.groupId"}}, "referral_code": {"@path": "$.traits.nope"}},
    )
    async with fake.client() as default_client:
        unsupported = await default_client.group("acme", {"plan": "pro"}, user_id="u1")
    async with fake.client(mappings=[mapping]) as client:
        sent = await client.group("acme", {"plan": "pro"}, user_id="u1")

    assert unsupported.reason is Reason.UNSUPPORTED_CALL
    assert sent.delivered
    assert fake.requests[-1].json == {"source_id": "u1", "metadata": {"company": "acme"}}


async def test_runtime_missing_fields(fake: FakeRehook) -> None:
    """Required fields that resolve to nothing drop the action: missing_user_id, anonymous_only, missing_field."""
    mapping = Mapping(
        trigger=TRACK,
        action="track_event",
        fields={"event_name": {"@path": "$.properties.name"}, "source_id": {"@path": "$.traits.email"}},
    )
    by_email = Mapping(trigger=TRACK, action="track_event", fields={"source_id": {"@path": "$.properties.email"}})
    async with fake.client(mappings=[mapping]) as client:
        no_source = await client.track("e", {"name": "x"}, user_id="u1")
        anonymous = await client.track("e", {"name": "x"}, anonymous_id="a1")
    async with fake.client(mappings=[by_email]) as client:
        no_event_name = await client.track("e", {"email": "a@example.com"}, anonymous_id="a1")

    assert no_source.reason is Reason.MISSING_USER_ID
    assert anonymous.reason is Reason.ANONYMOUS_ONLY
    assert no_event_name.delivered  # source_id from the email: anonymous calls can be sent when mapped so
    mapping_no_name = Mapping(trigger=TRACK, action="track_event", fields={"event_name": {"@path": "$.properties.n"}})
    async with fake.client(mappings=[mapping_no_name]) as client:
        missing = await client.track("e", {}, user_id="u1")
    assert (missing.status, missing.reason) == (OutcomeStatus.DROPPED, Reason.MISSING_FIELD)
    assert "event_name" in missing.message


async def test_runtime_wrong_types_are_invalid_payload(fake: FakeRehook) -> None:
    """A field that resolves to the wrong type drops the action as invalid_payload, naming the field."""
    dynamic = {"x": {"@path": {"@path": "$.properties.n"}}}
    mappings = [
        Mapping(trigger='event = "a"', action="track_event", fields={"metadata": {"@path": "$.event"}}),
        Mapping(trigger='event = "b"', action="track_event", fields={"event_name": {"@path": "$.properties"}}),
        Mapping(trigger='event = "c"', action="track_event", fields={"metadata": dynamic}),
        # Valid for mapping-kit's validation (it does not look inside arrays, nor require exists): fails per event.
        Mapping(trigger='event = "d"', action="track_event", fields={"metadata": {"x": [{"@nope": 1}]}}),
        Mapping(trigger='event = "e"', action="track_event", fields={"metadata": {"@if": {"then": 1}}}),
    ]
    async with fake.client(mappings=mappings) as client:
        a = await client.track("a", user_id="u1")
        b = await client.track("b", user_id="u1")
        c = await client.track("c", {"n": 5}, user_id="u1")
        d = await client.track("d", user_id="u1")
        e = await client.track("e", user_id="u1")

    assert (a.reason, b.reason, c.reason, d.reason, e.reason) == (Reason.INVALID_PAYLOAD,) * 5
    assert "metadata must be an object but it was a string" in a.message
    assert "event_name must be a string but it was an object" in b.message
    assert "@path: expected string, got number" in c.message
    assert "@nope is not a valid directive" in d.message
    assert '@if requires an "exists" key or a "blank" key' in e.message
    assert fake.requests == []


async def test_conversion_events_apply_to_mapped_event_names(fake: FakeRehook) -> None:
    """conversion_events is checked on the final event_name a mapping produces."""
    mapping = Mapping(trigger='event = "Signed Up"', action="track_event", fields={"event_name": "signup"})
    async with fake.client(mappings=[mapping], conversion_events={"signup"}) as client:
        without = await client.track("Signed Up", {}, user_id="u1")
        with_code = await client.track("Signed Up", {"referral_code": "ADV1"}, user_id="u1")

    assert without.reason is Reason.MISSING_REFERRAL_CODE
    assert with_code.delivered


async def test_callable_trigger_and_fields(fake: FakeRehook) -> None:
    """Python callables may stand for the trigger (event -> bool) and the fields (event -> dict of overrides)."""
    seen: list[dict[str, Any]] = []

    def big_order(event: Any) -> bool:
        seen.append(dict(event))
        return bool(event["type"] == "track" and event.get("properties", {}).get("total", 0) > 100)

    def fields(event: Any) -> dict[str, Any]:
        return {
            "event_name": "big_order",
            "metadata": {"total": event["properties"]["total"], "at": event["messageId"]},
        }

    async with fake.client(mappings=[Mapping(trigger=big_order, action="track_event", fields=fields)]) as client:
        big = await client.track("Order Completed", {"total": 150}, user_id="u1", message_id="m-9")
        small = await client.track("Order Completed", {"total": 5}, user_id="u1")

    assert big.delivered
    assert small.reason is Reason.NO_MATCHING_MAPPING
    assert fake.requests[0].json == {
        "event_name": "big_order",
        "source_id": "u1",
        "metadata": {"total": 150, "at": "m-9"},
    }
    assert seen[0]["type"] == "track"
    assert seen[0]["userId"] == "u1"


async def test_callables_that_raise_end_the_action_not_the_sender(fake: FakeRehook) -> None:
    """A trigger or fields callable that raises drops that action as invalid_payload; the client keeps working."""

    def bad_trigger(event: Any) -> bool:
        raise KeyError("boom")

    def bad_fields(event: Any) -> dict[str, Any]:
        raise ValueError("nope")

    def not_a_dict(event: Any) -> Any:
        return ["x"]

    mappings = [
        Mapping(name="t", trigger=bad_trigger, action="track_event"),
        Mapping(name="f", trigger=TRACK, action="track_event", fields=bad_fields),
        Mapping(name="d", trigger=TRACK, action="track_event", fields=not_a_dict),
    ]
    async with fake.client(mappings=mappings) as client:
        outcome = await client.track("e", user_id="u1")
        again = await client.track("e", user_id="u1")

    assert [r.reason for r in outcome.results] == [Reason.INVALID_PAYLOAD] * 3
    assert "the trigger raised KeyError('boom')" in outcome.results[0].message
    assert "nope" in outcome.results[1].message
    assert "not a mapping" in outcome.results[2].message
    assert again.reason is Reason.INVALID_PAYLOAD


async def test_callable_field_values_are_made_json_safe(fake: FakeRehook) -> None:
    """Values a fields callable returns go through the same JSON-safe rules as properties."""
    import decimal

    mapping = Mapping(trigger=TRACK, action="track_event", fields=lambda e: {"metadata": {"p": decimal.Decimal("1.5")}})
    bad = Mapping(trigger=TRACK, action="track_event", fields=lambda e: {"metadata": {"o": object()}})
    async with fake.client(mappings=[mapping]) as client:
        ok = await client.track("e", user_id="u1")
    async with fake.client(mappings=[bad]) as client:
        invalid = await client.track("e", user_id="u1")

    assert ok.delivered
    assert fake.requests[0].json["metadata"] == {"p": 1.5}
    assert invalid.reason is Reason.INVALID_PAYLOAD
    assert "fields.metadata.o" in invalid.message


INVALID_MAPPINGS: list[tuple[Any, str, str]] = [
    (Mapping(trigger=TRACK, action="send_email"), "action", "unknown action 'send_email'"),
    (Mapping(trigger=TRACK, action="track_event", fields={"email": "x"}), "fields.email", "has no field 'email'"),
    (Mapping(trigger=TRACK, action="identify_user", fields={"event_name": "x"}), "fields.event_name", "has no field"),
    (Mapping(trigger=TRACK, action="track_event", fields={"event_name": None}), "fields.event_name", "can never give"),
    (Mapping(trigger=TRACK, action="track_event", fields={"event_name": ""}), "fields.event_name", "can never give"),
    (Mapping(trigger=TRACK, action="track_event", fields={"event_name": {"a": 1}}), "fields.event_name", "can never"),
    (
        Mapping(trigger=TRACK, action="identify_user", fields={"source_id": [1, 2]}),
        "fields.source_id",
        "can never give",
    ),
    (
        Mapping(trigger=TRACK, action="identify_user", fields={"source_id": {"@literal": None}}),
        "fields.source_id",
        "never",
    ),
    (
        Mapping(
            trigger=TRACK,
            action="identify_user",
            fields={"source_id": {"@if": {"exists": {"@path": "$.a"}, "then": None}}},
        ),
        "fields.source_id",
        "can never give",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"@path": "$.a", "x": 1}}),
        "fields.metadata",
        "has no keys but _metadata beside it",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"@path": "$.a", "@template": "b"}}),
        "fields.metadata",
        "only one directive",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"x": {"@merge": []}}}),
        "fields.metadata.x",
        "@merge is a mapping-kit directive rehook-sdk does not support",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"x": [{"@case": {}}]}}),
        "fields.metadata.x[0]",
        "@case is a mapping-kit directive rehook-sdk does not support",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"x": {"@nope": 1}}}),
        "fields.metadata.x",
        "unknown directive @nope",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"@if": "x"}}),
        "fields.metadata.@if",
        "@if takes an object, got a string",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"@if": {"then": {"@nope": 1}}}}),
        "fields.metadata.@if.then",
        "unknown directive @nope",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"@path": 5}}),
        "fields.metadata.@path",
        "takes a string or a directive",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"@template": ["x"]}}),
        "fields.metadata.@template",
        "takes a string",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"x": object()}}),
        "fields.metadata.x",
        "object values are not JSON",
    ),
    (
        Mapping(trigger=TRACK, action="track_event", fields={"metadata": {"x": float("nan")}}),
        "fields.metadata.x",
        "NaN is not JSON",
    ),
    (Mapping(trigger=TRACK, action="track_event", fields=["x"]), "fields", "must be a mapping"),  # type: ignore[arg-type]
    (Mapping(trigger=5, action="track_event"), "trigger", "must be a str or a callable"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("mapping", "part", "message"), INVALID_MAPPINGS, ids=[m for _, _, m in INVALID_MAPPINGS])
def test_invalid_mappings_are_refused_at_construction(mapping: Mapping, part: str, message: str) -> None:
    """Everything about a mapping is checked when the client is made; the error names the mapping and the part."""
    with pytest.raises(MappingError) as info:
        RehookClient("k", "s", mappings=[*DEFAULT_MAPPINGS, mapping])

    assert info.value.index == 2
    assert info.value.part == part
    assert message in str(info.value)
    assert str(info.value).startswith(f"mappings[2]: {part}: ")


def test_mapping_name_appears_in_errors() -> None:
    """A named mapping is named in its error."""
    with pytest.raises(MappingError, match=r"mappings\[0\] \('Orders'\): trigger"):
        RehookClient("k", "s", mappings=[Mapping(name="Orders", trigger="type =", action="track_event")])


def test_at_most_50_mappings() -> None:
    """Segment's limit: 50 mappings are fine, 51 raise MappingError."""
    mapping = Mapping(trigger=TRACK, action="track_event")
    RehookClient("k", "s", mappings=[mapping] * MAX_MAPPINGS)

    with pytest.raises(MappingError, match="at most 50 mappings") as info:
        RehookClient("k", "s", mappings=[mapping] * (MAX_MAPPINGS + 1))
    assert info.value.index is None


def test_mappings_must_be_mapping_objects() -> None:
    """A dict instead of a Mapping, or a single Mapping instead of a list, is refused clearly."""
    with pytest.raises(MappingError, match=r"mappings\[0\] is a dict, not a Mapping"):
        RehookClient("k", "s", mappings=[{"trigger": TRACK, "action": "track_event"}])  # type: ignore[list-item]
    with pytest.raises(MappingError, match="not one Mapping"):
        RehookClient("k", "s", mappings=Mapping(trigger=TRACK, action="track_event"))  # type: ignore[arg-type]


async def test_no_mappings_drops_everything_by_name(fake: FakeRehook) -> None:
    """An empty list is allowed (a kill switch): every call is dropped as no_matching_mapping."""
    async with fake.client(mappings=[]) as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.reason is Reason.NO_MATCHING_MAPPING
    assert outcome.results == ()


async def test_action_result_is_public_and_typed(client: RehookClient) -> None:
    """Single-action outcomes carry the same facts in results[0]."""
    outcome = await client.track("e", user_id="u1")
    [result] = outcome.results
    assert isinstance(result, ActionResult)
    assert (result.mapping, result.action, result.http_status, result.message_id) == (
        "Track Event",
        Action.TRACK_EVENT,
        200,
        outcome.message_id,
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Order Completed Last 30 Days", "order_completed_last_30_days"),
        ("order-completed-last-30days", "order_completed_last_30_days"),
        ("High LTV Customers", "high_ltv_customers"),
        ("VIPUsers", "vip_users"),
        ("last30Days", "last_30_days"),
        ("Engage: Churn Risk (Q3 2026)", "engage_churn_risk_q_3_2026"),
        ("already_snake_case", "already_snake_case"),
        ("  Spaced   Out  ", "spaced_out"),
        ("Über-Käufer", "uber_kaufer"),  # lodash deburrs
    ],
)
async def test_audience_trait_is_the_snake_cased_name(fake: FakeRehook, name: str, key: str) -> None:
    """audience() sends the identify Engage would: the snake_cased audience name with a boolean."""
    async with fake.client() as client:
        joined = await client.audience("u1", name)
        left = await client.audience("u1", name, member=False)

    assert joined.delivered
    assert left.delivered
    assert [r.json["metadata"] for r in fake.requests] == [{key: True}, {key: False}]


async def test_audience_bad_arguments(client: RehookClient) -> None:
    """A name with no letters or digits, or non-bool membership, raises at the call."""
    with pytest.raises(ValueError, match="no letters, digits or emoji"):
        _ = client.audience("u1", " - ")
    with pytest.raises(TypeError, match="member must be a bool"):
        _ = client.audience("u1", "VIP", member="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="audience_name must be a str"):
        _ = client.audience("u1", 5)  # type: ignore[arg-type]
