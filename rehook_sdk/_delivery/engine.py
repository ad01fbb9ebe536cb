"""
The delivery engine of one client: builds intake, outcomes, attempts, the sender and adoption over one queue,
starts the sender tasks on a loop, and drains and stops them by a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .._core.entry import entry_call
from .._core.outcome import Outcome, Reason, outcome_for
from .._core.retry import Delivery, RetryPolicy
from .._core.types import Call
from .._durable.deadletter import DeadLetterWriter
from .._durable.spooling import Spooling
from .._durable.spools import SpoolError
from .._mapping.router import Router
from .._report.metrics import metrics_for
from .._report.outcome_log import calls
from .._report.stats import Stats
from .._transports import Attempt, Transport
from . import drain
from .adoption import Adoption
from .attempts import Attempts
from .concurrency import Limiter
from .intake import Intake
from .outcomes import Outcomes
from .queue import EventQueue
from .sender import Sender

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["DeliveryEngine", "deadline_after"]

logger = logging.getLogger("rehook_sdk")


class DeliveryEngine:
    """
    Owns the queue, the parts that deliver from it, and the sender tasks of one client.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        max_queue_size: int,
        concurrency: int,
        router: Router,
        retry: RetryPolicy,
        delivery: Delivery,
        on_error: Callable[[Outcome], object] | None,
        dead_letter: DeadLetterWriter | None = None,
        before_send: Callable[[Call], Call | None] | None = None,
        defaults: Callable[[Call], Call] | None = None,
        meter_provider: MeterProvider | None = None,
        metrics_name: str = "",
        adaptive: bool = False,
        open_spool: Callable[[], Spooling] | None = None,
        tokens: Callable[[], int] | None = None,
    ) -> None:
        self.queue = queue = EventQueue(max_queue_size)
        self.outcomes = outcomes = Outcomes(queue, on_error, dead_letter)
        self.board = outcomes.board
        self.counters = outcomes.counters
        self.intake = Intake(queue, outcomes)
        self.metrics = outcomes.metrics = metrics_for(
            meter_provider, metrics_name, outcomes.counters, queue, max_queue_size, outcomes.in_flight
        )
        self.transport = transport
        self.limiter = Limiter(concurrency) if adaptive else None
        self.attempts = Attempts(transport, retry, delivery, outcomes.counters, self.limiter, self.metrics)
        self._concurrency = concurrency  # sender tasks; with adaptive concurrency, its maximum
        self._router = router
        self._before_send = before_send
        self._defaults = defaults
        self._sender: Sender | None = None  # made by start()
        self._tasks: set[asyncio.Task[None]] = set()
        self._live = 0
        self._lost_base = 0
        # With a spool: opened when the client starts (no file, connection or thread before), by `open_spool`.
        self._open_spool = open_spool
        self.spooling: Spooling | None = None
        self.adoption: Adoption | None = None  # with a spool, once it is open
        self._tokens = tokens
        if open_spool is not None:
            self.board.persist = self._persist

    # -- the spool ---------------------------------------------------------------------------------------

    def open_spool(self) -> Spooling | None:
        """
        Open the spool, if there is one and it is not open yet, without waiting for its connection (its writer
        thread makes it), and spool the calls accepted before it: from the thread the caller accepts calls from,
        holding the client's lock, before the senders start.
        """
        if self.spooling is None and self._open_spool is not None:
            spooling = self._open_spool()
            for meta, data in self.queue.snapshot():
                spooling.accepted(meta, data)
            self._use_spool(spooling)
        return self.spooling

    def forget_spool(self) -> Spooling | None:
        """
        Let go of a spool that could not be opened, before the senders started (the caller closes it): the calls
        stay queued in memory, and the next start opens it again.
        """
        spooling = self.spooling
        self._use_spool(None)
        return spooling

    def _use_spool(self, spooling: Spooling | None) -> None:
        self.spooling = self.outcomes.spooling = self.intake.spooling = self.attempts.spooling = spooling
        self.adoption = None
        if spooling is not None:
            assert self._tokens is not None
            self.adoption = Adoption(spooling, self.queue, self.outcomes, self.attempts.delivery, self._tokens)

    def _persist(self) -> concurrent.futures.Future[None]:
        spooling = self.spooling
        if spooling is not None:
            return spooling.spool.sync()
        failed: concurrent.futures.Future[None] = concurrent.futures.Future()
        failed.set_exception(
            SpoolError("the client has not started: its spool opens when it starts (start(), async with, a call)")
        )
        return failed

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Bind to ``loop`` and start the sender tasks (from a coroutine or callback running in ``loop``).

        Also starts over on a new loop after the previous one closed without `stop`: its tasks and connections went
        with it; calls still marked in flight there (a loop closed without cancelling its tasks) end as
        ``shutdown_timeout``, and queued calls are sent from this loop.
        """
        self.open_spool()
        self._tasks.clear()
        self.outcomes.end_in_flight("the event loop this call was sent from closed before it was answered")
        self.outcomes.idle = None
        self.transport.rebind()
        self.queue.bind(loop)
        self.outcomes.log.bind(loop)
        # Only a shutdown ends calls as shutdown_timeout: what a loop's end costs is counted from here.
        self._lost_base = self.counters.count(Reason.SHUTDOWN_TIMEOUT)
        self._live = self._concurrency
        self._sender = sender = Sender(
            self.queue, self._router, self.attempts, self.outcomes, self.spooling, self._before_send, self._defaults
        )
        for i in range(self._concurrency):
            self._tasks.add(loop.create_task(self._serve(sender), name=f"rehook-sender-{i}"))
        if self.spooling is not None and self.adoption is not None:
            self.spooling.bind(loop)
            self._tasks.add(loop.create_task(self.adoption.adopt_forever(), name="rehook-spool-adopter"))

    def stats(self) -> Stats:
        spooling = self.spooling
        spooled, unspooled = (spooling.spool.rows, spooling.spool.uncommitted) if spooling is not None else (0, 0)
        if self._open_spool is not None and spooling is None:
            unspooled = len(self.queue)  # accepted before the start, which spools them
        dead_letter = self.outcomes.dead_letter
        return self.counters.snapshot(
            in_queue=len(self.queue),
            in_flight=len(self.outcomes.in_flight),
            spooled=spooled,
            unspooled=unspooled,
            dead_letter_lost=dead_letter.lost if dead_letter is not None else 0,
        )

    def pending_count(self) -> int:
        """
        How many calls have no outcome yet; safe from any thread.
        """
        return len(self.outcomes.in_flight) + len(self.queue)

    def pending(self) -> list[int]:
        """
        The tokens of every call accepted so far that has no outcome yet.
        """
        return [*self.outcomes.in_flight, *self.queue.tokens()]

    async def wait_for(self, tokens: Iterable[int], deadline: float | None) -> int:
        """
        Wait until every token's call has its outcome or the loop's clock reaches ``deadline``.

        Returns:
            How many of them still have no outcome.
        """
        countdown = self.board.countdown(tokens)
        try:
            if countdown.tokens:
                loop = asyncio.get_running_loop()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(countdown.future), timeout)
            return len(countdown.tokens)
        finally:
            self.board.forget(countdown)

    def note_auth_failure(self, attempt: Attempt) -> None:
        """
        Rehook refused the credentials: fail every queued and later call without sending it.
        """
        self.attempts.note_auth_failure(attempt)

    # -- the drain ---------------------------------------------------------------------------------------

    async def stop(self, deadline: float | None) -> int:
        """
        Deliver what is queued until ``deadline``, then end the rest as ``shutdown_timeout``; stop the tasks.

        Everything after the drain fits before ``deadline`` too: the drain stops early by the time that ending the
        calls left over will take, which yields to the loop between chunks, logs one line per reason and hands the
        dead-letter lines to the writer thread in bulk.

        Returns:
            How many calls ended as ``shutdown_timeout``.
        """
        loop = asyncio.get_running_loop()
        before = self.counters.count(Reason.SHUTDOWN_TIMEOUT)
        left = self.pending_count()
        if left:
            dead_letter = self.outcomes.dead_letter is not None
            reserve = 0.0 if deadline is None else drain.reserve(left, deadline - loop.time(), dead_letter)
            await drain.until_idle(self.outcomes, self.attempts.gate, None if deadline is None else deadline - reserve)
        if self._sender is not None:
            self._sender.stopping = True
        # Cancelling a sender ends the call it holds (sending or sleeping before a retry) as shutdown_timeout.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await drain.end_left_over(self.queue, self.outcomes)
        await self.transport.close()
        # The spool commits what is appended and lets the calls left go, for the next client: a few ms of commit.
        spool_timeout = None if deadline is None else max(1.0, deadline - loop.time())
        if self.spooling is not None and not self.spooling.close(timeout=spool_timeout):
            logger.warning("the spool %s was still committing when aclose() returned", self.spooling.path)
        if self.outcomes.dead_letter is not None:
            await drain.close_dead_letter(self.outcomes.dead_letter, deadline)
        return self.counters.count(Reason.SHUTDOWN_TIMEOUT) - before

    def close_dead_letter(self, timeout: float) -> int:
        """
        Block until the dead-letter file is written and closed, at most ``timeout`` seconds (for the exit drain,
        after which nothing would wait for the writer thread).

        Returns:
            Lines still unwritten.
        """
        dead_letter = self.outcomes.dead_letter
        return dead_letter.close(timeout) if dead_letter is not None else 0

    @property
    def dead_letter_path(self) -> str | None:
        dead_letter = self.outcomes.dead_letter
        return dead_letter.path if dead_letter is not None else None

    # -- a fork, and a loop that ends without stop() -----------------------------------------------------

    def left_with_parent(self) -> None:
        """
        In a forked child, on the parent's engine: end the child's copies of the parent's queued and in-flight
        calls as dropped ``forked``, so that a handle awaited in the child resolves instead of hanging.

        The parent still sends these calls and reports them (callbacks, counters, logs, dead letter); the child
        only resolves its handles and waiters: no callback, no counter, no log line, nothing sent.
        """
        self.queue.reset_lock()
        self.board.reset_lock()
        entries = self.queue.take_all()
        in_flight = self.outcomes.in_flight
        stranded = list(in_flight.items())
        in_flight.clear()
        message = "queued before os.fork(): the parent process sends it and knows its outcome"
        for token, call in [*((m[0], entry_call(m, d)) for m, d in entries), *stranded]:
            self.board.resolve(token, call, outcome_for(call, Reason.FORKED, message), run_callback=False)

    async def _serve(self, sender: Sender) -> None:
        try:
            await sender.serve()
        except asyncio.CancelledError:
            if not sender.stopping:
                self._live -= 1
                if self._live == 0:
                    await self._loop_ended()
            raise

    async def _loop_ended(self) -> None:
        """
        The event loop is shutting down without aclose() (asyncio.run() ending): the senders were cancelled.

        Queued calls stay queued, to be sent when the client is next used on a running loop, or by the drain at
        interpreter exit; so do the calls the senders held (see `Sender`), except, at most once, those whose request
        was on the wire: they ended as ``shutdown_timeout`` (Rehook may have received them). The session is closed
        while the loop still runs. A visible warning only when calls were lost.
        """
        lost = self.counters.count(Reason.SHUTDOWN_TIMEOUT) - self._lost_base
        queued = len(self.queue)
        self.outcomes.log.flush()
        await self.transport.close()
        if queued:
            logger.warning(
                "the event loop stopped without aclose(); %s still queued, kept for this client's next event "
                "loop or the interpreter's exit",
                calls(queued),
            )
        if lost:
            message = (
                f"the event loop stopped without aclose(); {calls(lost)} in flight failed as shutdown_timeout "
                "(Rehook may have received them)"
            )
            logger.warning("%s", message)
            warnings.warn(
                f"unclosed RehookClient: {message}. Use 'async with RehookClient(...)' or 'await client.aclose()'.",
                RuntimeWarning,
                stacklevel=1,
            )


def deadline_after(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    """
    The loop-clock deadline ``timeout`` seconds from now; ``None`` means wait without limit.
    """
    if timeout is None or math.isinf(timeout):
        return None
    return loop.time() + max(0.0, timeout)
