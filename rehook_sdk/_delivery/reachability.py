"""
Whether Rehook can be reached, shared by all sender tasks of a client.

When several attempts in a row could not connect (refused, unreachable, DNS, TLS handshake: the request never
left), Rehook counts as unreachable: one sender at a time probes, the others wait for its result instead of
retrying on their own, and a failed probe counts as a failed attempt for every call that waited on it. So a call's
``max_attempts`` still bounds how long it waits, while Rehook (or whatever is in the way) sees one connection attempt
at a time instead of one per sender. The probe waits the shared backoff between attempts. Any answer, of any
status, or a failure after connecting, makes Rehook reachable again and wakes every waiting call to send.
"""

from __future__ import annotations

import asyncio
import enum

from .._core.retry import Backoff, RetryPolicy
from .._transports import Attempt

__all__ = ["UNREACHABLE_AFTER", "Reachability", "Turn"]

# Attempts in a row that could not connect before the senders share one probe.
UNREACHABLE_AFTER = 3


class Turn(enum.Enum):
    """
    What a call waiting at the gate may do next (besides counting a failed probe).
    """

    PROBE = "probe"
    """Send: this call is the probe."""
    SEND = "send"
    """Send: Rehook is reachable again."""


class Reachability:
    """
    The senders' shared view of whether Rehook can be reached (used from one event loop).
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._in_a_row = 0
        self._probing = False
        self._backoff: Backoff | None = None
        self._waiters: list[asyncio.Future[Turn | Attempt]] = []  # calls waiting for a turn to send
        self._watchers: list[asyncio.Future[Turn | Attempt]] = []  # only waiting for the next probe's result

    @property
    def down(self) -> bool:
        """
        True while Rehook counts as unreachable.
        """
        return self._in_a_row >= UNREACHABLE_AFTER

    def note(self, attempt: Attempt) -> None:
        """
        Every attempt's result, from every sender.
        """
        if attempt.unreachable:
            self._in_a_row += 1
            return
        if self._in_a_row:
            was_down = self.down
            self._in_a_row = 0
            self._backoff = None
            if was_down:
                self._probing = False
                self._wake_all(Turn.SEND)

    async def wait(self) -> Turn | Attempt:
        """
        While Rehook is unreachable: `Turn.PROBE` at once if nobody probes (the caller probes now); else wait for
        the probe, and get `Turn.SEND` (reachable again) or the probe's failed `Attempt` (count it, then wait again).
        """
        if not self._probing:
            self._probing = True
            return Turn.PROBE
        future: asyncio.Future[Turn | Attempt] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return await future

    def watch(self) -> asyncio.Future[Turn | Attempt]:
        """
        A future for the next probe's result, without asking for a turn (never made the probe).
        """
        future: asyncio.Future[Turn | Attempt] = asyncio.get_running_loop().create_future()
        self._watchers.append(future)
        return future

    async def probe_failed(self, attempt: Attempt) -> None:
        """
        The probe could not connect: tell the waiting calls, then wait the shared backoff before the next probe.
        """
        self._wake_all(attempt)
        self._backoff = self._backoff or Backoff(self._policy)
        await asyncio.sleep(self._backoff.next_wait())

    def release(self) -> None:
        """
        The probing call ended (delivered, failed or cancelled): a waiting call probes next.
        """
        if not self._probing:
            return
        while self._waiters:
            future = self._waiters.pop(0)
            if not future.done():
                future.set_result(Turn.PROBE)
                return
        self._probing = False

    def _wake_all(self, result: Turn | Attempt) -> None:
        waiters, self._waiters, self._watchers = [*self._waiters, *self._watchers], [], []
        for future in waiters:
            if not future.done():
                future.set_result(result)
