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
  its retry, see `_core/retry.py`), whatever the limit.
- A refusal of a request sent with at most half as many in flight as requests Rehook accepted in the last second
  is a *rate* limit, not a concurrency limit: fewer requests in flight did not stop the refusals. The limit goes
  back to where requests were accepted, and `_pacing.Pacer` spaces the requests instead; from then on refusals cut
  the rate, and latency and timeouts still cut the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from .pacing import Pacer

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
# The most requests in flight with which an accepted request was sent is kept per _PEAK_WINDOW seconds (this window's
# and the last one's).
_PEAK_WINDOW = 0.5


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
        self.pacer = Pacer()
        self._peak = 0  # the most in flight an accepted request was sent with: this window
        self._last_peak = 0  # and the last one
        self._peak_until = float("-inf")

    @property
    def permits(self) -> int:
        return max(1, int(self.limit))

    def try_acquire(self) -> bool:
        """
        Take a permit if one is free and no request waits for pacing; else `acquire` must be awaited.
        """
        if self.in_flight < self.permits and not self._waiters and self.pacer.rate is None:
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """
        Wait for a permit (first come, first served), then, while pacing, for the request's slot.
        """
        await self._permit()
        if self.pacer.rate is None:
            return
        loop = asyncio.get_running_loop()
        wait = self.pacer.slot(loop.time())
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            except BaseException:
                self._release_one()  # cancelled while waiting for its slot: the permit goes on
                raise

    async def _permit(self) -> None:
        if self.in_flight < self.permits and not self._waiters:
            self.in_flight += 1
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

    def release(self, started: float, now: float, status: int | None, timed_out: bool, load: int) -> None:
        """
        A request sent at ``started`` with ``load`` requests in flight (itself included) ended at ``now`` (loop
        time), with ``status`` (None: no answer) or a timeout.
        """
        self._adapt(started, now, status, timed_out, load)
        self._release_one()

    def _release_one(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < self.permits:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _adapt(self, started: float, now: float, status: int | None, timed_out: bool, load: int) -> None:
        latency = now - started
        refused = status in _OVERLOAD_STATUSES
        overloaded = timed_out or refused
        floor = self._floor
        pacer = self.pacer
        if refused and pacer.engaged:
            if pacer.refused(started, now):
                logger.debug("pacing: %.1f requests/s (HTTP %s)", pacer.rate, status)
            return
        peak = self._peak_at(now)
        if refused and 2 * load <= peak:
            # Refused with half as many in flight as accepted ones had: the server limits the rate.
            self.limit = max(self.limit, float(peak))
            pacer.engage(now)
            logger.debug("refused at %d in flight, accepted at %d: pacing at %.1f requests/s", load, peak, pacer.rate)
            return
        if status is not None and 200 <= status < 300:
            pacer.accepted(now)
            if load > peak:
                self._peak = max(self._peak, load)
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

    def _peak_at(self, now: float) -> int:
        """
        The most requests in flight an accepted request was sent with, over the last one or two windows.
        """
        if now >= self._peak_until:
            fresh = now - self._peak_until >= _PEAK_WINDOW
            self._last_peak, self._peak = (0 if fresh else self._peak), 0
            self._peak_until = now + _PEAK_WINDOW
        return max(self._peak, self._last_peak)
