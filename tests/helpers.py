from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rehook_sdk import EventHandle
from rehook_sdk.testing import FakeRehook


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """
    Poll ``condition`` until it holds; fail the test after ``timeout`` seconds.

    For state that has no event to wait on (what the fake received, a counter).
    """
    async with asyncio.timeout(timeout):
        # Polling is right here: what the fake received or a counter has no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


@contextlib.contextmanager
def fake_in_thread(**settings: Any) -> Iterator[FakeRehook]:
    """
    A FakeRehook served by its own event loop in a background thread, for tests of blocking (sync) code.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-rehook", daemon=True)
    thread.start()
    fake = FakeRehook(**settings)
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def start_tracking_threads(
    track: Callable[..., EventHandle], threads: int, calls: int
) -> tuple[list[threading.Thread], list[EventHandle]]:
    """
    Start ``threads`` plain threads that each make ``calls`` track() calls; return them and (once they are
    joined) every handle. The caller joins them: blocking in sync tests, through ``asyncio.to_thread`` in async ones.
    """
    handles: list[EventHandle] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(calls):
            handle = track("e", {"i": i}, user_id=f"t{n}")
            with lock:
                handles.append(handle)

    started = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in started:
        thread.start()
    return started, handles
