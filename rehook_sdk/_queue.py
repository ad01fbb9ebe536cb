"""
The bounded in-process queue between callers and the sender tasks.

A `collections.deque` rather than `asyncio.Queue`: appends are atomic under the GIL, so a call from another
thread (or before any loop exists) can enqueue directly, and the caller's path stays a length check and an
append. Sender tasks sleep on futures of the loop they run in; a put from another thread wakes them through
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["EventQueue"]

T = TypeVar("T")


class EventQueue(Generic[T]):
    """
    A FIFO with a maximum size; ``put`` from any thread, ``get`` from tasks of one event loop.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_scheduled = False

    def __len__(self) -> int:
        return len(self._items)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Tie the consumer side to ``loop``; items put before this are served once getters run.
        """
        self._loop = loop

    def put_on_loop(self, item: T) -> bool:
        """
        Append from the consumer loop's own thread. Returns False when full.
        """
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        getters = self._getters
        while getters:
            fut = getters.popleft()
            if not fut.done():
                fut.set_result(None)
                break
        return True

    def put_threadsafe(self, item: T) -> bool:
        """
        Append from any other thread (or before the queue is bound). Returns False when full.

        The length check can let a few more items in than ``maxsize`` when threads race; it never loses one.
        """
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        loop = self._loop
        if loop is not None and not self._wake_scheduled:
            # The flag is reset by _wake before it looks at the items, so an item appended before a reader saw
            # the flag set is always seen by that _wake.
            self._wake_scheduled = True
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed; the client reports what it holds when it closes
                self._wake_scheduled = False
        return True

    def _wake(self) -> None:
        self._wake_scheduled = False
        waiting = len(self._items)
        getters = self._getters
        while waiting and getters:
            fut = getters.popleft()
            if not fut.done():
                fut.set_result(None)
                waiting -= 1

    async def get(self) -> T:
        """
        Remove and return the oldest item, waiting for one if needed.
        """
        items = self._items
        while not items:
            loop = self._loop
            assert loop is not None, "EventQueue.get() before bind()"
            fut: asyncio.Future[None] = loop.create_future()
            self._getters.append(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                # If we were woken and cancelled at once, pass the wake-up on so no item waits for nobody.
                if items and self._getters:
                    self._wake()
                raise
        return items.popleft()

    def snapshot(self) -> list[T]:
        """
        The items now queued, oldest first (a copy).
        """
        return list(self._items)

    def take_all(self) -> list[T]:
        """
        Remove and return every queued item.
        """
        taken: list[T] = []
        items = self._items
        while items:
            taken.append(items.popleft())
        return taken
