"""
The ``rehook_sdk`` log of calls that were not delivered: every reason is logged at once the first time, then at
most one summary line per reason per interval, with counts.

A WARNING per call would make each call of a burst of drops cost the caller ten times more (more with a file
handler) and bury the log in ``queue_full`` lines. Each call's outcome still reaches its handle, its callback,
``on_error``, the counters and the dead-letter file; the log says what happens and how often. With DEBUG enabled on
the logger, every call also gets its own line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from .._core.outcome import Outcome, OutcomeStatus, Reason

__all__ = ["DEFAULT_LOG_INTERVAL", "OutcomeLog", "calls", "fields"]

logger = logging.getLogger("rehook_sdk")

DEFAULT_LOG_INTERVAL = 5.0


class _Tally:
    __slots__ = ("count", "last", "since", "status")

    def __init__(self, status: OutcomeStatus, now: float) -> None:
        self.status = status
        self.last = now  # when this reason was last logged
        self.since = now  # when the calls now counted began
        self.count = 0  # calls not logged yet


def describe(outcome: Outcome) -> str:
    """
    One outcome in a sentence: ``dropped track call (userId='u1'): queue_full: ...``.
    """
    reason = outcome.reason.value if outcome.reason else ""
    return (
        f"{outcome.status.value} {outcome.call.type.value} call (userId={outcome.call.user_id!r}): "
        f"{reason}: {outcome.message}"
    )


class OutcomeLog:
    """
    Logs outcomes that were not delivered, aggregated per reason. Safe from any thread.

    Args:
        interval: Seconds between two lines for the same reason.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, interval: float = DEFAULT_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._tallies: dict[Reason, _Tally] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer_due = False

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """
        Summarise counted calls from a timer on ``loop`` (without one, at the next line or at `flush`).
        """
        self._loop = loop
        self._timer_due = False

    def note(self, outcome: Outcome, *, level: int = logging.WARNING) -> None:
        """
        Log ``outcome`` now if its reason was not logged within the interval, else count it.
        """
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", describe(outcome), extra=fields(outcome))
        if level == logging.DEBUG or not logger.isEnabledFor(level):
            return
        assert outcome.reason is not None
        now = self._clock()
        with self._lock:
            tally = self._tallies.get(outcome.reason)
            if tally is None:
                tally = self._tallies[outcome.reason] = _Tally(outcome.status, now)
            elif now - tally.last < self._interval:
                tally.count += 1
                if tally.count == 1:
                    self._arm_timer()
                return
            count, since = tally.count, tally.since
            tally.count, tally.last, tally.since = 0, now, now
        extra = fields(outcome, count + 1)
        if count:
            logger.warning("%s (and %d more since %.1f s ago)", describe(outcome), count, now - since, extra=extra)
        else:
            logger.warning("%s", describe(outcome), extra=extra)

    def note_many(self, status: OutcomeStatus, reason: Reason, count: int, message: str) -> None:
        """
        Log ``count`` calls that ended alike (the calls ended in bulk at a deadline) in one line.
        """
        if count and logger.isEnabledFor(logging.WARNING):
            extra = {"rehook_status": status.value, "rehook_reason": reason.value, "rehook_count": count}
            logger.warning("%s %s as %s: %s", calls(count), status.value, reason.value, message, extra=extra)

    def flush(self) -> None:
        """
        Log every count not logged yet, one line per reason.
        """
        now = self._clock()
        with self._lock:
            due = [(reason, t.status, t.count, now - t.since) for reason, t in self._tallies.items() if t.count]
            for tally in self._tallies.values():
                if tally.count:
                    tally.count, tally.last, tally.since = 0, now, now
            self._timer_due = False
        for reason, status, count, seconds in due:
            logger.warning(
                "%d more %s %s as %s in the last %.1f s",
                count,
                "call" if count == 1 else "calls",
                status.value,
                reason.value,
                seconds,
                extra={"rehook_status": status.value, "rehook_reason": reason.value, "rehook_count": count},
            )

    def _arm_timer(self) -> None:
        # Under the lock. One timer at a time; it runs on the client's loop, whichever thread counted the call.
        loop = self._loop
        if loop is None or self._timer_due or loop.is_closed():
            return
        self._timer_due = True
        if asyncio._get_running_loop() is loop:
            loop.call_later(self._interval, self.flush)
            return
        try:
            loop.call_soon_threadsafe(loop.call_later, self._interval, self.flush)
        except RuntimeError:  # the loop closed meanwhile: the next line or the close says it
            self._timer_due = False


def calls(count: int) -> str:
    """
    ``"1 call"``, ``"2 calls"``: how every message counts calls.
    """
    return f"{count} call" if count == 1 else f"{count} calls"


def fields(outcome: Outcome, count: int = 1) -> dict[str, object]:
    """
    The structured fields of a record about ``outcome`` (``extra=``): what log processors filter and group on.
    """
    return {
        "rehook_status": outcome.status.value,
        "rehook_reason": outcome.reason.value if outcome.reason is not None else None,
        "rehook_message_id": outcome.message_id,
        "rehook_http_status": outcome.http_status,
        "rehook_count": count,
    }
