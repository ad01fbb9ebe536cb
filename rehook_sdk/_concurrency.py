"""
``concurrency="auto"``: how many requests may be in flight at once, found from Rehook's answers (AIMD, as in
Netflix's concurrency-limits and TCP congestion control).

- Start at `START` (or the maximum, if lower). Until the first sign of overload, every request answered without
  one adds a permit (slow start: the limit doubles per round trip).
- Afterwards a full round trip of such answers closes half the gap to 95% of the limit where overload was last
  seen (at least one permit; BIC-TCP's binary search), and only while there is work waiting for a permit and the
  latency stays near its floor (queueing delay not building up).
- A sign of overload (429, 503, a timeout or lost connection, or a latency far above the floor) multiplies the
  limit by `BACKOFF` (halves it when it ends slow start, which overshoots), at most once per round trip: the
  answers to requests sent before the cut say nothing about the new limit. Near the limit where overload was
  last seen, growth is ten times slower, so that the server is probed rarely (one refusal per ~0.5 * limit round
  trips) while the limit stays within a few percent of what it takes.
- Never below 1 or above ``max_concurrency``. A Retry-After is honoured by the call that got it (it sleeps before
  its retry, see `_retry.py`), whatever the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

__all__ = ["BACKOFF", "START", "Limiter"]

logger = logging.getLogger("rehook_sdk")

START = 8
BACKOFF = 0.9
# A latency this many times its floor, plus _SLACK seconds, counts as overload; growth stops at _GROW_BELOW times.
_OVERLOAD = 3.0
_GROW_BELOW = 2.0
_SLACK = 0.005
_OVERLOAD_STATUSES = frozenset({429, 503})
_WINDOW = 1000


class Limiter:
    """
    Permits for requests in flight, their number adapted to the answers; used from one event loop.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(min(START, maximum))
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._slow_start = True
        self._floor: float | None = None  # the lowest latency seen (in this window and the last)
        self._window_low = float("inf")
        self._window_left = _WINDOW
        self._cut_at = float("-inf")  # when the limit was last cut (loop time)
        self._ceiling = float("inf")  # the limit when overload was last seen

    @property
    def permits(self) -> int:
        return max(1, int(self.limit))

    def try_acquire(self) -> bool:
        if self.in_flight < self.permits and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """
        Wait for a permit (first come, first served).
        """
        if self.try_acquire():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_one()  # granted, then cancelled before it was used: pass it on
            else:
                with contextlib.suppress(ValueError):  # already taken off by a release that skipped it
                    self._waiters.remove(waiter)
            raise

    def release(self, started: float, now: float, status: int | None, timed_out: bool) -> None:
        """
        A request sent at ``started`` ended at ``now`` (loop time), with ``status`` (None: no answer) or a timeout.
        """
        self._adapt(started, now, status, timed_out)
        self._release_one()

    def _release_one(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < self.permits:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _adapt(self, started: float, now: float, status: int | None, timed_out: bool) -> None:
        latency = now - started
        overloaded = timed_out or status in _OVERLOAD_STATUSES
        floor = self._floor
        if status is not None and not overloaded:
            if floor is None or latency < floor:
                self._floor = floor = latency
            # The floor follows a server that became slower for good: every _WINDOW answers it becomes the
            # lowest latency of that window.
            self._window_low = min(self._window_low, latency)
            self._window_left -= 1
            if self._window_left == 0:
                self._floor = floor = self._window_low
                self._window_low, self._window_left = float("inf"), _WINDOW
            if latency > _OVERLOAD * floor + _SLACK:
                overloaded = True
        if overloaded:
            if started >= self._cut_at:  # sent after the last cut: it speaks of the current limit
                self._cut_at = now
                before = self._ceiling = self.limit
                self.limit = max(1.0, self.limit * (0.5 if self._slow_start else BACKOFF))
                self._slow_start = False
                logger.debug(
                    "concurrency %d -> %d (%s)",
                    before,
                    self.limit,
                    "timeout" if timed_out else f"HTTP {status}" if status in _OVERLOAD_STATUSES else "latency",
                )
            return
        if status is None or floor is None:
            return
        busy = self.in_flight >= self.permits or bool(self._waiters)
        if not busy or latency > _GROW_BELOW * floor + _SLACK:
            return
        if self._slow_start:
            step = 1.0
        elif self.limit >= 0.95 * self._ceiling:
            step = 0.1 / self.limit
        else:
            # Back toward where overload was seen: half the way per round trip (BIC-TCP's binary search), at least
            # one permit per round trip.
            step = max(1.0, (0.95 * self._ceiling - self.limit) / 2) / self.limit
        self.limit = min(float(self.maximum), self.limit + step)
