"""
What reaches Rehook: the seed examples' exact requests, the mapping of every call type, and the rules.
"""

from __future__ import annotations

import base64

from rehook_sdk import Call, CallType, Mapping, OutcomeStatus, Reason, RehookClient
from rehook_sdk.testing import FakeRehook


async def test_seed_identify_exact_request(client: RehookClient, fake: FakeRehook) -> None:
    """identify() sends POST /customers with source_id, the traits as metadata, and the referral code."""
    outcome = await client.identify(
        "userId12345", {"firstName": "Bob", "email": "bob.dole@example.com", "referral_code": "ERTYUS"}
    )

    assert outcome.status is OutcomeStatus.DELIVERED
    assert outcome.http_status == 200
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/customers")
    assert request.json == {
        "source_id": "userId12345",
        "metadata": {"firstName": "Bob", "email": "bob.dole@example.com", "referral_code": "ERTYUS"},
        "referral_code": "ERTYUS",
    }
    assert fake.customers["userId12345"]["referral_code"] == "ERTYUS"


async def test_seed_track_with_user_id_keyword(client: RehookClient, fake: FakeRehook) -> None:
    """track() sends POST /events/invoke with event_name, source_id and the properties as metadata."""
    outcome = await client.track(
        "Product Viewed", {"product_id": "507f1f779439011", "price": 18.99}, user_id="userId12345"
    )

    assert outcome.delivered
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/events/invoke")
    assert request.json == {
        "event_name": "Product Viewed",
        "source_id": "userId12345",
        "metadata": {"product_id": "507f1f779439011", "price": 18.99},
    }


async def test_seed_track_with_options_user_id(client: RehookClient, fake: FakeRehook) -> None:
    """The analytics.js options dict (third argument) carries the userId."""
    outcome = await client.track("signup", {"referral_code": "ERTYUS"}, {"userId": "userId12345"})

    assert outcome.delivered
    assert fake.requests[0].json == {
        "event_name": "signup",
        "source_id": "userId12345",
        "metadata": {"referral_code": "ERTYUS"},
    }


async def test_seed_track_with_user_id_inside_properties(client: RehookClient, fake: FakeRehook) -> None:
    """Segment's example that puts userId in the properties works: it becomes the source_id, metadata unchanged."""
    outcome = await client.track(
        "Product Viewed", {"userId": "userId12345", "product_id": "507f1f779439011", "price": 18.99}
    )

    assert outcome.delivered
    assert fake.requests[0].json == {
        "event_name": "Product Viewed",
        "source_id": "userId12345",
        "metadata": {"userId": "userId12345", "product_id": "507f1f779439011", "price": 18.99},
    }


async def test_requests_carry_basic_auth_and_a_stable_idempotency_key(client: RehookClient, fake: FakeRehook) -> None:
    """Every request is authorised with key:secret and has an Idempotency-Key, the same on each retry."""
    fake.fail_next(2, status=503)

    outcome = await client.track("Order Completed", {"total": 10}, user_id="u1")

    assert outcome.delivered
    assert outcome.attempts == 3
    keys = {r.idempotency_key for r in fake.requests}
    assert keys == {outcome.message_id}
    assert all(r.authorized for r in fake.requests[2:])
    expected = "Basic " + base64.b64encode(b"test_key:test_secret").decode()
    assert fake._auth == expected


async def test_message_id_becomes_the_idempotency_key(client: RehookClient, fake: FakeRehook) -> None:
    """A messageId from options or message_id= is sent as the Idempotency-Key."""
    first = await client.track("a", user_id="u1", message_id="m-1")
    second = await client.track("b", None, {"userId": "u1", "messageId": "m-2"})

    assert (first.message_id, second.message_id) == ("m-1", "m-2")
    assert [r.idempotency_key for r in fake.requests] == ["m-1", "m-2"]


async def test_the_call_carries_the_message_id_its_requests_carry(fake: FakeRehook) -> None:
    """One source of truth: the SDK's messageId is the call's (outcome.call, the handle), on every path."""

    seen: list[str | None] = []

    def fresh(call: Call) -> Call:  # a before_send that builds a new Call, without the id
        seen.append(call.message_id)
        return Call(type=call.type, user_id=call.user_id, event=call.event)

    async with fake.client() as client:
        fast = client.track("a", user_id="u1")
        general = client.track("b", {}, {"context": {"ip": "1.2.3.4"}}, user_id="u1")
        dropped = client.track("c")  # missing_user_id: nothing sent, yet the call has its id
        given = client.track("d", user_id="u1", message_id="m-1")
        outcomes = [await h for h in (fast, general, dropped, given)]
    async with fake.client(before_send=fresh) as hooked:
        rebuilt = await hooked.track("e", user_id="u1")
        await hooked.track("f", {}, {"context": {"ip": "1.2.3.4"}}, user_id="u1")  # the general path

    sent = [o for o in outcomes if o.delivered] + [rebuilt]
    assert [r.idempotency_key for r in fake.requests][:-1] == [o.call.message_id for o in sent]
    assert all(o.message_id == o.call.message_id for o in sent)
    assert [h.message_id for h in (fast, general, dropped, given)] == [o.call.message_id for o in outcomes]
    assert given.message_id == "m-1"
    assert outcomes[2].reason is Reason.MISSING_USER_ID
    assert outcomes[2].message_id is None  # nothing was sent
    assert outcomes[2].call.message_id is not None
    assert len({o.call.message_id for o in [*outcomes, rebuilt]}) == 5
    assert None not in seen  # the hook sees the id; a call it returns without one gets a new one


async def test_identify_without_referral_code_omits_it(client: RehookClient, fake: FakeRehook) -> None:
    """referral_code is omitted when the traits have none, and null stays null."""
    await client.identify("u1", {"plan": "pro"})
    await client.identify("u2", {"referral_code": None})

    assert fake.requests[0].json == {"source_id": "u1", "metadata": {"plan": "pro"}}
    assert fake.requests[1].json == {"source_id": "u2", "metadata": {"referral_code": None}, "referral_code": None}


async def test_identify_with_no_traits_sends_empty_metadata(client: RehookClient, fake: FakeRehook) -> None:
    """identify(user_id) alone upserts the customer with empty metadata."""
    assert (await client.identify("u1")).delivered
    assert fake.requests[0].json == {"source_id": "u1", "metadata": {}}


async def test_numeric_referral_code_is_sent_as_string(client: RehookClient, fake: FakeRehook) -> None:
    """An int referral code becomes its string in referral_code (metadata keeps the number)."""
    await client.identify("u1", {"referral_code": 12345})
    assert fake.requests[0].json["referral_code"] == "12345"


async def test_numeric_ids_become_strings(client: RehookClient, fake: FakeRehook) -> None:
    """A numeric user id is sent as its string."""
    await client.identify(42, {"a": 1})
    await client.track("e", user_id=7)

    assert [r.json["source_id"] for r in fake.requests] == ["42", "7"]


async def test_page_and_screen_are_not_sent_by_default(client: RehookClient, fake: FakeRehook) -> None:
    """As Segment's Rehook destination (no presets): page() and screen() send nothing, and the outcome says how to
    send them."""
    page = await client.page("Pricing", {"url": "https://example.com/pricing"}, user_id="u1")
    screen = await client.screen("Home", user_id="u1")

    assert (page.status, page.reason) == (OutcomeStatus.DROPPED, Reason.NO_MATCHING_MAPPING)
    assert (screen.status, screen.reason) == (OutcomeStatus.DROPPED, Reason.NO_MATCHING_MAPPING)
    assert "add a Mapping for page and screen calls" in page.message
    assert fake.requests == []


async def test_page_name_joins_the_properties_and_does_not_overwrite_a_name_property(fake: FakeRehook) -> None:
    """As analytics.js does, the page's name goes into its properties, unless they have a "name" already."""
    pages = Mapping(trigger='type = "page"', action="track_event", fields={"event_name": {"@path": "$.type"}})
    async with fake.client(mappings=[pages]) as client:
        await client.page("Pricing", {"url": "/pricing"}, user_id="u1")
        await client.page("Pricing", {"name": "custom"}, user_id="u1")
        await client.page(None, {"path": "/"}, {"userId": "u1"})
    assert [r.json["metadata"] for r in fake.requests] == [
        {"url": "/pricing", "name": "Pricing"},
        {"name": "custom"},
        {"path": "/"},
    ]


async def test_group_and_alias_are_dropped_as_unsupported(client: RehookClient, fake: FakeRehook) -> None:
    """group() and alias() exist for compatibility and end dropped: unsupported_call, nothing sent."""
    group = await client.group("g1", {"name": "Acme"}, user_id="u1")
    alias = await client.alias("u1", "anon-1")

    assert (group.status, group.reason, group.call.type) == (
        OutcomeStatus.DROPPED,
        Reason.UNSUPPORTED_CALL,
        CallType.GROUP,
    )
    assert (alias.status, alias.reason) == (OutcomeStatus.DROPPED, Reason.UNSUPPORTED_CALL)
    assert fake.requests == []


async def test_missing_user_id_is_dropped(client: RehookClient, fake: FakeRehook) -> None:
    """A call without any userId ends dropped: missing_user_id."""
    outcomes = [await client.track("e", {"a": 1}), await client.identify(None, {"a": 1})]

    assert {(o.status, o.reason) for o in outcomes} == {(OutcomeStatus.DROPPED, Reason.MISSING_USER_ID)}
    assert fake.requests == []


async def test_empty_user_id_counts_as_missing(client: RehookClient) -> None:
    """An empty string is no id."""
    outcome = await client.track("e", user_id="")
    assert outcome.reason is Reason.MISSING_USER_ID


async def test_anonymous_only_is_dropped(client: RehookClient, fake: FakeRehook) -> None:
    """A call with only an anonymousId ends dropped: anonymous_only."""
    by_keyword = await client.track("e", anonymous_id="anon-1")
    by_options = await client.identify(None, {"a": 1}, {"anonymousId": "anon-2"})

    assert by_keyword.reason is Reason.ANONYMOUS_ONLY
    assert by_options.reason is Reason.ANONYMOUS_ONLY
    assert by_keyword.status is OutcomeStatus.DROPPED
    assert fake.requests == []


async def test_identify_with_traits_first_is_anonymous(client: RehookClient) -> None:
    """identify(traits) as analytics.js allows: no user id, so missing_user_id; the traits are kept on the call."""
    outcome = await client.identify({"email": "a@example.com"})

    assert outcome.reason is Reason.MISSING_USER_ID
    assert outcome.call.traits == {"email": "a@example.com"}


async def test_conversion_event_without_referral_code_is_dropped(client: RehookClient, fake: FakeRehook) -> None:
    """A configured conversion event needs properties.referral_code: otherwise missing_referral_code."""
    missing = await client.track("signup", {"plan": "pro"}, user_id="u1")
    empty = await client.track("signup", {"referral_code": ""}, user_id="u1")
    none = await client.track("signup", None, user_id="u1")
    other = await client.track("Product Viewed", {}, user_id="u1")

    assert {missing.reason, empty.reason, none.reason} == {Reason.MISSING_REFERRAL_CODE}
    assert missing.status is OutcomeStatus.DROPPED
    assert other.delivered
    assert len(fake.requests) == 1


async def test_empty_event_name_is_missing(client: RehookClient, fake: FakeRehook) -> None:
    """track("") is dropped as missing_field: Segment drops an empty string at the payload's root."""
    outcome = await client.track("", user_id="u1")

    assert outcome.reason is Reason.MISSING_FIELD
    assert "event_name is an empty string, which Segment drops" in outcome.message
    assert fake.requests == []


async def test_referral_code_taken_is_rejected_with_rehook_body(client: RehookClient, fake: FakeRehook) -> None:
    """Rehook's 400 for a taken referral code fails the call as rejected, keeping status and body."""
    await client.identify("advocate", {"referral_code": "TAKEN1"})

    outcome = await client.identify("other", {"referral_code": "TAKEN1"})

    assert (outcome.status, outcome.reason, outcome.http_status) == (OutcomeStatus.FAILED, Reason.REJECTED, 400)
    assert outcome.response_body is not None
    assert "REFERRAL_CODE_TAKEN" in outcome.response_body
    assert outcome.attempts == 1


async def test_referral_flow_links_friend_to_advocate(client: RehookClient, fake: FakeRehook) -> None:
    """The documented referral flow: advocate identified, friend identified, friend's signup with the code."""
    await client.identify("advocate", {"referral_code": "ADV001"})
    await client.identify("friend", {"email": "friend@example.com"})
    outcome = await client.track("signup", {"referral_code": "ADV001"}, user_id="friend")

    assert outcome.delivered
    assert fake.customers["friend"]["referred_by"] == "advocate"


async def test_delivered_outcome_carries_the_call(client: RehookClient) -> None:
    """The outcome holds the call as it was made, and a human message."""
    outcome = await client.track("e", {"x": 1}, user_id="u1", context={"ip": "1.2.3.4"})

    assert outcome.call.event == "e"
    assert outcome.call.context == {"ip": "1.2.3.4"}
    assert outcome.reason is None
    assert "200" in outcome.message


async def test_integrations_option_can_turn_rehook_off(client: RehookClient, fake: FakeRehook) -> None:
    """analytics.js's integrations option: "Rehook": false, or "All": false without "Rehook": true, drops the call."""
    off = [
        client.track("e", {}, {"userId": "u1", "integrations": {"Rehook": False}}),
        client.identify("u1", {}, {"integrations": {"All": False, "Mixpanel": True}}),
        client.page("Home", user_id="u1", integrations={"All": False}),
    ]
    on = [
        client.track("e", {}, {"userId": "u1", "integrations": {"All": False, "Rehook": True}}),
        client.track("e", {}, {"userId": "u1", "integrations": {"Mixpanel": False}}),
        client.track("e", user_id="u1", integrations={"Rehook": {"some": "setting"}}),
        client.track("e", user_id="u1", integrations={"rehook": False}),  # names match exactly, as in Segment
    ]

    for handle in off:
        outcome = await handle
        assert (outcome.status, outcome.reason) == (OutcomeStatus.DROPPED, Reason.INTEGRATION_DISABLED)
        assert "turns Rehook off" in outcome.message
    assert all(outcome.delivered for outcome in [await handle for handle in on])
    assert len(fake.requests) == len(on)
    assert client.stats().dropped == {Reason.INTEGRATION_DISABLED: 3}
