"""
What an attempt proves, behind a gateway: the fault proxy answers as HAProxy and nginx do (504 after forwarding,
502 in place of a lost answer, 503 without forwarding), and each outcome must say truthfully whether Rehook may
have the call. At most once, a call is never sent again after an attempt that may have been acted on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from rehook_sdk import Delivery, OutcomeStatus, Reason, RehookClient, RetryPolicy
from rehook_sdk.testing import FakeRehook, FaultProxy, ProxyFault

from .helpers import Run, check_promises, wait_until

pytestmark = pytest.mark.usefixtures("both_transports")

CALLS = 60


@pytest.fixture
async def gateway(fake: FakeRehook) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_url(fake.url) as running:
        yield running


def client_behind(fake: FakeRehook, gateway: FaultProxy, delivery: Delivery, attempts: int = 8) -> RehookClient:
    return fake.client(
        base_url=gateway.url,
        delivery=delivery,
        request_timeout=5.0,
        concurrency=8,
        retry=RetryPolicy(max_attempts=attempts, time_scale=0),
    )


def server_counts(fake: FakeRehook) -> Counter[str]:
    return Counter(r.idempotency_key for r in fake.requests if r.idempotency_key)


@pytest.mark.parametrize("kind", ["gateway_timeout", "bad_gateway"])
async def test_at_most_once_never_resends_after_a_gateways_502_or_504(
    fake: FakeRehook, gateway: FaultProxy, kind: str
) -> None:
    """A 504 or 502 from a gateway that forwarded the request: at most once, the call is sent exactly once and fails
    with maybe_delivered, though the server got it."""
    gateway.script(ProxyFault(kind=kind, seconds=0), count=CALLS)  # type: ignore[arg-type]
    run = Run()
    async with client_behind(fake, gateway, Delivery.AT_MOST_ONCE) as client:
        run.send(client, CALLS)
        await client.flush()
        await wait_until(lambda: len(fake.delivered_keys) == CALLS)
    check_promises(run, client, fake, Delivery.AT_MOST_ONCE)
    status = 504 if kind == "gateway_timeout" else 502
    assert {(o.reason, o.http_status, o.attempts, o.maybe_delivered) for o in run.outcomes} == {
        (Reason.RETRIES_EXHAUSTED, status, 1, True)
    }
    assert set(server_counts(fake).values()) == {1}
    assert all(f"HTTP {status}; not retried (delivery=at_most_once)" in o.message for o in run.outcomes)


async def test_at_least_once_retries_a_gateway_timeout_and_may_duplicate(fake: FakeRehook, gateway: FaultProxy) -> None:
    """At least once, a 504 is retried: every call is delivered, and the server may have the ones that met it twice."""
    gateway.script(ProxyFault(kind="gateway_timeout", seconds=0), count=CALLS // 2)
    run = Run()
    async with client_behind(fake, gateway, Delivery.AT_LEAST_ONCE) as client:
        run.send(client, CALLS)
        await client.flush()
        await wait_until(lambda: fake.pending == 0 and gateway.finished())
    check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    assert run.count(OutcomeStatus.DELIVERED) == CALLS
    assert 0 < fake.duplicates <= CALLS // 2


async def test_a_slow_server_behind_a_gateway_timeout_is_answered_504_while_it_processes(
    fake: FakeRehook, gateway: FaultProxy
) -> None:
    """The server takes longer than the gateway waits: the 504 comes first, the server still acts on the call."""
    fake.delay_next(1, seconds=0.3)
    gateway.script(ProxyFault(kind="gateway_timeout", seconds=0.05))
    async with client_behind(fake, gateway, Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")
        await wait_until(lambda: len(fake.delivered_keys) == 1)
    assert (outcome.status, outcome.http_status, outcome.maybe_delivered) == (OutcomeStatus.FAILED, 504, True)
    assert fake.delivered_keys == {outcome.message_id}
    assert len(fake.requests) == 1


async def test_a_gateway_that_gets_the_answer_in_time_passes_it_on(fake: FakeRehook, gateway: FaultProxy) -> None:
    """A gateway_timeout fault whose server answers in time is an ordinary delivery."""
    gateway.script(ProxyFault(kind="gateway_timeout", seconds=5.0))
    async with client_behind(fake, gateway, Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.delivered
    assert [r.fault for r in gateway.requests] == ["pass"]


async def test_a_503_from_a_gateway_is_retried_at_most_once_too(fake: FakeRehook, gateway: FaultProxy) -> None:
    """503 proves the request was not forwarded: retried even at most once, and delivered once."""
    gateway.script("unavailable", count=2)
    async with client_behind(fake, gateway, Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")
    assert (outcome.delivered, outcome.attempts) == (True, 3)
    assert [r.forwarded for r in gateway.requests] == [False, False, True]
    assert len(fake.requests) == 1


@pytest.mark.parametrize("delivery", list(Delivery))
async def test_maybe_delivered_is_sticky_across_attempts(
    fake: FakeRehook, gateway: FaultProxy, delivery: Delivery
) -> None:
    """Attempt 1's answer is lost after the server acted on it, attempts 2 and 3 get 503: the call may be delivered,
    and the message tells each attempt; at most once there are no attempts 2 and 3."""
    gateway.script("reset_after")
    gateway.script("unavailable", count=2)
    async with client_behind(fake, gateway, delivery, attempts=3) as client:
        outcome = await client.track("e", user_id="u1")
        await wait_until(lambda: len(fake.delivered_keys) == 1)
    assert (outcome.status, outcome.reason, outcome.maybe_delivered) == (
        OutcomeStatus.FAILED,
        Reason.RETRIES_EXHAUSTED,
        True,
    )
    assert fake.delivered_keys == {outcome.message_id}
    if delivery is Delivery.AT_MOST_ONCE:
        assert outcome.attempts == 1
        assert outcome.message.endswith("not retried (delivery=at_most_once): Rehook may have received it")
        return
    assert (outcome.attempts, outcome.http_status) == (3, 503)
    assert outcome.message.startswith("attempt 1: connection lost")
    assert outcome.message.endswith("; attempts 2-3: HTTP 503; Rehook may have received it")


async def test_a_later_rejection_keeps_an_earlier_maybe(fake: FakeRehook, gateway: FaultProxy) -> None:
    """Attempt 1 lost its answer (at least once), attempt 2 was refused with 400: rejected, still maybe delivered."""
    gateway.script("reset_after")
    fake.delay_next(1, seconds=0)  # attempt 1: handled as usual (the proxy loses the answer)
    fake.fail_next(1, status=400)  # attempt 2
    async with client_behind(fake, gateway, Delivery.AT_LEAST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")
    assert (outcome.reason, outcome.http_status, outcome.attempts, outcome.maybe_delivered) == (
        Reason.REJECTED,
        400,
        2,
        True,
    )
    assert fake.delivered_keys == {outcome.message_id}
    assert "(after connection lost" in outcome.message
    assert outcome.message.endswith("; an earlier attempt may have been received")


@pytest.mark.parametrize("delivery", list(Delivery))
async def test_randomised_gateway_faults_keep_every_outcome_truthful(
    fake: FakeRehook, gateway: FaultProxy, delivery: Delivery
) -> None:
    """Half the requests refused with 503, some answers lost, some 504s: every call the server got is delivered or
    maybe delivered, and the calls said not to be were never received."""
    gateway.random_faults(
        [("unavailable", 0.5), ("reset_after", 0.05), (ProxyFault(kind="gateway_timeout", seconds=0), 0.05)], seed=11
    )
    run = Run()
    async with client_behind(fake, gateway, delivery, attempts=3) as client:
        run.send(client, 300)
        await client.flush()
        await wait_until(lambda: fake.pending == 0 and gateway.finished())
    check_promises(run, client, fake, delivery)
    not_maybe = {o.message_id for o in run.outcomes if not o.delivered and not o.maybe_delivered}
    maybe = {o.message_id for o in run.outcomes if o.maybe_delivered}
    assert not_maybe  # 3 attempts at a 50% refusal rate: some calls met only refusals
    assert maybe
    assert not (not_maybe & fake.delivered_keys)
