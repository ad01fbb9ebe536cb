"""
The background side: sender tasks take calls off the queue, check Rehook's rules, map, deliver with retries,
and end each call in exactly one `Outcome`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import random
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

import attrs

from . import _exit
from ._concurrency import Limiter
from ._deadletter import MAX_BACKLOG, DeadLetterWriter
from ._encoding import safe_repr
from ._handle import Board, entry_call
from ._mapping.actions import Request
from ._mapping.mappings import CompiledMapping
from ._mapping.router import Router
from ._metrics import metrics_for
from ._outcome import ActionResult, Outcome, OutcomeStatus, Reason
from ._outcome_log import OutcomeLog, calls
from ._proof import Next, judge
from ._queue import Data, EventQueue, Meta
from ._reachability import Reachability, Turn
from ._retry import Backoff, Delivery, RetryPolicy
from ._spooling import ADOPT_BATCH, Spooling, TakenOver
from ._spools import Adopted, Replay, SpoolError, SpoolState
from ._stats import Counters, Stats
from ._transports import Attempt, Transport
from ._types import Call

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["Flusher"]

logger = logging.getLogger("rehook_sdk")


class Flusher:
    """
    Owns the queue, the sender tasks, the transport and the counters of one client.
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
        self.queue = EventQueue(max_queue_size)
        self.board = Board()
        self.counters = Counters()
        self.transport = transport
        self._concurrency = concurrency  # sender tasks; with adaptive concurrency, its maximum
        self.limiter = Limiter(concurrency) if adaptive else None
        self._router = router
        self._retry = retry
        self._delivery = delivery
        self._on_error = on_error
        self._dead_letter = dead_letter
        self._before_send = before_send
        self._defaults = defaults
        self._before_send_errors: set[str] = set()  # each distinct error of before_send is logged once, in full
        self._in_flight: dict[int, Call] = {}  # token -> call, for the calls the senders hold
        self.metrics = metrics_for(
            meter_provider, metrics_name, self.counters, self.queue, max_queue_size, self._in_flight
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth_failure: Attempt | None = None
        self._stopping = False
        self._live = 0
        self._lost_base = 0
        self._quick = 0  # calls ended without a request in this loop iteration, by all senders
        self._refill_scheduled = False
        self._idle: asyncio.Future[None] | None = None  # set by stop(): done when nothing is left to deliver
        self._reachability = Reachability(retry)
        self.log = OutcomeLog()
        # With a spool: opened when the client starts (no file, connection or thread before), by `open_spool`.
        self._open_spool = open_spool
        self.spooling: Spooling | None = None
        self._tokens = tokens
        self.last_adopted: int | None = None  # calls the last adoption took (None: none has run yet)
        self._adopt_now: asyncio.Event | None = None  # set: the adopter looks again at once
        if open_spool is not None:
            self.board.persist = self._persist

    # -- lifecycle ---------------------------------------------------------------------------------------

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
            self.spooling = spooling
        return self.spooling

    def forget_spool(self) -> Spooling | None:
        """
        Let go of a spool that could not be opened, before the senders started (the caller closes it): the calls
        stay queued in memory, and the next start opens it again.
        """
        spooling, self.spooling = self.spooling, None
        return spooling

    def _persist(self) -> concurrent.futures.Future[None]:
        spooling = self.spooling
        if spooling is not None:
            return spooling.spool.sync()
        failed: concurrent.futures.Future[None] = concurrent.futures.Future()
        failed.set_exception(
            SpoolError("the client has not started: its spool opens when it starts (start(), async with, a call)")
        )
        return failed

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Bind to ``loop`` and start the sender tasks (from a coroutine or callback running in ``loop``).

        Also starts over on a new loop after the previous one closed without `stop`: its tasks and connections went
        with it; calls still marked in flight there (a loop closed without cancelling its tasks) end as
        ``shutdown_timeout``, and queued calls are sent from this loop.
        """
        self.open_spool()
        self._tasks.clear()
        self._end_in_flight("the event loop this call was sent from closed before it was answered")
        self._stopping = False
        self._idle = None
        self.transport.rebind()
        self.queue.bind(loop)
        self.log.bind(loop)
        # Only a shutdown ends calls as shutdown_timeout: what a loop's end costs is counted from here.
        self._lost_base = self.counters.count(Reason.SHUTDOWN_TIMEOUT)
        self._live = self._concurrency
        for i in range(self._concurrency):
            task = loop.create_task(self._sender(), name=f"rehook-sender-{i}")
            self._tasks.add(task)
        if self.spooling is not None:
            self.spooling.bind(loop)
            self._tasks.add(loop.create_task(self._adopt_forever(), name="rehook-spool-adopter"))

    def stats(self) -> Stats:
        spooling = self.spooling
        spooled, unspooled = (spooling.spool.rows, spooling.spool.uncommitted) if spooling is not None else (0, 0)
        if self._open_spool is not None and spooling is None:
            unspooled = len(self.queue)  # accepted before the start, which spools them
        return self.counters.snapshot(
            in_queue=len(self.queue),
            in_flight=len(self._in_flight),
            spooled=spooled,
            unspooled=unspooled,
            dead_letter_lost=self._dead_letter.lost if self._dead_letter is not None else 0,
        )

    def pending_count(self) -> int:
        """
        How many calls have no outcome yet; safe from any thread.
        """
        return len(self._in_flight) + len(self.queue)

    def pending(self) -> list[int]:
        """
        The tokens of every call accepted so far that has no outcome yet.
        """
        return [*self._in_flight, *self.queue.tokens()]

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
            dead_letter = self._dead_letter is not None
            reserve = 0.0 if deadline is None else _reserve(left, deadline - loop.time(), dead_letter)
            drain_until = None if deadline is None else deadline - reserve
            self._idle = loop.create_future()
            timeout = None if drain_until is None else max(0.0, drain_until - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout)
            self._idle = None
        self._stopping = True
        # Cancelling a sender ends the call it holds (sending or sleeping before a retry) as shutdown_timeout.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        message = "aclose() deadline passed before this call was sent"
        if self.spooling is not None:
            message += f"; it stays in the spool {self.spooling.path} for the next client on it"
        chunks = self._take_stranded(message)
        chunks.reverse()
        ended = 0
        while chunks:
            # Popped, so that each chunk is freed once ended: 100,000 calls freed at once held the loop ~10 ms.
            metas, datas = chunks.pop()
            self._end_entries(metas, datas, message)
            ended += len(metas)
            del metas, datas
            if len(chunks) % _END_CHUNKS == 0:
                await asyncio.sleep(0)  # a backlog of 100,000 must not hold the loop in one stretch
        if self.spooling is None:
            self.log.note_many(OutcomeStatus.FAILED, Reason.SHUTDOWN_TIMEOUT, ended, message)
        else:
            self.log.note_many(OutcomeStatus.DROPPED, Reason.SPOOLED, ended, message)
        self.log.flush()
        await self.transport.close()
        # The spool commits what is appended and lets the calls left go, for the next client: a few ms of commit.
        spool_timeout = None if deadline is None else max(1.0, deadline - loop.time())
        if self.spooling is not None and not self.spooling.close(timeout=spool_timeout):
            logger.warning("the spool %s was still committing when aclose() returned", self.spooling.path)
        if self._dead_letter is not None:
            # Stop waiting for the writer thread a little early: at the deadline this thread may still have to win
            # the GIL back from it, which takes up to a switch interval or two.
            margin = 2 * sys.getswitchinterval()
            unwritten = await self._dead_letter.aclose(None if deadline is None else deadline - margin)
            if self._dead_letter.lost:
                logger.warning(
                    "%d dead-letter lines were not written to %s (the writer was %d lines behind, or the disk "
                    "refused them): stats().dead_letter_lost",
                    self._dead_letter.lost,
                    self._dead_letter.path,
                    MAX_BACKLOG,
                )
            if unwritten:
                logger.warning(
                    "aclose() returned at its deadline with %d dead-letter lines still being written to %s; a "
                    "background thread goes on writing them, and the interpreter waits for it before it exits",
                    unwritten,
                    self._dead_letter.path,
                )
        return self.counters.count(Reason.SHUTDOWN_TIMEOUT) - before

    async def _drained(self) -> None:
        """
        Until nothing is left to deliver; or, while Rehook is unreachable, until one more probe fails to connect
        (waiting out the whole deadline would only delay the exit).
        """
        assert self._idle is not None
        while True:
            if not self._reachability.down:
                await asyncio.shield(self._idle)
                return
            probe = self._reachability.watch()
            either: list[asyncio.Future[Any]] = [self._idle, probe]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if self._idle.done() or (probe.done() and isinstance(probe.result(), Attempt)):
                probe.cancel()
                return

    def close_dead_letter(self, timeout: float) -> int:
        """
        Block until the dead-letter file is written and closed, at most ``timeout`` seconds (for the exit drain,
        after which nothing would wait for the writer thread).

        Returns:
            Lines still unwritten.
        """
        return self._dead_letter.close(timeout) if self._dead_letter is not None else 0

    @property
    def dead_letter_path(self) -> str | None:
        return self._dead_letter.path if self._dead_letter is not None else None

    def left_with_parent(self) -> None:
        """
        In a forked child, on the parent's flusher: end the child's copies of the parent's queued and in-flight
        calls as dropped ``forked``, so that a handle awaited in the child resolves instead of hanging.

        The parent still sends these calls and reports them (callbacks, counters, logs, dead letter); the child
        only resolves its handles and waiters: no callback, no counter, no log line, nothing sent.
        """
        self.queue.reset_lock()
        self.board.reset_lock()
        entries = self.queue.take_all()
        stranded = [(token, call) for token, call in self._in_flight.items()]
        self._in_flight.clear()
        message = "queued before os.fork(): the parent process sends it and knows its outcome"
        for token, call in [*((m[0], entry_call(m, d)) for m, d in entries), *stranded]:
            self.board.resolve(token, call, Outcome._for(call, Reason.FORKED, message), run_callback=False)

    def _take_stranded(self, message: str) -> list[tuple[Sequence[Meta], Sequence[Data]]]:
        """
        Empty the queue; end calls still marked in flight (their sender is gone) one by one; return the queue's.
        """
        entries = self.queue.take_chunks()
        self._end_in_flight(message)
        return entries

    def _end_in_flight(self, message: str) -> None:
        """
        End, one by one, calls still marked in flight whose sender is gone.
        """
        stranded = list(self._in_flight.items())
        self._in_flight.clear()
        for token, call in stranded:
            outcome = Outcome._for(
                call, Reason.SHUTDOWN_TIMEOUT, message, message_id=call.message_id, maybe_delivered=True
            )
            self._report(token, call, self._final(token, outcome))

    def _end_entries(self, metas: Sequence[Meta], datas: Sequence[Data], message: str) -> None:
        """
        End one chunk of queued calls as ``shutdown_timeout``. Calls nobody can observe (no handle kept, no callback,
        no on_error) are counted and dead-lettered in bulk, without building their outcomes here.

        The dead-letter writer gets the queue's own sealed chunks (or two lists of them) rather than one tuple per
        call: 100,000 small tuples waiting for the writer were promoted by the collector and set off full
        collections of ~18 ms on the loop.
        """
        board = self.board
        everyone = self._on_error is not None  # on_error gets each call's outcome
        if not everyone and not any(board.watched(meta[0]) for meta in metas):
            kept_metas, kept_datas = metas, datas
        else:
            kept_metas, kept_datas = [], []
            for meta, data in zip(metas, datas, strict=True):
                if everyone or board.watched(meta[0]):
                    call = entry_call(meta, data)
                    outcome = Outcome._for(call, Reason.SHUTDOWN_TIMEOUT, message)
                    self._report(meta[0], call, self._final(meta[0], outcome))
                else:
                    kept_metas.append(meta)
                    kept_datas.append(data)
        board.resolve_unobserved_many(meta[0] for meta in kept_metas)
        if self.spooling is not None:  # they stay in the spool, for the next client on it
            self.counters.record_many(OutcomeStatus.DROPPED, Reason.SPOOLED, len(kept_metas))
            return
        self.counters.record_many(OutcomeStatus.FAILED, Reason.SHUTDOWN_TIMEOUT, len(kept_metas))
        if self._dead_letter is not None:
            self._dead_letter.write_entries(kept_metas, kept_datas, Reason.SHUTDOWN_TIMEOUT, message)

    # -- outcomes ----------------------------------------------------------------------------------------

    def finish(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Record, log and report ``outcome``, then hand it to the board (handle, waiters and callback). Once per call.
        """
        outcome = self._final(token, outcome)  # what is logged is what the handle and on_error get
        if outcome.status is not OutcomeStatus.DELIVERED:
            # Rejected without a request: a 401 came earlier and was logged once, loudly; these are quiet.
            quiet = outcome.reason is Reason.REJECTED and outcome.attempts == 0
            self.log.note(outcome, level=logging.DEBUG if quiet else logging.WARNING)
        self._report(token, call, outcome)

    def settle_quietly(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Count ``outcome`` and hand it to the board, nothing else: no log line, dead-letter line or on_error (for a
        disabled client, whose calls are dropped on purpose).
        """
        self.counters.record(outcome)
        self.board.resolve(token, call, outcome)

    def _final(self, token: int, outcome: Outcome) -> Outcome:
        """
        The call's outcome, as the spool makes it (see `_spooled`); once per call, before it is logged or reported.
        """
        return outcome if self.spooling is None else self._spooled(token, outcome)

    def _report(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Count and report a final outcome (see `_final`), and hand it to the board.
        """
        self._in_flight.pop(token, None)
        self.counters.record(outcome)
        if outcome.status is not OutcomeStatus.DELIVERED:
            if self._dead_letter is not None and self._dead_letter.wants(outcome):
                self._dead_letter.write(outcome)
            if self._on_error is not None:
                try:
                    self._on_error(outcome)
                except Exception:
                    logger.exception("on_error raised; the outcome is unchanged")
        self.board.resolve(token, call, outcome)
        self._check_idle()

    def _spooled(self, token: int, outcome: Outcome) -> Outcome:
        """
        What the spool makes of ``outcome``: a call the client stopped before it was delivered stays in the spool
        (``spooled``); any other outcome ends its row. A re-sent adopted call says so.
        """
        spooling = self.spooling
        assert spooling is not None
        if token in spooling.resent:
            outcome = attrs.evolve(outcome, resent=True)
        if outcome.reason is Reason.SHUTDOWN_TIMEOUT:
            spooling.resent.discard(token)
            message = f"{outcome.message}; it stays in the spool {spooling.path} for the next client on it"
            return attrs.evolve(
                outcome, status=OutcomeStatus.DROPPED, reason=Reason.SPOOLED, message=message, maybe_delivered=False
            )
        spooling.ended(token, outcome)
        return outcome

    def _delivered_unobserved(self, token: int, accepted: float) -> None:
        """
        End a delivered call nothing can observe (no handle kept, no callback): counted, and no
        `Outcome` built for nobody (delivered calls have no log line, dead-letter line or on_error call).
        """
        self._in_flight.pop(token, None)
        if self.spooling is not None:
            self.spooling.delivered(token)
        self.counters.record_delivered()
        self.board.resolve_unobserved(token)
        self._check_idle()
        if accepted and self.metrics is not None:
            self.metrics.call_delivered(monotonic() - accepted)

    def _check_idle(self) -> None:
        idle = self._idle
        if idle is not None and not self._in_flight and not len(self.queue) and not idle.done():
            idle.set_result(None)

    # -- the spool ---------------------------------------------------------------------------------------

    async def _adopt_forever(self) -> None:
        """
        Take over calls nobody live owns in the spool (left by an earlier client, or by a process that died), as
        the queue has room: at start, then every half lease, sooner after a round that took some, and at once when
        the spool says calls nobody owns were written (PostgreSQL's NOTIFY: `rehook_sdk.outbox`, a client closing).
        """
        spooling = self.spooling
        assert spooling is not None
        assert self._tokens is not None
        if _exit.draining:
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
            limit = min(self.queue.maxsize - len(self.queue), ADOPT_BATCH)
            more = limit <= 0
            if limit > 0:
                try:
                    taken = await asyncio.wrap_future(spooling.adopt(limit, self._tokens))
                except SpoolError as exc:
                    logger.warning("could not take calls over from the spool: %s", exc)
                    taken = []
                self._take_adopted(taken)
                more = bool(taken)  # look again soon: more may be waiting (or may come: a batch, a restart)
                self.last_adopted = len(taken)
            if more:
                await asyncio.sleep(0.05)
            else:
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancel (aclose() stopping
                # this task) that comes as the notification sets the event, and the task then waits a half lease.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every):
                        await heard.wait()

    def adopt_soon(self) -> None:
        """
        Look for calls to take over at once rather than at the next half lease (`last_adopted` is ``None`` until
        that round has run): for ``rehook relay --wait``, once the leases it waited for have ended.
        """
        self.last_adopted = None
        if self._adopt_now is not None:
            self._adopt_now.set()

    async def replay_failed(self, replay: Replay) -> int:
        """
        Take the spool's next failed calls (after ``replay.after``) to send again, as many as the queue has room
        for (none when it has none); how many were taken. ``replay`` says how far that got.
        """
        spooling = self.spooling
        assert spooling is not None
        assert self._tokens is not None
        limit = min(self.queue.maxsize - len(self.queue), ADOPT_BATCH)
        if limit <= 0:
            return 0
        taken = await asyncio.wrap_future(spooling.adopt(limit, self._tokens, replay=replay))
        self._take_adopted(taken)
        return len(taken)

    def _take_adopted(self, taken: list[tuple[int, Adopted]]) -> None:
        spooling = self.spooling
        assert spooling is not None
        entries: list[tuple[Meta, Data]] = []
        for token, adopted in taken:
            call = adopted.call
            self.counters.adopted += 1
            if adopted.state is SpoolState.SENDING:
                if self._delivery is Delivery.AT_MOST_ONCE:
                    message = (
                        "taken over from the spool of a process that died with a request for it on the wire; not "
                        "sent again (delivery=at_most_once): Rehook may have it"
                    )
                    outcome = Outcome._for(
                        call, Reason.INTERRUPTED, message, message_id=call.message_id, maybe_delivered=True
                    )
                    self.finish(token, call, outcome)
                    continue
                spooling.resent.add(token)
                self.counters.resent += 1
            entries.append(((token, call, -1, None, None, 0.0), None))
        if entries:
            logger.info("took %s over from the spool %s", calls(len(entries)), spooling.path)
            self.queue.put_front(entries)

    # -- the sender --------------------------------------------------------------------------------------

    async def _sender(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            if not self._stopping:
                self._live -= 1
                if self._live == 0:
                    await self._loop_ended()
            raise

    async def _loop_ended(self) -> None:
        """
        The event loop is shutting down without aclose() (asyncio.run() ending): the senders were cancelled.

        Queued calls stay queued, to be sent when the client is next used on a running loop, or by the drain at
        interpreter exit; so do the calls the senders held (see `_requeue_at_loop_end`), except, at most once, those
        whose request was on the wire: they ended as ``shutdown_timeout`` (Rehook may have received them).
        The session is closed while the loop still runs. A visible warning only when calls were lost.
        """
        lost = self.counters.count(Reason.SHUTDOWN_TIMEOUT) - self._lost_base
        queued = len(self.queue)
        self.log.flush()
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

    async def _serve(self) -> None:
        queue = self.queue
        in_flight = self._in_flight
        while True:
            meta, data = await queue.get()
            token = meta[0]
            # The SDK's messageId for a call without one, made as the sender takes it, so that the call every
            # outcome, hook, log line and dead-letter line carries has the id its requests carry. 128 random bits
            # from the module PRNG (seeded from os.urandom, reseeded in forked children by the random module
            # itself): unique keys without a getrandom() system call per event.
            call = in_flight[token] = entry_call(meta, data, f"{random.getrandbits(128):032x}")
            sent = 0
            try:
                sent = await self._process(token, call, meta[5])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in this package must not kill a sender or lose the call
                logger.exception("internal error while sending a call")
                if token in in_flight:
                    message = f"internal error in rehook_sdk: {safe_repr(exc)}"
                    self.finish(token, call, Outcome._for(call, Reason.INTERNAL_ERROR, message))
            if not sent:
                # Ended without a request (a rule drop, a 401 earlier, bad input): nothing awaited, so nothing gave
                # the loop back. A budget shared by all senders, refilled once per loop iteration, bounds how many
                # such calls one iteration runs, so that a burst of them never holds the loop.
                self._quick += 1
                if self._quick >= QUICK_CALLS_PER_ITERATION:
                    await self._next_iteration()

    async def _next_iteration(self) -> None:
        if not self._refill_scheduled:
            self._refill_scheduled = True
            asyncio.get_running_loop().call_soon(self._refill)  # runs before the senders that yield below
        await asyncio.sleep(0)

    def _refill(self) -> None:
        self._quick = 0
        self._refill_scheduled = False

    async def _process(self, token: int, call: Call, accepted: float) -> int:
        """
        Route, send and end one call (accepted at ``accepted`` on the monotonic clock, when the client times calls);
        return how many requests it made.
        """
        if self._defaults is not None:
            call = self._defaults(call)
        if self._before_send is not None:
            changed = self._run_before_send(call)
            if isinstance(changed, tuple):
                self._end(token, call, Outcome._for(call, changed[0], changed[1]), accepted)
                return 0
            call = changed
        message_id = call.message_id
        if message_id is None:  # before_send returned a call without one
            message_id = f"{random.getrandbits(128):032x}"
            call = attrs.evolve(call, message_id=message_id)
        routed = self._router.route(call, message_id)
        if isinstance(routed, tuple):
            self._end(token, call, Outcome._for(call, routed[0], routed[1]), accepted)
            return 0
        results: list[ActionResult] = []
        keyed = len(routed) > 1  # several requests for one call: each needs its own Idempotency-Key
        fence = (token, message_id) if self.spooling is not None else None
        try:
            if self.spooling is not None and any(step.request is not None for step in routed):
                # On disk before anything is on the wire: whoever adopts the call after a crash knows it may have.
                await self.spooling.before_request(token, message_id)
            for step in routed:
                name, action = step.mapping.name, step.mapping.action
                if step.drop is not None:
                    results.append(ActionResult._for(name, action, step.drop[0], step.drop[1]))
                    continue
                assert step.request is not None
                key = f"{message_id}-{step.mapping.index}" if keyed else message_id
                await self._deliver(step.mapping, step.request, key, results, fence)
        except TakenOver:
            message = (
                "another process took this call over from the spool (this one was presumed dead: no heartbeat for "
                "the lease); that process delivers it"
            )
            self._end(token, call, Outcome._for(call, Reason.TAKEN_OVER, message, message_id=message_id), accepted)
            return 0
        except asyncio.CancelledError:
            on_the_wire = bool(results) and results[-1].maybe_delivered
            if self._requeue_at_loop_end(token, call, accepted, len(routed), on_the_wire):
                raise
            for step in routed[len(results) :]:
                results.append(
                    ActionResult._for(
                        step.mapping.name,
                        step.mapping.action,
                        Reason.SHUTDOWN_TIMEOUT,
                        "the client stopped before this action was sent",
                    )
                )
            if token in self._in_flight:
                self._end(token, call, Outcome._of(call, tuple(results), message_id), accepted)
            raise
        if len(results) == 1:
            (result,) = results
            if result.status is OutcomeStatus.DELIVERED and not self.board.watched(token):
                self._delivered_unobserved(token, accepted)
                return result.attempts
        outcome = Outcome._of(call, tuple(results), message_id)
        self._end(token, call, outcome, accepted)
        return outcome.attempts

    def _end(self, token: int, call: Call, outcome: Outcome, accepted: float) -> None:
        self.finish(token, call, outcome)
        if accepted and self.metrics is not None:
            self.metrics.call_ended(outcome, monotonic() - accepted)

    def _run_before_send(self, call: Call) -> Call | tuple[Reason, str]:
        # The user's hook, on the sender side: the call it returns is the one mapped, sent, reported and written to
        # the dead-letter file; None drops it. What it raises ends the call, never the sender.
        assert self._before_send is not None
        try:
            changed = self._before_send(call)
        except Exception as exc:
            described = safe_repr(exc)
            if described not in self._before_send_errors:
                self._before_send_errors.add(described)
                logger.error("before_send raised %s (logged once per distinct error)", described, exc_info=exc)
            return Reason.INVALID_PAYLOAD, f"before_send raised {described}"
        if changed is None:
            return Reason.BEFORE_SEND, "before_send returned None: the call is not sent"
        returned: object = changed  # what the hook really returned, whatever its annotation says
        if not isinstance(returned, Call):
            kind = type(returned).__qualname__
            return (
                Reason.INVALID_PAYLOAD,
                f"before_send must return the Call (changed with attrs.evolve) or None, not {kind}",
            )
        return returned

    def _requeue_at_loop_end(self, token: int, call: Call, accepted: float, actions: int, on_the_wire: bool) -> bool:
        """
        The loop is ending without aclose() under this call: put it back at the front of the queue for the client's
        next loop or the exit drain, as a retry with the same Idempotency-Key, when that cannot duplicate it against
        the client's choice: at least once always; at most once only if no request of it may have reached Rehook
        (it slept before a retry, or waited for Rehook to be reachable). With several actions (some may be
        delivered already) it ends as shutdown_timeout instead.
        """
        if self._stopping or actions != 1:
            return False
        if on_the_wire and self._delivery is not Delivery.AT_LEAST_ONCE:
            return False
        if self._in_flight.pop(token, None) is None:
            return False
        self.queue.requeue((token, call, -1, None, None, accepted), None)
        self.counters.retry()
        return True

    async def _deliver(
        self,
        mapping: CompiledMapping,
        request: Request,
        key: str,
        results: list[ActionResult],
        fence: tuple[int, str] | None = None,
    ) -> None:
        """
        Send one request with retries and append its `ActionResult` (also when cancelled, then re-raise).

        ``fence`` is the call's (token, messageId) with a spool: once this process has been presumed dead, each
        retry first checks that the call is still its own (raising `TakenOver` when another process took it).
        """
        attempts = 0
        backoff: Backoff | None = None
        sending = False
        probing = False
        maybe = False  # some attempt may have been acted on by Rehook: sticky, whatever later attempts say
        history: list[str] | None = None  # what each failed attempt came to, made at the first failure
        gate = self._reachability
        last = Attempt()
        debug = logger.isEnabledFor(logging.DEBUG)  # once per request: the lines below cost nothing otherwise
        metrics = self.metrics
        limiter = self.limiter
        started = 0.0
        spooling = self.spooling
        try:
            while True:
                if attempts and spooling is not None and fence is not None and spooling.spool.presumed_dead:
                    await spooling.before_request(*fence)  # another process may have taken it: then not retried
                if self._auth_failure is not None:
                    last = self._auth_failure
                    reason = Reason.REJECTED
                    message = "not sent: Rehook refused this client's API key/secret (401) earlier"
                    if history:
                        message += f"; before that, {_summary(history)}"
                    break
                if gate.down and not probing:
                    turn = await gate.wait()
                    if turn is Turn.PROBE:
                        probing = True
                    elif isinstance(turn, Attempt):  # the probe could not connect while this call waited
                        attempts += 1
                        last = turn
                        history = _noted(history, turn)
                        if attempts >= self._retry.max_attempts:
                            reason = Reason.RETRIES_EXHAUSTED
                            message = _exhausted(history, maybe)
                            break
                        continue
                if limiter is not None and not limiter.try_acquire():
                    await limiter.acquire()
                attempts += 1
                sending = True
                if debug:
                    logger.debug(
                        "POST %s, message id %s, attempt %d", request.path, key, attempts, extra=_fields(key, attempts)
                    )
                if metrics is not None:
                    started = monotonic()
                if limiter is None:
                    last = await self.transport.post(request, key)
                else:
                    last = await self._post_limited(limiter, request, key)
                sending = False
                self.counters.requests += 1
                if metrics is not None:
                    metrics.request_done(mapping.action.value, last, monotonic() - started)
                gate.note(last)
                status = last.status
                if debug:
                    logger.debug(
                        "answer to message id %s, attempt %d: %s",
                        key,
                        attempts,
                        f"HTTP {status}" if status is not None else last.error,
                        extra=_fields(key, attempts, status),
                    )
                verdict = judge(last)
                if verdict.next is Next.DONE:
                    assert status is not None
                    results.append(
                        ActionResult(
                            mapping=mapping.name,
                            action=mapping.action,
                            status=OutcomeStatus.DELIVERED,
                            message=_ANSWERED[status],
                            message_id=key,
                            http_status=status,
                            response_body=last.body,
                            attempts=attempts,
                        )
                    )
                    return
                if status == 401 and not last.from_proxy:
                    self.note_auth_failure(last)
                maybe = maybe or verdict.maybe_acted
                history = _noted(history, last)
                if verdict.next is Next.FINAL:
                    assert verdict.reason is not None
                    reason, message = verdict.reason, _refused(last, verdict.reason, history, maybe)
                    break
                reason = Reason.RETRIES_EXHAUSTED
                if maybe and self._delivery is Delivery.AT_MOST_ONCE:
                    message = f"{_summary(history)}; not retried (delivery=at_most_once): Rehook may have received it"
                    break
                if attempts >= self._retry.max_attempts:
                    message = _exhausted(history, maybe)
                    break
                self.counters.retry()
                if gate.down:  # one shared backoff and one probe at a time: the gate says who tries next
                    if probing:
                        await gate.probe_failed(last)
                    continue
                backoff = backoff or Backoff(self._retry)
                wait = backoff.next_wait(last.retry_after)
                if debug:
                    logger.debug(
                        "retrying message id %s in %.3f s (attempt %d of %d next)",
                        key,
                        wait,
                        attempts + 1,
                        self._retry.max_attempts,
                        extra=_fields(key, attempts, status),
                    )
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            if sending:
                where = "while its request was in flight"
            elif attempts:
                where = "while it waited to be retried"
            else:
                where = "before its first request was sent"
            message = f"the client stopped {where}"
            if history:
                message += f" ({_summary(history)})"
            if sending or maybe:
                message += ": Rehook may have received it"
            results.append(_failed(mapping, key, last, attempts, Reason.SHUTDOWN_TIMEOUT, message, sending or maybe))
            raise
        finally:
            if probing:
                gate.release()
        results.append(_failed(mapping, key, last, attempts, reason, message, maybe))

    async def _post_limited(self, limiter: Limiter, request: Request, key: str) -> Attempt:
        # The permit is held (acquired by the caller) for exactly this request.
        loop = asyncio.get_running_loop()
        started = loop.time()
        load = limiter.in_flight
        attempt: Attempt | None = None
        try:
            attempt = await self.transport.post(request, key)
            return attempt
        finally:
            status = attempt.status if attempt is not None else None
            timed_out = attempt is not None and attempt.maybe_sent and status is None
            limiter.release(started, loop.time(), status, timed_out, load)

    def note_auth_failure(self, attempt: Attempt) -> None:
        """
        Rehook refused the credentials: fail every queued and later call without sending it.
        """
        if self._auth_failure is None:
            self._auth_failure = attempt
            logger.error(
                "Rehook refused the API key/secret (HTTP 401). Every queued and later call on this "
                "client fails as 'rejected' without being sent. Check REHOOK_API_KEY/REHOOK_API_SECRET "
                "(or the key and secret given to RehookClient) and that the application exists."
            )


def _failed(
    mapping: CompiledMapping,
    key: str,
    last: Attempt,
    attempts: int,
    reason: Reason,
    message: str,
    maybe_delivered: bool,
) -> ActionResult:
    """
    The `ActionResult` of a request that did not deliver, with what its last attempt came to.

    A module function rather than a closure in `Flusher._deliver`: a closure there would add a function and five
    cells per request in flight, objects the garbage collector scans and promotes while requests wait on the network.
    """
    return ActionResult._for(
        mapping.name, mapping.action, reason, message, message_id=key, http_status=last.status,
        response_body=last.body, attempts=attempts, maybe_delivered=maybe_delivered,
    )  # fmt: skip


def _noted(history: list[str] | None, attempt: Attempt) -> list[str]:
    """
    ``history`` (made at the first failure) with what ``attempt`` came to.
    """
    if attempt.status is not None:
        what = f"HTTP {attempt.status} from the proxy" if attempt.from_proxy else f"HTTP {attempt.status}"
    else:
        what = attempt.error or "no answer"
    if history is None:
        return [what]
    history.append(what)
    return history


def _summary(history: Sequence[str]) -> str:
    """
    The failed attempts in order, runs of the same result together: "HTTP 503 on all 3 attempts", or "attempt 1:
    connection lost after the request was sent (...); attempts 2-3: HTTP 503".
    """
    if len(history) == 1:
        return history[0]
    if all(what == history[0] for what in history):
        return f"{history[0]} on all {len(history)} attempts"
    runs: list[str] = []
    first = 0
    for i in range(1, len(history) + 1):
        if i == len(history) or history[i] != history[first]:
            span = f"attempt {first + 1}" if i - first == 1 else f"attempts {first + 1}-{i}"
            runs.append(f"{span}: {history[first]}")
            first = i
    return "; ".join(runs)


def _exhausted(history: Sequence[str], maybe: bool) -> str:
    """
    The message of a call whose every allowed attempt failed.
    """
    summary = _summary(history)
    if len(history) == 1:
        summary += " on its only attempt"
    if all(what.startswith(("cannot connect", "connect timed out")) for what in history):
        return f"Rehook unreachable: {summary}"
    return f"{summary}; Rehook may have received it" if maybe else summary


def _refused(last: Attempt, reason: Reason, history: Sequence[str], maybe: bool) -> str:
    """
    The message of a call an attempt's answer ended for good (a 4xx, a proxy's refusal, a certificate).
    """
    if reason is Reason.TLS_FAILED:
        message = f"TLS handshake failed, not retried: {last.error}"
    elif last.from_proxy:
        message = f"the proxy refused to open the tunnel to Rehook with {last.status}: {last.body}"
    else:
        message = f"Rehook rejected the call with {last.status}: {last.body}"
    if len(history) > 1:
        message += f" (after {_summary(history[:-1])})"
    if maybe:
        message += "; an earlier attempt may have been received"
    return message


# Calls that end without a request (no await) that the senders together run per loop iteration before yielding.
QUICK_CALLS_PER_ITERATION = 64
# Chunks of queued calls (256 each) ended per loop iteration at the deadline, and what ending one call may cost
# (measured: ~0.3 us when nothing observes it, ~2-5 us with a handle kept or on_error set; 12 us leaves room for a
# slow handler), and what writing its dead-letter line costs the writer thread (measured: ~7.5 us).
_END_CHUNKS = 8
_END_COST = 12e-6
_LINE_COST = 10e-6


def _reserve(calls: int, remaining: float, dead_letter: bool) -> float:
    """
    Seconds to keep, before a deadline ``remaining`` seconds away, for ending ``calls`` left over and writing their
    dead-letter lines: at most half of what remains.
    """
    fixed = 0.005 + 2 * sys.getswitchinterval()  # cancelling the senders, closing the session; winning the GIL back
    per_call = _END_COST + (_LINE_COST if dead_letter else 0.0)
    return min(fixed + calls * per_call, max(0.0, remaining) / 2)


def deadline_after(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    """
    The loop-clock deadline ``timeout`` seconds from now; ``None`` means wait without limit.
    """
    if timeout is None or math.isinf(timeout):
        return None
    return loop.time() + max(0.0, timeout)


# The delivered message of each 2xx status, made once rather than formatted per request.
_ANSWERED = {status: f"Rehook answered {status}" for status in range(200, 300)}


def _fields(message_id: str, attempt: int, http_status: int | None = None) -> dict[str, object]:
    # The structured fields of a DEBUG line about one request (extra=).
    return {"rehook_message_id": message_id, "rehook_attempt": attempt, "rehook_http_status": http_status}
