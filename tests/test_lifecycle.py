"""
Starting, flushing and closing; calls from other threads; callbacks and on_error; resource warnings.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import weakref

import aiohttp
import pytest

from rehook_sdk import (
    ClientStateError,
    Delivery,
    EventHandle,
    Outcome,
    OutcomeStatus,
    Reason,
    RehookClient,
    RetryPolicy,
    Stats,
)
from rehook_sdk._client import delivery_engine
from rehook_sdk.testing import FakeRehook

from .helpers import start_tracking_threads, wait_until


async def test_calls_return_at_once_and_resolve_later(client: RehookClient, fake: FakeRehook) -> None:
    """A call returns a pending handle without waiting for Rehook; awaiting it gives the outcome."""
    fake.delay_next(1, seconds=0.05)

    handle = client.track("e", user_id="u1")

    assert isinstance(handle, EventHandle)
    assert not handle.done()
    outcome = await handle
    assert handle.done()
    assert outcome is handle.outcome
    assert await handle is outcome  # a handle may be awaited again


async def test_first_call_in_a_loop_starts_the_client(fake: FakeRehook) -> None:
    """A client made without async with starts on its first call inside a running loop."""
    client = fake.client()

    outcome = await client.track("e", user_id="u1")

    assert outcome.delivered
    await client.aclose()


async def test_calls_before_any_loop_are_delivered_once_started(fake: FakeRehook) -> None:
    """Calls made where no loop runs (module level, a plain thread) wait in the queue until the client starts."""
    client = fake.client()
    handles: list[EventHandle] = []
    thread = threading.Thread(target=lambda: handles.extend(client.track("e", user_id=f"u{i}") for i in range(5)))
    thread.start()
    thread.join()

    assert client.stats().in_queue == 5
    async with client:
        outcomes = [await h for h in handles]

    assert all(o.delivered for o in outcomes)
    assert len(fake.events) == 5


async def test_aclose_delivers_calls_queued_before_start(fake: FakeRehook) -> None:
    """aclose() on a client that never started still delivers what was queued."""
    client = fake.client()
    thread = threading.Thread(target=client.identify, args=("u1", {"a": 1}))
    thread.start()
    thread.join()

    await client.aclose()

    assert len(fake.customers) == 1


async def test_flush_waits_for_everything_accepted(client: RehookClient, fake: FakeRehook) -> None:
    """flush() returns 0 once every call so far has an outcome."""
    handles = [client.track("e", user_id=f"u{i}") for i in range(100)]

    assert await client.flush() == 0
    assert all(h.done() for h in handles)
    assert client.stats().delivered == 100


async def test_flush_deadline_says_what_is_left(fake: FakeRehook) -> None:
    """flush(timeout) returns at the deadline with the number of calls still without an outcome."""
    fake.delay_next(2, seconds=0.5)
    async with fake.client(concurrency=2) as client:
        handles = [client.track("e", user_id="u1") for _ in range(5)]

        left = await client.flush(timeout=0.05)

        assert left == 5
        assert await client.flush() == 0
        assert all(h.done() for h in handles)


async def test_flush_does_not_wait_for_later_calls(fake: FakeRehook) -> None:
    """Calls made while flush() waits are not waited for."""
    async with fake.client(concurrency=1) as client:
        first = client.track("e", user_id="u1")
        fake.delay_next(2, seconds=0.05)
        flushing = asyncio.ensure_future(client.flush())
        await asyncio.sleep(0)
        fake.delay_next(1, seconds=5)
        late = client.track("late", user_id="u1")

        assert await flushing == 0
        assert first.done()
        assert not late.done()
        await client.aclose(timeout=0)


async def test_flush_returns_when_the_shutdown_deadline_ends_calls_nobody_holds(fake: FakeRehook) -> None:
    """A flush() waiting while aclose()'s deadline ends the backlog (no handles kept) hears of every call ending."""
    fake.hang_next(2)
    client = fake.client(concurrency=2)
    await client.start()
    for i in range(500):
        _ = client.track("e", user_id=f"u{i}")
    await wait_until(lambda: client.stats().in_flight == 2)
    flushing = asyncio.ensure_future(client.flush())
    await asyncio.sleep(0)

    await client.aclose(timeout=0.05)

    assert await asyncio.wait_for(flushing, 5) == 0
    assert client.stats().failed == {Reason.SHUTDOWN_TIMEOUT: 500}


async def test_flush_hears_of_delivered_calls_nobody_holds(fake: FakeRehook) -> None:
    """Calls whose handles were dropped end on the quiet path; a flush() waiting for them still returns 0."""
    async with fake.client(concurrency=4) as client:
        for i in range(300):
            _ = client.track("e", user_id=f"u{i}")

        assert await asyncio.wait_for(client.flush(), 10) == 0
        assert client.stats().delivered == 300
        assert len(fake.events) == 300


async def test_aclose_deadline_ends_in_flight_and_queued_calls(fake: FakeRehook) -> None:
    """At aclose()'s deadline the request in flight is cancelled and everything left fails as shutdown_timeout."""
    fake.delay_next(1, seconds=10)
    client = fake.client(concurrency=1)
    in_flight = client.track("slow", user_id="u1")
    queued = [client.track("e", user_id=f"u{i}") for i in range(3)]
    await asyncio.sleep(0.05)

    started = time.monotonic()
    await client.aclose(timeout=0.1)
    elapsed = time.monotonic() - started

    assert elapsed < 2  # honoured the 0.1 s deadline, not the 10 s server delay
    outcome = await in_flight
    assert (outcome.status, outcome.reason) == (OutcomeStatus.FAILED, Reason.SHUTDOWN_TIMEOUT)
    assert outcome.maybe_delivered
    assert "in flight" in outcome.message
    for handle in queued:
        left = await handle
        assert left.reason is Reason.SHUTDOWN_TIMEOUT
        assert not left.maybe_delivered
    stats = client.stats()
    assert stats.failed == {Reason.SHUTDOWN_TIMEOUT: 4}
    assert (stats.in_queue, stats.in_flight) == (0, 0)


async def test_aclose_cancels_retry_sleeps(fake: FakeRehook) -> None:
    """A call sleeping before its retry is ended at the deadline, not after the backoff."""
    fake.fail_next(1, status=503, retry_after="60")  # at least 60 s: backoff alone could by chance wait ~0 s
    client = fake.client(retry=RetryPolicy(initial_wait=60, max_wait=60))
    handle = client.track("e", user_id="u1")
    await wait_until(lambda: client.stats().retried > 0)

    await client.aclose(timeout=0.05)

    outcome = await handle
    assert (outcome.reason, outcome.http_status, outcome.attempts) == (Reason.SHUTDOWN_TIMEOUT, 503, 1)
    assert "retried" in outcome.message
    assert not outcome.maybe_delivered


async def test_calls_after_close_are_dropped(fake: FakeRehook) -> None:
    """After aclose() every call ends at once as dropped: client_closed."""
    client = fake.client()
    await client.aclose()

    handle = client.track("e", user_id="u1")

    assert handle.done()
    outcome = await handle
    assert (outcome.status, outcome.reason) == (OutcomeStatus.DROPPED, Reason.CLIENT_CLOSED)
    assert fake.requests == []


async def test_calls_while_closing_are_dropped(fake: FakeRehook) -> None:
    """Once aclose() has begun, new calls are refused while the queue drains."""
    fake.delay_next(1, seconds=0.1)
    client = fake.client()
    first = client.track("e", user_id="u1")
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(client.aclose())
    await asyncio.sleep(0)

    late = await client.track("late", user_id="u1")
    await closing

    assert (await first).delivered
    assert late.reason is Reason.CLIENT_CLOSED


async def test_aclose_is_idempotent_and_concurrent_calls_wait(fake: FakeRehook) -> None:
    """aclose() twice, or from two tasks at once, closes once."""
    fake.delay_next(1, seconds=0.05)
    client = fake.client()
    handle = client.track("e", user_id="u1")

    await asyncio.gather(client.aclose(), client.aclose())
    await client.aclose()

    assert (await handle).delivered


async def test_start_after_close_raises(fake: FakeRehook) -> None:
    """A closed client cannot be started again."""
    client = fake.client()
    await client.aclose()

    with pytest.raises(ClientStateError, match="closed"):
        await client.start()
    with pytest.raises(ClientStateError):
        async with client:
            pass


async def test_one_sender_sends_in_call_order(fake: FakeRehook) -> None:
    """With concurrency=1, calls reach Rehook in the order they were made, across many of the queue's chunks."""
    async with fake.client(concurrency=1, max_queue_size=5_000) as client:
        for i in range(1_500):
            if i % 3 == 0:  # the general path (options) between fast-path calls
                _ = client.track("e", {"i": i}, {"userId": "u1", "context": {"ip": "1.2.3.4"}})
            else:
                _ = client.track("e", {"i": i}, user_id="u1")
            if i % 401 == 0:  # let the sender catch up now and then, so it reads while calls are appended
                await asyncio.sleep(0.01)
        assert await client.flush() == 0

    assert [event["metadata"]["i"] for event in fake.events] == list(range(1_500))
    assert client.stats().delivered == 1_500


async def test_aclose_deadline_with_a_long_queue_ends_each_call_once(fake: FakeRehook) -> None:
    """Every call of a queue hundreds long gets exactly one outcome when aclose()'s deadline leaves no time."""
    fake.hang_next(1)
    client = fake.client(concurrency=1, max_queue_size=5_000)
    ended: list[int] = []
    handles = [client.track("e", {"i": i}, user_id="u1", callback=lambda o: ended.append(1)) for i in range(700)]
    await wait_until(lambda: client.stats().in_flight == 1)

    await client.aclose(timeout=0)

    outcomes = [await h for h in handles]
    assert all(o.reason is Reason.SHUTDOWN_TIMEOUT for o in outcomes)
    assert len(ended) == 700
    stats = client.stats()
    assert stats.failed == {Reason.SHUTDOWN_TIMEOUT: 700}
    assert (stats.in_queue, stats.in_flight) == (0, 0)


async def test_queue_full_drops_at_once(fake: FakeRehook) -> None:
    """Past max_queue_size a call ends at once as dropped: queue_full; the caller never blocks."""
    async with fake.client(max_queue_size=3, concurrency=1) as client:
        handles = [client.track("e", user_id="u1") for _ in range(5)]

        assert [h.done() for h in handles] == [False, False, False, True, True]
        full = await handles[4]
        assert (full.status, full.reason) == (OutcomeStatus.DROPPED, Reason.QUEUE_FULL)
        assert "max_queue_size" in full.message
        await client.flush()
        assert client.stats().dropped == {Reason.QUEUE_FULL: 2}
        assert client.stats().delivered == 3


async def test_calls_from_other_threads(client: RehookClient, fake: FakeRehook) -> None:
    """Calls from worker threads (a sync view, a thread pool) are delivered."""
    threads, handles = start_tracking_threads(client.track, threads=4, calls=50)
    for t in threads:
        await asyncio.to_thread(t.join)

    assert await client.flush(timeout=10) == 0
    assert len(handles) == 200
    assert all(h.outcome is not None and h.outcome.delivered for h in handles)
    assert len(fake.events) == 200


async def test_handle_awaited_from_another_loop(client: RehookClient, fake: FakeRehook) -> None:
    """A handle can be awaited from a different event loop in another thread."""
    fake.delay_next(1, seconds=0.05)
    handle = client.track("e", user_id="u1")

    async def wait_elsewhere() -> Outcome:
        return await handle

    outcome = await asyncio.to_thread(asyncio.run, wait_elsewhere())

    assert outcome.delivered


async def test_call_from_another_thread_after_close_is_dropped(fake: FakeRehook) -> None:
    """A thread's call after aclose() is dropped as client_closed, not lost."""
    client = fake.client()
    await client.start()
    await client.aclose()

    outcome = await asyncio.to_thread(lambda: client.track("e", user_id="u1"))

    assert outcome.done()
    assert outcome.outcome is not None
    assert outcome.outcome.reason is Reason.CLIENT_CLOSED


async def test_callback_gets_the_outcome_once(client: RehookClient) -> None:
    """callback(outcome) runs once, with the same outcome the handle gives."""
    seen: list[Outcome] = []

    handle = client.track("e", {"a": 1}, None, seen.append, user_id="u1")
    outcome = await handle

    assert seen == [outcome]


async def test_callback_in_the_options_slot(client: RehookClient) -> None:
    """As in analytics.js, a callable in the options position is the callback."""
    seen: list[Outcome] = []

    await client.track("e", {"userId": "u1"}, seen.append)  # type: ignore[arg-type]

    assert len(seen) == 1
    assert seen[0].delivered


async def test_callback_exception_is_logged_and_contained(
    client: RehookClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises is logged; the outcome and the client are unaffected."""

    def bad(_: Outcome) -> None:
        raise RuntimeError("boom")

    outcome = await client.track("e", None, None, bad, user_id="u1")

    assert outcome.delivered
    assert "callback" in caplog.text
    assert "boom" in caplog.text
    assert (await client.track("e", user_id="u1")).delivered
    assert client.stats().delivered == 2


async def test_on_error_gets_every_drop_and_failure(fake: FakeRehook) -> None:
    """on_error is called with each dropped or failed outcome, never with a delivered one."""
    errors: list[Outcome] = []
    fake.fail_next(1, status=400)

    async with fake.client(on_error=errors.append) as client:
        await client.track("e", user_id="u1")  # rejected
        await client.track("e")  # missing_user_id
        await client.track("e", user_id="u1")  # delivered

    assert [e.reason for e in errors] == [Reason.REJECTED, Reason.MISSING_USER_ID]


async def test_on_error_exception_is_contained(fake: FakeRehook, caplog: pytest.LogCaptureFixture) -> None:
    """An on_error hook that raises is logged and changes nothing else."""

    def bad(_: Outcome) -> None:
        raise ValueError("hook failed")

    async with fake.client(on_error=bad) as client:
        outcome = await client.track("e")
        assert (await client.track("e", user_id="u1")).delivered

    assert outcome.reason is Reason.MISSING_USER_ID
    assert "on_error raised" in caplog.text


async def test_every_drop_and_failure_is_logged(client: RehookClient, caplog: pytest.LogCaptureFixture) -> None:
    """Each drop or failure leaves a WARNING on the rehook_sdk logger naming the reason."""
    caplog.set_level(logging.WARNING, logger="rehook_sdk")

    await client.track("e", anonymous_id="a1")

    [record] = [r for r in caplog.records if r.name == "rehook_sdk"]
    assert record.levelno == logging.WARNING
    assert "anonymous_only" in record.getMessage()


async def test_stats_add_up(fake: FakeRehook) -> None:
    """accepted == delivered + dropped + failed (+ in queue + in flight), by reason."""
    fake.fail_next(1, status=400)
    async with fake.client() as client:
        await client.track("e", user_id="u1")
        await client.track("e")
        await client.group("g")
        for i in range(5):
            _ = client.track("e", user_id=f"u{i}")
        mid = client.stats()
        assert mid.accepted == mid.delivered + mid.dropped_total + mid.failed_total + mid.in_queue + mid.in_flight
        await client.flush()
        stats = client.stats()

    assert stats.accepted == 8
    assert stats.delivered == 5
    assert stats.dropped == {Reason.MISSING_USER_ID: 1, Reason.UNSUPPORTED_CALL: 1}
    assert stats.failed == {Reason.REJECTED: 1}
    assert (stats.dropped_total, stats.failed_total, stats.in_queue, stats.in_flight) == (2, 1, 0, 0)


async def test_user_session_is_left_open(fake: FakeRehook) -> None:
    """A ClientSession the user passed in is used and not closed by aclose()."""
    async with aiohttp.ClientSession() as session:
        async with fake.client(session=session) as client:
            assert (await client.track("e", user_id="u1")).delivered
        assert not session.closed


async def test_unclosed_client_warns_and_still_delivers(fake: FakeRehook) -> None:
    """A running client garbage-collected without aclose() warns (ResourceWarning) and drains in the background."""
    holder = [fake.client()]
    handle = holder[0].track("e", user_id="u1")
    engine = weakref.ref(delivery_engine(holder[0]))

    with pytest.warns(ResourceWarning, match="unclosed RehookClient with 1 call still"):
        holder.clear()  # the last reference: the client is collected here

    assert (await handle).delivered
    await wait_until(lambda: gc.collect() >= 0 and engine() is None)  # released once its background drain is done


async def test_unused_client_does_not_warn(fake: FakeRehook) -> None:
    """A client that never started and holds nothing can be dropped silently."""
    holder = [fake.client()]
    holder.clear()
    gc.collect()


async def test_a_client_starts_over_on_a_new_loop(fake: FakeRehook) -> None:
    """Its loop ended without aclose() (a second asyncio.run(), pytest's per-test loops): the next call starts over."""
    fake.hang_next(1)
    client = fake.client(concurrency=1)
    first: list[EventHandle] = []

    def other_loop() -> None:
        async def use() -> None:
            first.extend(client.track("e", user_id=f"u{i}") for i in range(3))
            await wait_until(lambda: fake.pending == 1)  # u0 reached the fake and hangs; u1 and u2 are queued

        asyncio.run(use())  # ends without aclose(): asyncio.run cancels the sender

    await asyncio.to_thread(other_loop)
    assert [h.done() for h in first] == [False] * 3  # queued, and u0 (cut in flight) queued again: none lost
    later = client.track("e", user_id="u9")  # a call on a new running loop: no ClientStateError, the client restarts
    assert (await later).delivered
    outcomes = await asyncio.gather(*first)
    assert all(o.delivered for o in outcomes)
    assert outcomes[0].attempts == 1  # counted per loop: the cut request was made on the loop that ended
    await client.aclose()
    assert sorted(e["source_id"] for e in fake.events) == ["u0", "u1", "u2", "u9"]
    cut = [r for r in fake.requests if r.status is None]
    assert [r.idempotency_key for r in cut] == [outcomes[0].message_id]  # sent again with the same key


async def test_one_client_across_several_asyncio_runs(fake: FakeRehook) -> None:
    """A module-level client used by three asyncio.run() calls in turn: every call is delivered, none raises."""
    client = fake.client()

    def script() -> None:
        for n in range(3):

            async def main(n: int = n) -> None:
                outcome = await client.track("e", user_id=f"u{n}")
                assert outcome.delivered

            asyncio.run(main())

    await asyncio.to_thread(script)
    await client.aclose()
    assert sorted(e["source_id"] for e in fake.events) == ["u0", "u1", "u2"]


async def test_awaiting_a_handle_starts_the_client(fake: FakeRehook) -> None:
    """Calls made before any loop, then awaited in a coroutine: awaiting starts the client (flush() is not needed)."""
    client = fake.client()
    handles: list[EventHandle] = []

    def script() -> None:
        handles.extend(client.track("e", user_id=f"u{i}") for i in range(3))  # no loop yet

        async def main() -> None:
            outcomes = await asyncio.wait_for(asyncio.gather(*handles), 10)
            assert all(o.delivered for o in outcomes)
            await client.aclose()

        asyncio.run(main())

    await asyncio.to_thread(script)
    assert len(fake.events) == 3


async def test_flush_and_aclose_from_another_loop_raise(fake: FakeRehook) -> None:
    """flush() and aclose() belong to the client's own loop while it runs."""
    async with fake.client() as client:

        def elsewhere() -> None:
            with pytest.raises(ClientStateError, match="flush"):
                asyncio.run(client.flush())
            with pytest.raises(ClientStateError, match="aclose"):
                asyncio.run(client.aclose())
            with pytest.raises(ClientStateError, match="check_auth"):
                asyncio.run(client.check_auth())

        await asyncio.to_thread(elsewhere)


async def test_stats_repr_is_valid_python_and_as_dict_is_plain_data(client: RehookClient) -> None:
    """repr(stats) evaluates back to an equal snapshot; as_dict() names reasons by their values, with totals."""
    await client.track("e")
    await client.track("e", user_id="u1")
    stats = client.stats()
    assert repr(stats) == (
        "Stats(accepted=2, delivered=1, dropped={Reason.MISSING_USER_ID: 1}, failed={}, retried=0, in_queue=0, "
        "in_flight=0, requests=1, adopted=0, resent=0, spooled=0, unspooled=0, dead_letter_lost=0)"
    )
    assert eval(repr(stats), {"Stats": Stats, "Reason": Reason}) == stats
    assert stats.as_dict() == {
        "accepted": 2,
        "delivered": 1,
        "dropped": {"missing_user_id": 1},
        "failed": {},
        "dropped_total": 1,
        "failed_total": 0,
        "retried": 0,
        "in_queue": 0,
        "in_flight": 0,
        "requests": 1,
        "adopted": 0,
        "resent": 0,
        "spooled": 0,
        "unspooled": 0,
        "dead_letter_lost": 0,
    }
    assert json.loads(json.dumps(stats.as_dict())) == stats.as_dict()


async def test_at_most_once_a_call_waiting_to_be_retried_survives_the_loops_end(fake: FakeRehook) -> None:
    """At most once, a call sleeping before a retry when its loop ends has no request on the wire: it is kept and
    delivered on the next loop, once; only a request in flight may be lost to the loop's end."""
    fake.fail_next(1, status=503, retry_after="30")  # its first attempt fails; the retry waits 30 s
    client = fake.client(retry=RetryPolicy(), delivery=Delivery.AT_MOST_ONCE)
    handle: list[EventHandle] = []

    def first_loop() -> None:
        async def use() -> None:
            handle.append(client.track("e", user_id="u1"))
            await wait_until(lambda: client.stats().retried == 1)  # answered 503, now asleep before the retry

        asyncio.run(use())

    await asyncio.to_thread(first_loop)
    assert not handle[0].done()
    outcome = await handle[0]  # awaiting it here starts the client on this loop
    assert outcome.delivered
    await client.aclose()
    assert fake.duplicates == 0
    assert [r.status for r in fake.requests] == [503, 200]
