"""
Adoption: takes over the calls in a spool that no live client owns (left by an earlier client, or by a process
that died) as the queue has room, and the failed calls ``rehook send --from-spool`` replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .._core import exiting
from .._core.entry import Data, Meta, queued
from .._core.outcome import Reason, outcome_for
from .._core.retry import Delivery
from .._durable.spooling import ADOPT_BATCH, Spooling
from .._durable.spools import Adopted, Replay, SpoolError, SpoolState
from .._report.outcome_log import calls
from .outcomes import Outcomes
from .queue import EventQueue

__all__ = ["Adoption"]

logger = logging.getLogger("rehook_sdk")


class Adoption:
    """
    Takes calls over from one client's spool into its queue.
    """

    def __init__(
        self,
        spooling: Spooling,
        queue: EventQueue,
        outcomes: Outcomes,
        delivery: Delivery,
        tokens: Callable[[], int],
    ) -> None:
        self.last_adopted: int | None = None  # calls the last adoption took (None: none has run yet)
        self._spooling = spooling
        self._queue = queue
        self._outcomes = outcomes
        self._delivery = delivery
        self._tokens = tokens
        self._adopt_now: asyncio.Event | None = None  # set: the adopter looks again at once
        self._started = 0  # rounds started
        self._counted_after = 0  # `last_adopted` reports only rounds started after this many (see adopt_soon)

    async def adopt_forever(self) -> None:
        """
        Take over calls nobody live owns in the spool, as the queue has room: at start, then every half lease,
        sooner after a round that took some, and at once when the spool says calls nobody owns were written
        (PostgreSQL's NOTIFY: `rehook_sdk.outbox`, a client closing).
        """
        spooling = self._spooling
        if exiting.draining:
            return  # the interpreter is exiting: deliver what this process accepted, not more
        every = max(spooling.lease / 2, 0.05)
        heard = self._adopt_now = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_new_calls() -> None:  # in the spool's listener thread
            with contextlib.suppress(RuntimeError):  # this loop has closed: the next one's adopter listens
                loop.call_soon_threadsafe(heard.set)

        spooling.spool.on_new_calls = on_new_calls
        while True:
            heard.clear()  # a notification from here on makes another round
            more = await self._round()
            if more:
                await asyncio.sleep(0.05)
            else:
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancel (aclose() stopping
                # this task) that comes as the notification sets the event, and the task then waits a half lease.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every):
                        await heard.wait()

    async def _round(self) -> bool:
        """
        One look at the spool; whether to look again soon (it took some, or the queue had no room).
        """
        limit = self._room()
        if limit <= 0:
            return True
        self._started += 1
        this = self._started
        try:
            taken = await asyncio.wrap_future(self._spooling.adopt(limit, self._tokens))
        except SpoolError as exc:
            logger.warning("could not take calls over from the spool: %s", exc)
            taken = []
        self._take(taken)
        if this > self._counted_after:
            self.last_adopted = len(taken)
        return bool(taken)  # look again soon: more may be waiting (or may come: a batch, a restart)

    def adopt_soon(self) -> None:
        """
        Look for calls to take over at once rather than at the next half lease: for ``rehook relay --once``, after
        it looked at what others hold. `last_adopted` is ``None`` until a round that started after this call has
        run (a round already under way looked at the spool before, and does not count).
        """
        self.last_adopted = None
        self._counted_after = self._started
        if self._adopt_now is not None:
            self._adopt_now.set()

    async def replay_failed(self, replay: Replay) -> int:
        """
        Take the spool's next failed calls (after ``replay.after``) to send again, as many as the queue has room
        for (none when it has none); how many were taken. ``replay`` says how far that got.
        """
        limit = self._room()
        if limit <= 0:
            return 0
        taken = await asyncio.wrap_future(self._spooling.adopt(limit, self._tokens, replay=replay))
        self._take(taken)
        return len(taken)

    def _room(self) -> int:
        return min(self._queue.maxsize - len(self._queue), ADOPT_BATCH)

    def _take(self, taken: list[tuple[int, Adopted]]) -> None:
        spooling = self._spooling
        counters = self._outcomes.counters
        entries: list[tuple[Meta, Data]] = []
        for token, adopted in taken:
            call = adopted.call
            counters.adopted += 1
            if adopted.state is SpoolState.SENDING:
                if self._delivery is Delivery.AT_MOST_ONCE:
                    message = (
                        "taken over from the spool of a process that died with a request for it on the wire; not "
                        "sent again (delivery=at_most_once): Rehook may have it"
                    )
                    outcome = outcome_for(
                        call, Reason.INTERRUPTED, message, message_id=call.message_id, maybe_delivered=True
                    )
                    self._outcomes.finish(token, call, outcome)
                    continue
                spooling.resent.add(token)
                counters.resent += 1
            entries.append((queued(token, call), None))
        if entries:
            logger.info("took %s over from the spool %s", calls(len(entries)), spooling.path)
            self._queue.put_front(entries)
