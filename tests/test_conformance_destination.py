"""
The Rehook destination as Segment runs it: vectors from @segment/actions-core 3.170.0 running the destination's two
actions (tests/conformance/destination.mjs; `npm ci && npm run generate` there regenerates them, CI needs no node).

Each subscription of the vectors becomes one `Mapping` of a client (the default ones: a client without
``mappings=``) talking to the fake Rehook; each event is sent through the public API. Where Segment's action would
post a body, the SDK must post the same body to the same path; where Segment's action fails, the SDK must send
nothing and end the call dropped; where the subscription does not match, nothing is sent. A mapping Segment's
mapping validation refuses, the SDK refuses when the client is built. The documented differences
(docs/mappings.md, "Where rehook-sdk differs from Segment") are asserted as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rehook_sdk import EventHandle, Mapping, MappingError, OutcomeStatus, Reason, RehookClient
from rehook_sdk.testing import FakeRehook

HERE = Path(__file__).resolve().parent / "conformance"
VECTORS = json.loads((HERE / "vectors" / "destination.json").read_text(encoding="utf-8"))
ACTIONS = {"identifyUser": "identify_user", "trackEvent": "track_event"}
DEFAULTS = ("default Identify User", "default Track Event")
# Segment's action fails for a missing source_id; the SDK takes a track call's user id from properties["userId"].
USER_ID_FROM_PROPERTIES = {"type": "track", "event": "x", "properties": {"userId": "p1"}, "anonymousId": "a2"}


def send(client: RehookClient, event: dict[str, Any]) -> EventHandle:
    """The SDK call that produces ``event`` (the vectors' events are what these calls make)."""
    ids = {"message_id": event["messageId"]}
    if "anonymousId" in event:
        ids["anonymous_id"] = event["anonymousId"]
    user = event.get("userId")
    kind = event["type"]
    if kind == "identify":
        return client.identify(user, event["traits"], **ids)
    if kind == "track":
        return client.track(event["event"], event["properties"], user_id=user, **ids)
    if kind in ("page", "screen"):
        method = client.page if kind == "page" else client.screen
        return method(event.get("name"), event["properties"], user_id=user, **ids)
    if kind == "group":
        return client.group(event["groupId"], event["traits"], user_id=user, **ids)
    return client.alias(user, event["previousId"], **ids)


def mapping_of(subscription: dict[str, Any]) -> Mapping:
    return Mapping(
        name=subscription["name"],
        trigger=subscription["subscribe"],
        action=ACTIONS[subscription["action"]],
        fields=subscription["mapping"],
    )


def without_message_id(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "messageId"}


def test_vectors_come_from_the_pinned_packages() -> None:
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]
    assert VECTORS["packages"] == {name: pinned[name] for name in VECTORS["packages"]}
    assert len(VECTORS["subscriptions"]) >= 20
    assert len(VECTORS["events"]) >= 50


@pytest.mark.parametrize("subscription", VECTORS["subscriptions"], ids=[s["name"] for s in VECTORS["subscriptions"]])
async def test_the_sdk_sends_what_segments_destination_sends(
    fake_rehook: FakeRehook, subscription: dict[str, Any]
) -> None:
    if subscription["refused"] is not None:
        with pytest.raises(MappingError):
            RehookClient("k", "s", mappings=[mapping_of(subscription)])
        return
    mappings = {} if subscription["name"] in DEFAULTS else {"mappings": [mapping_of(subscription)]}
    client = fake_rehook.client(**mappings)
    try:
        for event, expected in zip(VECTORS["events"], subscription["outcomes"], strict=True):
            if subscription["name"] in DEFAULTS and expected["subscribed"] is False:
                # The default client holds both default mappings: only check that the other one is the one firing.
                other = VECTORS["subscriptions"][DEFAULTS.index(subscription["name"]) ^ 1]["outcomes"]
                if other[VECTORS["events"].index(event)]["subscribed"]:
                    continue
            seen = len(fake_rehook.requests)
            outcome = await send(client, event)
            sent = [(r.path, r.json) for r in fake_rehook.requests[seen:]]
            label = f"{subscription['name']}: {json.dumps(without_message_id(event))}"
            if without_message_id(event) == USER_ID_FROM_PROPERTIES:
                # Documented difference: Segment fails the call for its missing source_id; the SDK sends it as the
                # next event of the vectors, the same call with that userId, which Segment sends.
                expected = subscription["outcomes"][VECTORS["events"].index(event) + 1]
                assert VECTORS["events"][VECTORS["events"].index(event) + 1]["userId"] == "p1"
            if not expected["subscribed"]:
                assert sent == [], label
                assert outcome.reason in (Reason.NO_MATCHING_MAPPING, Reason.UNSUPPORTED_CALL), label
            elif "sent" in expected:
                assert sent == [(expected["sent"]["path"], expected["sent"]["json"])], label
                assert outcome.status is OutcomeStatus.DELIVERED or fake_rehook.requests[-1].status == 400, label
            else:
                assert sent == [], f"{label}: Segment fails it with {expected['error']!r}"
                assert outcome.status is OutcomeStatus.DROPPED, label
    finally:
        await client.aclose()
