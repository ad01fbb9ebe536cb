"""
before_send and max_payload_bytes (#13): what the user may change or cap on the sender side, before mapping.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import pytest

from rehook_sdk import Call, ConfigurationError, Mapping, OutcomeStatus, Reason, RehookClient
from rehook_sdk.testing import FakeRehook


def redact(call: Call) -> Call | None:
    if call.event == "internal":
        return None
    properties = {k: v for k, v in (call.properties or {}).items() if k != "email"}
    return attrs.evolve(call, properties={**properties, "app": "shop"})


async def test_before_send_enriches_redacts_and_drops(fake: FakeRehook, tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    async with fake.client(before_send=redact, dead_letter=dead) as client:
        kept = await client.track("Order", {"email": "a@x", "total": 5}, user_id="u1")
        fake.fail_next(1, status=400)
        failed = await client.track("Order", {"email": "b@x"}, user_id="u2")
        dropped = await client.track("internal", {"email": "c@x"}, user_id="u3")

    assert [r.json for r in fake.requests] == [
        {"event_name": "Order", "source_id": "u1", "metadata": {"total": 5, "app": "shop"}},
        {"event_name": "Order", "source_id": "u2", "metadata": {"app": "shop"}},
    ]
    assert kept.delivered
    assert kept.call.properties == {"total": 5, "app": "shop"}  # the outcome reports the call as sent
    assert (dropped.status, dropped.reason) == (OutcomeStatus.DROPPED, Reason.BEFORE_SEND)
    assert failed.reason is Reason.REJECTED
    assert "b@x" not in dead.read_text()  # the dead-letter file holds the redacted call
    assert client.stats().dropped == {Reason.BEFORE_SEND: 1}


async def test_a_before_send_that_raises_or_returns_junk_ends_the_call_not_the_sender(
    fake: FakeRehook, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(call: Call) -> Call | None:
        if call.event == "junk":
            return "not a call"  # type: ignore[return-value]
        raise KeyError("plan")

    async with fake.client(before_send=broken, concurrency=1) as client:
        first = await client.track("a", user_id="u1")
        second = await client.track("b", user_id="u1")
        junk = await client.track("junk", user_id="u1")

    assert (first.reason, second.reason, junk.reason) == (Reason.INVALID_PAYLOAD,) * 3
    assert first.message == "before_send raised KeyError('plan')"
    assert "must return the Call" in junk.message
    assert "not str" in junk.message
    tracebacks = [r for r in caplog.records if r.levelno == logging.ERROR and "before_send raised" in r.getMessage()]
    assert len(tracebacks) == 1  # one full report per distinct error
    assert tracebacks[0].exc_info is not None
    assert fake.requests == []


async def test_a_body_over_max_payload_bytes_is_dropped_before_any_upload(fake: FakeRehook) -> None:
    async with fake.client(max_payload_bytes=200) as client:
        small = await client.track("e", {"note": "x" * 50}, user_id="u1")
        large = await client.track("e", {"note": "x" * 500}, user_id="u1")

    assert small.delivered
    assert (large.status, large.reason) == (OutcomeStatus.DROPPED, Reason.PAYLOAD_TOO_LARGE)
    assert "more than max_payload_bytes (200)" in large.message
    assert len(fake.requests) == 1


async def test_the_default_limit_is_what_the_fake_accepts(fake: FakeRehook) -> None:
    """1 MiB by default: a body just under it is delivered, one just over it is refused before it is sent."""
    async with fake.client() as client:
        under = await client.track("e", {"note": "x" * (1024 * 1024 - 200)}, user_id="u1")
        over = await client.track("e", {"note": "x" * (1024 * 1024)}, user_id="u1")
    assert under.delivered
    assert over.reason is Reason.PAYLOAD_TOO_LARGE
    assert "1,048,6" in over.message


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"before_send": 5}, "before_send must be callable"), ({"max_payload_bytes": 0}, "max_payload_bytes")],
)
def test_bad_hook_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RehookClient("k", "s", **settings)  # type: ignore[arg-type]


async def test_client_wide_context_and_properties_are_merged_with_the_calls_winning(fake: FakeRehook) -> None:
    seen: list[Call] = []

    def look(call: Call) -> Call:
        seen.append(call)
        return call

    metadata = {"app": {"@path": "$.context.app.name"}, "ip": {"@path": "$.context.ip"}}
    mapping = Mapping(trigger='type = "track" and properties.tier = "gold"', action="track_event")
    identify_mapping = Mapping(trigger='type = "identify"', action="identify_user", fields={"metadata": metadata})
    defaults = {"tier": "gold", "source": "web"}
    async with fake.client(
        context={"app": {"name": "shop"}, "ip": "0.0.0.0"},
        default_properties=defaults,
        before_send=look,
        mappings=[mapping, identify_mapping],
    ) as client:
        defaulted = await client.track("e", {"total": 5}, user_id="u1")
        overridden = await client.track("e", {"source": "app"}, user_id="u2", context={"ip": "1.2.3.4"})
        silver = await client.track("e", {"tier": "silver"}, user_id="u3")  # the trigger reads the merged properties
        identified = await client.identify("u4", {"plan": "pro"})
    defaults["tier"] = "changed later"  # copied when the client was made

    assert (defaulted.delivered, overridden.delivered, identified.delivered) == (True, True, True)
    assert silver.reason is Reason.NO_MATCHING_MAPPING
    assert [r.json["metadata"] for r in fake.requests] == [
        {"tier": "gold", "source": "web", "total": 5},
        {"tier": "gold", "source": "app"},
        {"app": "shop", "ip": "0.0.0.0"},  # identify: the context, not the default properties
    ]
    assert seen[1].context == {"app": {"name": "shop"}, "ip": "1.2.3.4"}  # before_send sees the merged call
    assert seen[3].traits == {"plan": "pro"}


@pytest.mark.parametrize("setting", ["context", "default_properties"])
def test_client_wide_defaults_must_be_str_keyed_mappings(setting: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{setting} must be a mapping with str keys"):
        RehookClient("k", "s", **{setting: {1: "x"}})  # type: ignore[arg-type]
