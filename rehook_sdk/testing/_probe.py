"""
`LoopProbe`: how long an event loop is held between two of its iterations, in CPU time of the loop's thread.

A callback that puts itself back with ``call_soon`` runs once per loop iteration; the thread CPU time between two
runs is what everything else in that iteration took. CPU time rather than wall time: a shared machine's pauses (the
process not scheduled) are not the code's doing, and are not counted.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Self

__all__ = ["LoopProbe"]


class LoopProbe:
    """
    Measures the running loop's iterations while started (``with LoopProbe() as probe:`` inside the loop).

    Attributes:
        iterations: Loop iterations seen.
        longest: The longest stretch, in CPU seconds of the loop's thread.
    """

    def __init__(self) -> None:
        self.iterations = 0
        self.longest = 0.0
        self._last = 0.0
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """
        Start measuring, from a coroutine or callback running in the loop.
        """
        self._loop = asyncio.get_running_loop()
        self._last = time.thread_time()
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        """
        Stop measuring.
        """
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = time.thread_time()
        stretch = now - self._last
        if stretch > self.longest:
            self.longest = stretch
        self.iterations += 1
        self._last = now
        assert self._loop is not None
        self._handle = self._loop.call_soon(self._tick)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
