"""
The bounded in-process queue between callers and the sender tasks.

Each queued call is two plain values kept in two lanes: a tuple of ints and strings (its token and fields, or
its `Call` on the general path) and the properties dict (or None). Neither is an object the garbage collector must
scan on every full collection: the tuple is untracked at the first collection that looks at it, and a dict of
plain values is never tracked. (A tuple that holds a dict would stay tracked, hence the two lanes.)

The lanes are sealed into tuples of 256 entries. A full collection walks every element of a container it tracks,
untracked or not, so a backlog of 100,000 calls in plain deques would add 200,000 entries to every full collection;
a sealed tuple of untracked entries is itself untracked, and the collector sees a few hundred chunks instead. The
price on the caller's path is a list append and a counter per call.

A `collections.deque` rather than `asyncio.Queue`: a call from another thread, or made before any loop runs, can
enqueue directly. Both lanes change under one short lock, taken only around the appends and pops. Sender tasks
sleep on futures of the loop they run in; a put from another thread wakes them through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator, Sequence

from .._core.entry import Data, Entry, Meta

__all__ = ["EventQueue"]

_CHUNK = 256


class EventQueue:
    """
    A FIFO of calls with a maximum size; ``put`` from any thread, ``get`` from tasks of one event loop.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._lock = threading.Lock()
        # The lanes (see the module's docstring), changed only under the lock: sealed chunks, the chunk being
        # read (a sealed tuple, or the tail lists it took over) and how far, and the tail being filled.
        self._chunks: deque[tuple[tuple[Meta, ...], tuple[Data, ...]]] = deque()
        self._head_meta: Sequence[Meta] = ()
        self._head_data: Sequence[Data] = ()
        self._pos = 0
        self._tail_meta: list[Meta] = []
        self._tail_data: list[Data] = []
        # Calls put back at the front (their request was cut by the loop's end): taken before everything else.
        self._front: deque[Entry] = deque()
        self._size = 0
        self._getters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_scheduled = False
        # At most one idle sender is being woken at a time; each woken sender wakes the next if calls remain. A
        # burst then starts the senders one loop iteration apart instead of all 64 in one iteration (which held
        # the event loop for ~10 ms, each sender building its first request).
        self._waking = False

    def __len__(self) -> int:
        return self._size

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Tie the consumer side to ``loop``; calls put before this are served once getters run.
        """
        self._loop = loop

    def _append(self, meta: Meta, data: Data) -> bool:
        # On the caller's path: written out here rather than in a helper (each Python-level call costs ~0.1 us).
        with self._lock:
            if self._size >= self.maxsize:
                return False
            tail_meta = self._tail_meta
            tail_meta.append(meta)
            self._tail_data.append(data)
            self._size += 1
            if len(tail_meta) == _CHUNK:
                self._chunks.append((tuple(tail_meta), tuple(self._tail_data)))
                self._tail_meta, self._tail_data = [], []
            return True

    def _popleft(self) -> Entry:
        # Under the lock, with at least one entry queued.
        if self._front:
            self._size -= 1
            return self._front.popleft()
        pos = self._pos
        if pos == len(self._head_meta):
            if self._chunks:
                self._head_meta, self._head_data = self._chunks.popleft()
            else:
                self._head_meta, self._head_data = self._tail_meta, self._tail_data
                self._tail_meta, self._tail_data = [], []
            pos = 0
        entry = self._head_meta[pos], self._head_data[pos]
        self._size -= 1
        if self._size:
            self._pos = pos + 1
        else:  # let go of the last chunk's entries (and their properties) while the queue is idle
            self._clear()
        return entry

    def _entries(self) -> Iterator[Entry]:
        # Under the lock: every queued entry, oldest first.
        yield from self._front
        yield from zip(self._head_meta[self._pos :], self._head_data[self._pos :], strict=True)
        for metas, datas in self._chunks:
            yield from zip(metas, datas, strict=True)
        yield from zip(self._tail_meta, self._tail_data, strict=True)

    def _clear(self) -> None:
        self._front.clear()
        self._chunks.clear()
        self._head_meta = self._head_data = ()
        self._pos = 0
        self._tail_meta, self._tail_data = [], []
        self._size = 0

    def put_on_loop(self, meta: Meta, data: Data) -> bool:
        """
        Append from the consumer loop's own thread. Returns False when full.
        """
        if not self._append(meta, data):
            return False
        if not self._waking:
            self._wake_one()
        return True

    def _wake_one(self) -> None:
        getters = self._getters
        while getters:
            fut = getters.popleft()
            if not fut.done():
                fut.set_result(None)
                self._waking = True
                return

    def put_threadsafe(self, meta: Meta, data: Data) -> bool:
        """
        Append from any other thread (or before the queue is bound). Returns False when full.
        """
        if not self._append(meta, data):
            return False
        loop = self._loop
        if loop is not None and not self._wake_scheduled:
            # The flag is reset by _wake before it looks at the lanes, so a call appended before a reader saw the
            # flag set is always seen by that _wake.
            self._wake_scheduled = True
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed; the client reports what it holds when it closes
                self._wake_scheduled = False
        return True

    def _wake(self) -> None:
        self._wake_scheduled = False
        if self._size and not self._waking:
            self._wake_one()

    async def get(self) -> Entry:
        """
        Remove and return the oldest call, waiting for one if needed.
        """
        while True:
            with self._lock:
                if self._size > 0:
                    entry = self._popleft()
                    more = self._size > 0
                    break
            loop = self._loop
            assert loop is not None, "EventQueue.get() before bind()"
            fut: asyncio.Future[None] = loop.create_future()
            self._getters.append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    # Woken, then cancelled before running: pass the wake-up on so no call waits for nobody.
                    self._waking = False
                    if self._size > 0:
                        self._wake_one()
                fut.cancel()
                raise
            self._waking = False
        if more and not self._waking:
            self._wake_one()
        return entry

    def put_front(self, entries: Sequence[Entry]) -> None:
        """
        Put calls at the front, in order, past ``maxsize`` if need be, and wake a getter (from the consumer loop's
        thread): calls taken over from a spool, delivered before what is queued.
        """
        with self._lock:
            self._front.extendleft(reversed(entries))
            self._size += len(entries)
        if not self._waking:
            self._wake_one()

    def requeue(self, meta: Meta, data: Data) -> None:
        """
        Put an accepted call back at the front, past ``maxsize`` if need be (from the consumer loop's thread).
        """
        with self._lock:
            self._front.append((meta, data))
            self._size += 1

    def snapshot(self) -> list[Entry]:
        """
        The calls now queued, oldest first, left in the queue.
        """
        with self._lock:
            return list(self._entries())

    def tokens(self) -> list[int]:
        """
        The tokens of the calls now queued.
        """
        with self._lock:
            return [meta[0] for meta, _ in self._entries()]

    def reset_lock(self) -> None:
        """
        In a forked child: a fresh lock, since a thread of the parent may have held the old one at the fork.
        """
        self._lock = threading.Lock()

    def take_chunks(self) -> list[tuple[Sequence[Meta], Sequence[Data]]]:
        """
        Remove every queued call and return them as they are kept, in chunks of up to 256 (oldest first), without
        building one list of them all (100,000 entries took ~28 ms in one stretch).
        """
        with self._lock:
            front = (tuple(m for m, _ in self._front), tuple(d for _, d in self._front))
            taken = [front, (self._head_meta[self._pos :], self._head_data[self._pos :]), *self._chunks]
            taken.append((self._tail_meta, self._tail_data))
            self._clear()
        return [chunk for chunk in taken if chunk[0]]

    def take_all(self) -> list[Entry]:
        """
        Remove and return every queued call.
        """
        with self._lock:
            taken = list(self._entries())
            self._clear()
        return taken
