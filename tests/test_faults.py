"""
The fault matrix: a few hundred calls under each fault, through the public API, and the promises checked each time.

Promises: every accepted call ends in exactly one outcome (accepted == delivered + dropped + failed), every handle
resolves, every callback runs once, what the fake Rehook acted on is what was reported delivered (plus only calls
reported maybe_delivered), and duplicates happen only in at-least-once mode, only after retries.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import email.utils
import logging
import threading

import pytest

from rehook_sdk import (
    Delivery,
    EventHandle,
    Outcome,
    OutcomeStatus,
    Reason,
    RehookClient,
    RetryPolicy,
)
from rehook_sdk.testing import FakeRehook

from .helpers import N, Run, check_promises, wait_until

FAST = RetryPolicy(max_attempts=8, time_scale=0)

# Every fault, through each transport (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("both_transports")


async def test_503_burst_then_recovery(fake: FakeRehook) -> None:
    """A burst of 503s: retried until Rehook recovers; everything delivered once."""
    fake.fail_next(100, status=503)
    run = Run()
    async with fake.client(retry=FAST) as client:
        run.send(client)
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
        assert client.stats().retried >= 100
    assert run.count(OutcomeStatus.DELIVERED) == N
    assert fake.duplicates == 0


@pytest.mark.parametrize("delivery", list(Delivery))
@pytest.mark.parametrize("status", [500, 503])
async def test_30_percent_random_5xx(fake: FakeRehook, delivery: Delivery, status: int) -> None:
    """30% of requests answered 500 or 503 at random: the books always balance; retries deliver (nearly) everything,
    except that at most once a 500 (Rehook may have acted on it) is never followed by another request."""
    fake.random_faults(error_rate=0.3, status=status, seed=7)
    run = Run()
    async with fake.client(retry=FAST, delivery=delivery) as client:
        run.send(client)
        await client.flush()
        check_promises(run, client, fake, delivery)
    failed = [o for o in run.outcomes if not o.delivered]
    assert run.count(OutcomeStatus.FAILED) == run.count(OutcomeStatus.FAILED, Reason.RETRIES_EXHAUSTED)
    if delivery is Delivery.AT_MOST_ONCE and status == 500:
        assert len(failed) > N // 5  # about 30% met a 500 on their first attempt
        assert {(o.attempts, o.http_status, o.maybe_delivered) for o in failed} == {(1, 500, True)}
        assert all("not retried (delivery=at_most_once)" in o.message for o in failed)
        return
    # 8 attempts at 30% each fail with p = 0.3**8: about 0.02 of 300 calls.
    assert run.count(OutcomeStatus.DELIVERED) >= N - 3
    assert all(o.maybe_delivered is (status == 500) for o in failed)


@pytest.mark.parametrize("retry_after", ["seconds", "http-date"])
async def test_429_with_retry_after(fake: FakeRehook, retry_after: str) -> None:
    """429 with Retry-After (seconds or an HTTP date) is waited out, scaled down here, then delivered."""
    value = (
        "2"
        if retry_after == "seconds"
        else email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3), usegmt=True)
    )
    fake.fail_next(50, status=429, retry_after=value)
    run = Run()
    async with fake.client(retry=RetryPolicy(initial_wait=0, time_scale=0.001)) as client:
        run.send(client)
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    assert run.count(OutcomeStatus.DELIVERED) == N


async def test_server_down_then_up(fake: FakeRehook) -> None:
    """Connection refused for a while, then Rehook is back: everything is delivered, nothing twice."""
    await fake.stop()
    run = Run()
    policy = RetryPolicy(max_attempts=100, initial_wait=0.5, max_wait=0.5, time_scale=0.01)
    async with fake.client(retry=policy, delivery=Delivery.AT_MOST_ONCE) as client:
        run.send(client)
        # Some attempts failed to connect: with Rehook unreachable the senders share one probe, so retries count
        # that probe's attempts, not one per call.
        await wait_until(lambda: client.stats().retried >= 10)
        await fake.start()
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_MOST_ONCE)
    assert run.count(OutcomeStatus.DELIVERED) == N


@pytest.mark.parametrize("delivery", list(Delivery))
async def test_connection_reset_before_the_response(fake: FakeRehook, delivery: Delivery) -> None:
    """Resets after the request was sent: retried at least once, or failed with maybe_delivered at most once."""
    fake.disconnect_next(60)
    run = Run()
    async with fake.client(retry=FAST, delivery=delivery) as client:
        run.send(client)
        await client.flush()
        check_promises(run, client, fake, delivery)
    if delivery is Delivery.AT_LEAST_ONCE:
        assert run.count(OutcomeStatus.DELIVERED) == N
    else:
        failed = [o for o in run.outcomes if not o.delivered]
        assert len(failed) == 60
        assert all(o.reason is Reason.RETRIES_EXHAUSTED and o.maybe_delivered for o in failed)
    assert fake.duplicates == 0  # the fake dropped those connections without acting on the requests


@pytest.mark.parametrize("delivery", list(Delivery))
async def test_server_that_never_answers(fake: FakeRehook, delivery: Delivery) -> None:
    """Requests that get no answer time out (request_timeout) and are retried, or not, by the delivery mode."""
    fake.hang_next(20)
    run = Run()
    async with fake.client(retry=FAST, delivery=delivery, request_timeout=0.2) as client:
        run.send(client)
        await client.flush()
        check_promises(run, client, fake, delivery)
    timed_out = [o for o in run.outcomes if not o.delivered]
    assert len(timed_out) == (0 if delivery is Delivery.AT_LEAST_ONCE else 20)
    assert all(o.maybe_delivered and "no answer within 0.2 s" in o.message for o in timed_out)


@pytest.mark.parametrize("delivery", list(Delivery))
async def test_slow_server_near_the_timeout(fake: FakeRehook, delivery: Delivery) -> None:
    """Answers that come just after the timeout: Rehook acted, the client gave up; only at-least-once duplicates."""
    # A timeout of 2 s: a prompt answer on a loaded machine must never be taken for a slow one (at 0.5 s, 19 of 60
    # prompt answers were, with four busy processes on two cores); the slow ones come 0.2 s after it.
    fake.delay_next(40, seconds=2.2)
    run = Run()
    async with fake.client(retry=FAST, delivery=delivery, request_timeout=2.0) as client:
        run.send(client, n=100)
        await client.flush()
        await wait_until(lambda: fake.pending == 0)
        check_promises(run, client, fake, delivery)
    if delivery is Delivery.AT_LEAST_ONCE:
        assert run.count(OutcomeStatus.DELIVERED) == 100
        assert fake.duplicates == 40  # each slow request was acted on, then sent again
    else:
        assert run.count(OutcomeStatus.FAILED) == 40
        assert fake.duplicates == 0


async def test_401_fails_everything_without_hammering(fake: FakeRehook) -> None:
    """Wrong credentials: all calls fail as rejected, at most one request per sender reaches Rehook."""
    run = Run()
    async with RehookClient("test_key", "wrong", base_url=fake.url, concurrency=4, retry=FAST) as client:
        run.send(client)
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    assert run.count(OutcomeStatus.FAILED, Reason.REJECTED) == N
    assert len(fake.requests) <= 4


async def test_400_on_some_calls(fake: FakeRehook) -> None:
    """Rehook refuses a third of the calls (400): those fail as rejected, once each; the rest are delivered."""
    fake.conversion_events = frozenset({"purchase"})  # the fake rejects these without a referral code
    run = Run()
    async with fake.client(retry=FAST, conversion_events=()) as client:
        for i in range(N):
            run.send(client, n=1, event="purchase" if i % 3 == 0 else "view")
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    rejected = [o for o in run.outcomes if o.reason is Reason.REJECTED]
    assert len(rejected) == N // 3
    assert all(o.http_status == 400 and o.attempts == 1 for o in rejected)
    assert run.count(OutcomeStatus.DELIVERED) == N - N // 3


async def test_unresolvable_host() -> None:
    """A host that does not resolve: each call fails as retries_exhausted saying it cannot connect."""
    run = Run()
    policy = RetryPolicy(max_attempts=2, time_scale=0)
    async with RehookClient("k", "s", base_url="https://rehook.invalid", retry=policy, concurrency=8) as client:
        run.send(client, n=50)
        await client.flush()
        check_promises(run, client, None, Delivery.AT_LEAST_ONCE)
    assert all(o.reason is Reason.RETRIES_EXHAUSTED and "cannot connect" in o.message for o in run.outcomes)
    assert not any(o.maybe_delivered for o in run.outcomes)


async def test_full_queue_under_a_burst(fake: FakeRehook) -> None:
    """A burst larger than the queue: the excess is dropped as queue_full at once; the caller never waits."""
    run = Run()
    async with fake.client(retry=FAST, max_queue_size=50, concurrency=4) as client:
        run.send(client, n=500)  # no await between calls: the senders cannot drain meanwhile
        assert run.count(OutcomeStatus.DROPPED, Reason.QUEUE_FULL) == 450
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    assert run.count(OutcomeStatus.DELIVERED) == 50


async def test_aclose_with_requests_in_flight_and_retries_sleeping(fake: FakeRehook) -> None:
    """aclose(timeout) returns within 100 ms of its deadline, with every call accounted for."""
    fake.hang_next(10)  # the first 10 requests: in flight until the deadline
    # The next 10: asleep before a retry at the deadline. Retry-After makes the wait at least 30 s (backoff alone
    # has full jitter, so a wait could by chance be short enough to retry before the deadline).
    fake.fail_next(10, status=503, retry_after="30")
    run = Run()
    client = fake.client(retry=RetryPolicy(initial_wait=30, max_wait=30), concurrency=20)
    run.send(client, n=100)
    await wait_until(lambda: client.stats().retried >= 10)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await client.aclose(timeout=0.3)
    elapsed = loop.time() - started

    assert elapsed <= 0.3 + 0.1
    check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    left = [o for o in run.outcomes if o.reason is Reason.SHUTDOWN_TIMEOUT]
    # The hung ones, and any other request that happened to be in flight at the deadline.
    assert sum(o.maybe_delivered for o in left) >= 10
    assert sum("waited to be retried" in o.message for o in left) == 10
    assert len(left) >= 20


async def test_callers_task_cancelled_right_after_track(fake: FakeRehook) -> None:
    """The caller's task is cancelled just after its call: the call is still delivered."""
    handles: list[EventHandle] = []
    async with fake.client(retry=FAST) as client:

        async def handler() -> Outcome:
            handle = client.track("e", user_id="u1")
            handles.append(handle)
            return await handle

        task = asyncio.create_task(handler())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.flush()

    outcome = handles[0].outcome
    assert outcome is not None
    assert outcome.delivered
    assert len(fake.events) == 1


@pytest.mark.parametrize("delivery", list(Delivery))
async def test_loop_stopped_without_aclose(
    fake: FakeRehook, caplog: pytest.LogCaptureFixture, delivery: Delivery
) -> None:
    """asyncio.run() ends without aclose(): nothing queued is lost; calls cut in flight are retried (at least once)
    or fail with a visible warning (at most once)."""
    caplog.set_level(logging.WARNING, logger="rehook_sdk")
    fake.hang_next(5)
    run = Run()
    client = fake.client(retry=FAST, concurrency=5, delivery=delivery)

    def app() -> None:
        async def main() -> None:
            run.send(client, n=20)
            await wait_until(lambda: fake.pending == 5)  # the 5 hanging requests reached the fake

        asyncio.run(main())

    if delivery is Delivery.AT_MOST_ONCE:
        with pytest.warns(RuntimeWarning, match="5 calls in flight failed as shutdown_timeout"):
            await asyncio.to_thread(app)
        assert run.count(OutcomeStatus.FAILED, Reason.SHUTDOWN_TIMEOUT) == 5
        assert "15 calls still queued, kept for this client's next event loop" in caplog.text
    else:
        await asyncio.to_thread(app)  # no warning: nothing was lost
        assert "20 calls still queued, kept for this client's next event loop" in caplog.text
    await client.aclose()  # on this loop: the client starts over here and delivers what waited
    assert run.count(OutcomeStatus.DELIVERED) == (15 if delivery is Delivery.AT_MOST_ONCE else 20)
    assert run.callbacks == collections.Counter(range(20))
    check_promises(run, client, fake, delivery)


async def test_concurrent_threads_and_loop_under_faults(fake: FakeRehook) -> None:
    """Calls from the loop and from threads at once, with random faults: the books still balance."""
    fake.random_faults(error_rate=0.2, reset_rate=0.05, seed=3)
    run = Run()
    lock = threading.Lock()
    async with fake.client(retry=FAST) as client:

        def worker() -> None:
            for _ in range(50):
                with lock:
                    run.send(client, n=1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(100):
            with lock:
                run.send(client, n=1)
            await asyncio.sleep(0)
        for t in threads:
            await asyncio.to_thread(t.join)
        await client.flush()
        check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    assert len(run.handles) == 300
