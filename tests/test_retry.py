"""
Retries: what is retried, how long it waits, and what each delivery mode does after an ambiguous failure.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging

import pytest

from rehook_sdk import Delivery, OutcomeStatus, Reason, RehookClient, RetryPolicy
from rehook_sdk.testing import FakeRehook

from .helpers import wait_until


async def test_503_then_success_is_delivered(client: RehookClient, fake: FakeRehook) -> None:
    """Two 503s then 200: delivered on the third attempt, two retries counted."""
    fake.fail_next(2, status=503)

    outcome = await client.track("e", user_id="u1")

    assert (outcome.status, outcome.attempts, outcome.http_status) == (OutcomeStatus.DELIVERED, 3, 200)
    assert client.stats().retried == 2
    assert [r.status for r in fake.requests] == [503, 503, 200]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
async def test_retryable_statuses(client: RehookClient, fake: FakeRehook, status: int) -> None:
    """408, 429 and every 5xx are retried."""
    fake.fail_next(1, status=status)

    outcome = await client.track("e", user_id="u1")

    assert outcome.delivered
    assert outcome.attempts == 2


@pytest.mark.parametrize("status", [408, 429, 501, 503, 505, 511])
async def test_statuses_that_prove_nothing_was_done_are_retried_at_most_once_too(fake: FakeRehook, status: int) -> None:
    """408, 429, 501, 503, 505 and 511 say the request was not acted on: retried even at most once."""
    fake.fail_next(1, status=status)

    async with fake.client(delivery=Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")

    assert (outcome.delivered, outcome.attempts) == (True, 2)


@pytest.mark.parametrize("status", [500, 502, 504, 507, 520, 599])
async def test_statuses_that_may_mean_it_was_done_end_at_most_once(fake: FakeRehook, status: int) -> None:
    """500, 502, 504 and every other 5xx may mean Rehook (behind a gateway) acted: at most once, not sent again."""
    fake.fail_next(1, status=status)

    async with fake.client(delivery=Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")

    assert (outcome.reason, outcome.http_status, outcome.attempts, outcome.maybe_delivered) == (
        Reason.RETRIES_EXHAUSTED,
        status,
        1,
        True,
    )
    assert outcome.message == f"HTTP {status}; not retried (delivery=at_most_once): Rehook may have received it"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_other_4xx_are_rejected_without_retry(client: RehookClient, fake: FakeRehook, status: int) -> None:
    """Any other 4xx fails at once as rejected, keeping Rehook's status and body."""
    fake.fail_next(1, status=status)

    outcome = await client.track("e", user_id="u1")

    assert (outcome.status, outcome.reason, outcome.http_status, outcome.attempts) == (
        OutcomeStatus.FAILED,
        Reason.REJECTED,
        status,
        1,
    )
    assert outcome.response_body is not None
    assert "SCRIPTED_FAULT" in outcome.response_body
    assert len(fake.requests) == 1


async def test_retries_exhausted(fake: FakeRehook) -> None:
    """After max_attempts 503s the call fails as retries_exhausted with the last status, not maybe delivered."""
    fake.fail_next(10, status=503)

    async with fake.client(retry=RetryPolicy(max_attempts=3, time_scale=0)) as client:
        outcome = await client.track("e", user_id="u1")

    assert (outcome.status, outcome.reason, outcome.attempts, outcome.http_status) == (
        OutcomeStatus.FAILED,
        Reason.RETRIES_EXHAUSTED,
        3,
        503,
    )
    assert not outcome.maybe_delivered
    assert outcome.message == "HTTP 503 on all 3 attempts"
    assert len(fake.requests) == 3


async def test_retry_after_seconds_is_a_minimum_wait(fake: FakeRehook) -> None:
    """429 with Retry-After: 5 waits at least 5 s (scaled by time_scale, so 50 ms here) before retrying."""
    fake.fail_next(1, status=429, retry_after="5")
    policy = RetryPolicy(initial_wait=0, time_scale=0.01)

    async with fake.client(retry=policy) as client:
        outcome = await client.track("e", user_id="u1")

    assert outcome.delivered
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.05


async def test_retry_after_http_date_is_honoured(fake: FakeRehook) -> None:
    """Retry-After as an HTTP date waits until that date (scaled)."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    fake.fail_next(1, status=503, retry_after=email.utils.format_datetime(when, usegmt=True))
    policy = RetryPolicy(initial_wait=0, time_scale=0.01)

    async with fake.client(retry=policy) as client:
        outcome = await client.track("e", user_id="u1")

    assert outcome.delivered
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.02  # >= 3 s of the 4 (the date has 1 s resolution)


async def test_retry_after_is_capped(fake: FakeRehook) -> None:
    """A huge Retry-After is capped at max_retry_after."""
    fake.fail_next(1, status=429, retry_after="86400")
    policy = RetryPolicy(initial_wait=0, max_retry_after=2, time_scale=0.01)

    async with fake.client(retry=policy) as client:
        outcome = await client.track("e", user_id="u1")

    assert outcome.delivered
    first, second = fake.requests
    assert 0.02 <= second.received_at - first.received_at < 5  # 86400 s scaled would be 864 s


async def test_garbled_retry_after_falls_back_to_backoff(client: RehookClient, fake: FakeRehook) -> None:
    """A Retry-After that is neither seconds nor a date is ignored."""
    fake.fail_next(1, status=503, retry_after="soon")
    assert (await client.track("e", user_id="u1")).delivered


async def test_401_fails_everything_fast_with_one_log_line(fake: FakeRehook, caplog: pytest.LogCaptureFixture) -> None:
    """Bad credentials: every pending and later call fails as rejected (401) without hammering Rehook."""
    caplog.set_level(logging.DEBUG, logger="rehook_sdk")
    async with RehookClient("test_key", "wrong", base_url=fake.url, concurrency=2) as client:
        handles = [client.track("e", user_id=f"u{i}") for i in range(50)]
        outcomes = [await h for h in handles]
        later = await client.identify("u1", {"a": 1})

    assert {(o.status, o.reason, o.http_status) for o in [*outcomes, later]} == {
        (OutcomeStatus.FAILED, Reason.REJECTED, 401)
    }
    assert len(fake.requests) <= 2  # at most one request per sender was already under way
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "401" in errors[0].getMessage()
    assert "REHOOK_API_KEY" in errors[0].getMessage()
    assert "wrong" not in caplog.text


async def test_lost_connection_is_retried_at_least_once(client: RehookClient, fake: FakeRehook) -> None:
    """At-least-once (default): a connection dropped after the request was sent is retried."""
    fake.disconnect_next(1)

    outcome = await client.track("e", user_id="u1")

    assert outcome.delivered
    assert outcome.attempts == 2
    assert [r.status for r in fake.requests] == [None, 200]


async def test_lost_connection_is_not_retried_at_most_once(fake: FakeRehook) -> None:
    """At-most-once: an ambiguous failure is not retried; the outcome says Rehook may have it."""
    fake.disconnect_next(1)

    async with fake.client(delivery=Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")

    assert (outcome.status, outcome.reason, outcome.attempts) == (OutcomeStatus.FAILED, Reason.RETRIES_EXHAUSTED, 1)
    assert outcome.maybe_delivered
    assert "at_most_once" in outcome.message
    assert len(fake.requests) == 1


async def test_at_most_once_still_retries_unambiguous_failures(fake: FakeRehook) -> None:
    """At-most-once still retries a 503: Rehook said it did not take the request."""
    fake.fail_next(1, status=503)

    async with fake.client(delivery="at_most_once") as client:
        outcome = await client.track("e", user_id="u1")

    assert outcome.delivered


async def test_timeout_at_least_once_can_duplicate(fake: FakeRehook) -> None:
    """A request that times out after it was sent is retried; Rehook may then see it twice (counted by the fake)."""
    fake.delay_next(1, seconds=0.3)

    async with fake.client(request_timeout=0.1) as client:
        outcome = await client.track("e", user_id="u1")
        assert outcome.delivered
        assert outcome.attempts == 2
        await wait_until(lambda: len(fake.requests) == 2)

    assert fake.duplicates == 1
    assert len(fake.events) == 2


async def test_timeout_at_most_once_is_not_retried(fake: FakeRehook) -> None:
    """At-most-once: a timeout fails with maybe_delivered and no second request."""
    fake.delay_next(1, seconds=0.3)

    async with fake.client(request_timeout=0.1, delivery=Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")
        await wait_until(lambda: len(fake.requests) == 1)

    assert (outcome.reason, outcome.maybe_delivered, outcome.attempts) == (Reason.RETRIES_EXHAUSTED, True, 1)
    assert fake.duplicates == 0


async def test_connection_refused_is_retried_then_fails(fake: FakeRehook) -> None:
    """Nobody listening: retried (nothing was sent, so even at-most-once retries), then retries_exhausted."""
    await fake.stop()

    async with fake.client(retry=RetryPolicy(max_attempts=3, time_scale=0), delivery=Delivery.AT_MOST_ONCE) as client:
        outcome = await client.track("e", user_id="u1")

    assert (outcome.reason, outcome.attempts, outcome.http_status) == (Reason.RETRIES_EXHAUSTED, 3, None)
    assert not outcome.maybe_delivered
    assert "cannot connect" in outcome.message


async def test_server_down_then_up_delivers(fake: FakeRehook) -> None:
    """Rehook unreachable for a while, then back: the call is delivered by a later retry."""
    await fake.stop()
    policy = RetryPolicy(max_attempts=50, initial_wait=0.5, max_wait=0.5, time_scale=0.02)

    async with fake.client(retry=policy) as client:
        handle = client.track("e", user_id="u1")
        await wait_until(lambda: client.stats().retried >= 2)
        await fake.start()
        outcome = await handle

    assert outcome.delivered
    assert outcome.attempts >= 3
