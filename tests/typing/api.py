"""
The public API as a user calls it; type-checked by mypy --strict, never run.
"""

from __future__ import annotations

import datetime as dt
import uuid

from rehook_sdk import (
    Delivery,
    EventHandle,
    Outcome,
    OutcomeStatus,
    Reason,
    RehookClient,
    RetryPolicy,
    Stats,
)
from rehook_sdk.testing import FakeRehook


def on_error(outcome: Outcome) -> None:
    reason: Reason | None = outcome.reason
    print(reason, outcome.message, outcome.http_status, outcome.maybe_delivered)


async def usage() -> None:
    async with RehookClient(
        "key",
        "secret",
        base_url="https://api.rehook.ai",
        max_queue_size=1000,
        concurrency=8,
        request_timeout=5.0,
        retry=RetryPolicy(max_attempts=3, initial_wait=0.1, max_wait=5, max_retry_after=30, time_scale=1.0),
        delivery=Delivery.AT_MOST_ONCE,
        conversion_events={"signup"},
        on_error=on_error,
    ) as rehook:
        handle: EventHandle = rehook.identify("u1", {"email": "a@example.com"})
        _ = rehook.identify(42)
        _ = rehook.track("Product Viewed", {"price": 18.99}, user_id="u1")
        _ = rehook.track("signup", {"referral_code": "ERTYUS"}, {"userId": "u1"})
        _ = rehook.track("e", None, None, on_error, user_id="u1", timestamp=dt.datetime.now(dt.UTC))
        _ = rehook.page("Home", {"path": "/"}, user_id="u1")
        _ = rehook.screen("Settings", user_id="u1", message_id="m1")
        _ = rehook.group("g1", {"name": "Acme"}, user_id="u1")
        _ = rehook.alias("u1", "anon")
        outcome: Outcome = await handle
        status: OutcomeStatus = outcome.status
        delivered: bool = outcome.delivered
        maybe: Outcome | None = handle.outcome
        left: int = await rehook.flush(timeout=1.0)
        stats: Stats = rehook.stats()
        total: int = stats.accepted + stats.dropped_total + stats.failed_total + stats.dropped[Reason.QUEUE_FULL]
        await rehook.check_auth()
        print(status, delivered, maybe, left, total)
    await rehook.aclose(timeout=None)


async def testing_usage() -> None:
    async with FakeRehook(conversion_events=["signup"]) as fake:
        fake.fail_next(2, status=503, retry_after="1")
        fake.delay_next(1, seconds=0.5)
        fake.disconnect_next()
        client: RehookClient = fake.client(concurrency=2)
        async with client:
            _ = client.track("e", user_id="u1")
        print(fake.requests[0].json, fake.customers, fake.events, fake.duplicates, fake.delivered_keys)


async def mappings_usage() -> None:
    from typing import Any

    from rehook_sdk import DEFAULT_MAPPINGS, MAX_MAPPINGS, Action, ActionResult, Mapping, MappingError

    def trigger(event: Any) -> bool:
        return bool(event["type"] == "track")

    mappings: list[Mapping] = [
        *DEFAULT_MAPPINGS,
        Mapping(trigger='type = "track"', action="track_event", fields={"event_name": "x"}, name="X"),
        Mapping(trigger=trigger, action=Action.IDENTIFY_USER, fields=lambda event: {"metadata": {}}),
    ]
    assert len(mappings) <= MAX_MAPPINGS
    try:
        client = RehookClient("k", "s", mappings=mappings)
    except MappingError as exc:
        print(exc.index, exc.name, exc.part, exc.text, exc.position)
        raise
    async with client:
        outcome = await client.audience("u1", "High LTV", member=False)
        results: tuple[ActionResult, ...] = outcome.results
        print([(r.mapping, r.action, r.status, r.reason, r.http_status) for r in results])


def sync_usage() -> None:
    from rehook_sdk import SyncRehookClient

    with SyncRehookClient("k", "s", atexit_timeout=None, concurrency=4, conversion_events={"signup"}) as rehook:
        handle = rehook.track("signup", {"referral_code": "A"}, user_id="u1")
        outcome: Outcome = handle.result(timeout=1.0)
        _ = rehook.identify("u1", {"plan": "pro"})
        left: int = rehook.flush(timeout=1.0)
        rehook.check_auth()
        print(outcome, left, rehook.stats())
    rehook.close(timeout=None)


def integrations_usage() -> None:
    from typing import Annotated

    from aiohttp import web
    from fastapi import Depends, FastAPI

    from rehook_sdk.integrations.aiohttp import REHOOK, rehook_cleanup_ctx
    from rehook_sdk.integrations.starlette import get_rehook, rehook_lifespan

    aio = web.Application()
    aio.cleanup_ctx.append(rehook_cleanup_ctx(lambda: RehookClient("k", "s"), close_timeout=1.0))
    client: RehookClient = aio[REHOOK]
    api = FastAPI(lifespan=rehook_lifespan(RehookClient("k", "s")))
    dependency = Annotated[RehookClient, Depends(get_rehook)]
    print(client, api, dependency)


async def ids_as_the_readme_says(client: RehookClient) -> None:
    # A UUID or an int id is accepted wherever a str is (it becomes its string).
    user = uuid.uuid4()
    handles: list[EventHandle] = [
        client.identify(user, {"plan": "pro"}),
        client.track("e", user_id=user, anonymous_id=7),
        client.page("Home", user_id=42),
        client.screen("Home", user_id=user),
        client.group(user, user_id=user),
        client.alias(user, previous_id=7),
        client.audience(user, "VIP"),
    ]
    for handle in handles:
        await handle


async def production_settings() -> None:
    import ssl

    import attrs
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from rehook_sdk import Call

    def redact(call: Call) -> Call | None:
        return attrs.evolve(call, properties={**(call.properties or {}), "email": None})

    async with RehookClient(
        "k",
        "s",
        headers={"X-Team": "growth"},
        proxy="http://user:password@proxy:3128",
        ssl=ssl.create_default_context(),
        max_payload_bytes=64 * 1024,
        before_send=redact,
        context={"app": {"name": "shop"}},
        default_properties={"plan": "pro"},
        enabled=False,
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    ) as client:
        outcome = await client.track("e", user_id="u1")
        sent: str | None = outcome.call.message_id
        requests: int = client.stats().requests
        as_dict: dict[str, object] = client.stats().as_dict()
        print(sent, requests, as_dict)
