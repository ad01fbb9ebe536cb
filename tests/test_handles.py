"""
Handles belong to the caller: the SDK keeps no per-call object alive for the garbage collector to scan.
"""

from __future__ import annotations

import asyncio
import gc

from rehook_sdk import RehookClient
from rehook_sdk._client import delivery_engine
from rehook_sdk.testing import FakeRehook

from .helpers import wait_until


async def test_fire_and_forget_leaves_nothing_behind(client: RehookClient) -> None:
    """A handle nobody keeps is freed at once; its outcome is counted and logged, and nothing is kept for it."""
    for i in range(50):
        _ = client.track("e", {"i": i}, user_id="u1")
    del _  # the last handle, bound to the loop variable
    await client.flush()

    board = delivery_engine(client).board
    assert client.stats().delivered == 50
    assert board.held() == (0, 0, 0, 0)


async def test_a_kept_handle_keeps_its_outcome_until_it_goes(client: RehookClient) -> None:
    """The outcome stays readable while the handle exists and is forgotten with it."""
    handle = client.track("e", user_id="u1")
    await client.flush()
    board = delivery_engine(client).board

    outcome = handle.outcome
    assert outcome is not None
    assert outcome.delivered
    assert handle.done()
    assert handle.message_id == outcome.message_id
    assert board.held()[1] == 1
    del handle
    assert board.held()[1] == 0


async def test_callbacks_run_for_dropped_handles(client: RehookClient) -> None:
    """A callback runs even when the caller kept no handle."""
    seen: list[str] = []
    for _ in range(5):
        _ = client.track("e", None, None, lambda o: seen.append(o.status.value), user_id="u1")
    await client.flush()
    assert seen == ["delivered"] * 5


async def test_a_backlog_adds_no_objects_for_the_garbage_collector(fake: FakeRehook) -> None:
    """10,000 queued fire-and-forget calls add (almost) no GC-tracked objects: full collections stay short."""
    fake.hang_next(1)
    async with fake.client(concurrency=1, max_queue_size=20_000) as client:
        _ = client.track("first", user_id="u1")
        await wait_until(lambda: client.stats().in_flight == 1)

        def queue(n: int) -> int:
            gc.collect()
            before = len(gc.get_objects())
            for i in range(n):
                _ = client.track("Product Viewed", {"product_id": "p1", "price": 18.99, "n": i}, user_id="u1")
            gc.collect()
            return len(gc.get_objects()) - before

        queue(1_000)  # first use fills caches (abc registries and the like) once
        added = queue(10_000)
        assert client.stats().in_queue == 11_000
        # One per queued call would be 10,000; what is left is one-time noise (interpreter caches, the tail chunk).
        assert added < 1_000, added
        await client.aclose(timeout=0)


async def test_unobserved_delivered_calls_are_counted_without_an_outcome(fake: FakeRehook) -> None:
    """Fire and forget with nothing waiting (no flush): no Outcome is built for nobody, yet every call is counted."""
    async with fake.client() as client:
        for i in range(200):
            _ = client.track("e", {"i": i}, user_id="u1")
        del _
        await wait_until(lambda: client.stats().delivered == 200)  # no flush(): nothing observes these calls
        stats = client.stats()
        assert (stats.accepted, stats.in_queue, stats.in_flight) == (200, 0, 0)
        board = delivery_engine(client).board
        assert board.held()[:2] == (0, 0)
    assert len(fake.requests) == 200


async def test_aclose_ends_when_the_last_unobserved_call_is_delivered(fake: FakeRehook) -> None:
    """aclose() drains fire-and-forget calls and returns once the last one is delivered (not at a deadline)."""
    client = fake.client(concurrency=4)
    await client.start()
    for i in range(300):
        _ = client.track("e", {"i": i}, user_id="u1")
    del _
    await asyncio.wait_for(client.aclose(timeout=None), 30)  # a liveness bound: it would otherwise wait forever
    assert client.stats().delivered == 300
