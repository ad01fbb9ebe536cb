"""
The background side: sender tasks take calls off the queue, check Rehook's rules, map, deliver with retries,
and end each call in exactly one `Outcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ._actions import Request
from ._deadletter import DeadLetterWriter
from ._encoding import safe_repr
from ._handle import CODE_KINDS, Board, build_call
from ._mappings import CompiledMapping
from ._outcome import ActionResult, Outcome, OutcomeStatus, Reason
from ._queue import EventQueue
from ._retry import Backoff, Delivery, RetryPolicy, is_retryable_status
from ._router import Router
from ._stats import Counters, Stats
from ._transport import Attempt, Transport
from ._types import Call

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
    ) -> None:
        self.queue = EventQueue(max_queue_size)
        self.board = Board()
        self.counters = Counters()
        self.transport = transport
        self._concurrency = concurrency
        self._router = router
        self._retry = retry
        self._delivery = delivery
        self._on_error = on_error
        self._dead_letter = dead_letter
        self._in_flight: dict[int, Call] = {}  # token -> call, for the calls the senders hold
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth_failure: Attempt | None = None
        self._stopping = False
        self._live = 0

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Bind to ``loop`` and start the sender tasks (from a coroutine or callback running in ``loop``).
        """
        self.queue.bind(loop)
        self._live = self._concurrency
        for i in range(self._concurrency):
            task = loop.create_task(self._sender(), name=f"rehook-sender-{i}")
            self._tasks.add(task)

    def stats(self) -> Stats:
        return self.counters.snapshot(in_queue=len(self.queue), in_flight=len(self._in_flight))

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

        Returns:
            How many calls ended as ``shutdown_timeout``.
        """
        await self.wait_for(self.pending(), deadline)
        self._stopping = True
        # Cancelling a sender ends the call it holds (sending or sleeping before a retry) as shutdown_timeout.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        lost = self.abandon("aclose() deadline passed before this call was sent")
        await self.transport.close()
        await self.close_dead_letter()
        return lost

    async def close_dead_letter(self) -> None:
        """
        Write out and close the dead-letter file, off the event loop.
        """
        if self._dead_letter is not None:
            await asyncio.to_thread(self._dead_letter.close)

    def abandon(self, message: str) -> int:
        """
        End every call still without an outcome as ``shutdown_timeout`` with ``message``; nothing is sent.

        For calls the sender tasks can no longer reach: left in the queue at the deadline, or stranded when
        the event loop closed under the client.

        Returns:
            How many calls this ended, with those the cancelled senders ended just before.
        """
        for token, call in self._take_unfinished():
            self.finish(token, call, Outcome._for(call, Reason.SHUTDOWN_TIMEOUT, message))
        return self.counters.snapshot(in_queue=0, in_flight=0).failed.get(Reason.SHUTDOWN_TIMEOUT, 0)

    def left_with_parent(self) -> None:
        """
        In a forked child, on the parent's flusher: end the child's copies of the parent's queued and in-flight
        calls as dropped ``forked``, so that a handle awaited in the child resolves instead of hanging.

        The parent still sends these calls and reports them (callbacks, counters, logs, dead letter); the child
        only resolves its handles and waiters: no callback, no counter, no log line, nothing sent.
        """
        self.queue.reset_lock()
        self.board.reset_lock()
        for token, call in self._take_unfinished():
            outcome = Outcome._for(
                call, Reason.FORKED, "queued before os.fork(): the parent process sends it and knows its outcome"
            )
            self.board.resolve(token, call, outcome, run_callback=False)

    def _take_unfinished(self) -> list[tuple[int, Call]]:
        """
        Empty the queue and the in-flight table; return their calls, queued first.
        """
        left = [(meta[0], entry_call(meta, data)) for meta, data in self.queue.take_all()]
        left += self._in_flight.items()
        self._in_flight.clear()
        return left

    # -- outcomes ----------------------------------------------------------------------------------------

    def finish(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Record, log and report ``outcome``, then hand it to the board (handle, waiters and callback). Once per call.
        """
        self._in_flight.pop(token, None)
        self.counters.record(outcome)
        if outcome.status is not OutcomeStatus.DELIVERED:
            # Rejected without a request: a 401 came earlier and was logged once, loudly; these are quiet.
            quiet = outcome.reason is Reason.REJECTED and outcome.attempts == 0
            log_level = logging.DEBUG if quiet else logging.WARNING
            if logger.isEnabledFor(log_level):
                logger.log(
                    log_level,
                    "rehook_sdk: %s %s call (userId=%r): %s: %s",
                    outcome.status.value,
                    outcome.call.type.value,
                    outcome.call.user_id,
                    outcome.reason.value if outcome.reason else "",
                    outcome.message,
                )
            if self._dead_letter is not None and self._dead_letter.wants(outcome):
                self._dead_letter.write(outcome)
            if self._on_error is not None:
                try:
                    self._on_error(outcome)
                except Exception:
                    logger.exception("rehook_sdk: on_error raised; the outcome is unchanged")
        self.board.resolve(token, call, outcome)

    # -- the sender --------------------------------------------------------------------------------------

    async def _sender(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            if not self._stopping:
                # Not cancelled by stop(): the event loop is shutting down (asyncio.run() ending) without
                # aclose(). The last sender to go says what is lost and closes the session while it still can.
                self._live -= 1
                if self._live == 0:
                    lost = self.abandon("the event loop stopped before aclose(); never sent")
                    message = (
                        f"the event loop stopped without aclose(); {lost} calls failed as shutdown_timeout. "
                        "Use 'async with RehookClient(...)' or 'await client.aclose()'."
                    )
                    logger.warning("rehook_sdk: %s", message)
                    await self.transport.close()
                    await self.close_dead_letter()
                    warnings.warn(f"unclosed RehookClient: {message}", ResourceWarning, stacklevel=1)
            raise

    async def _serve(self) -> None:
        queue = self.queue
        in_flight = self._in_flight
        while True:
            meta, data = await queue.get()
            token = meta[0]
            call = in_flight[token] = entry_call(meta, data)
            try:
                await self._process(token, call)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in this package must not kill a sender or lose the call
                logger.exception("internal error while sending a call")
                if token in in_flight:
                    message = f"internal error in rehook_sdk: {safe_repr(exc)}"
                    self.finish(token, call, Outcome._for(call, Reason.INTERNAL_ERROR, message))

    async def _process(self, token: int, call: Call) -> None:
        # 128 random bits from the module PRNG (seeded from os.urandom, reseeded in forked children by the random
        # module itself): unique keys without a getrandom() system call per event.
        message_id = call.message_id or f"{random.getrandbits(128):032x}"
        routed = self._router.route(call, message_id)
        if isinstance(routed, tuple):
            self.finish(token, call, Outcome._for(call, routed[0], routed[1]))
            return
        results: list[ActionResult] = []
        keyed = len(routed) > 1  # several requests for one call: each needs its own Idempotency-Key
        try:
            for step in routed:
                name, action = step.mapping.name, step.mapping.action
                if step.drop is not None:
                    results.append(ActionResult._for(name, action, step.drop[0], step.drop[1]))
                    continue
                assert step.request is not None
                key = f"{message_id}-{step.mapping.index}" if keyed else message_id
                await self._deliver(step.mapping, step.request, key, results)
        except asyncio.CancelledError:
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
                self.finish(token, call, Outcome._of(call, tuple(results), message_id))
            raise
        self.finish(token, call, Outcome._of(call, tuple(results), message_id))

    async def _deliver(self, mapping: CompiledMapping, request: Request, key: str, results: list[ActionResult]) -> None:
        """
        Send one request with retries and append its `ActionResult` (also when cancelled, then re-raise).
        """
        attempts = 0
        backoff: Backoff | None = None
        sending = False
        last = Attempt()
        try:
            while True:
                if self._auth_failure is not None:
                    last = self._auth_failure
                    reason = Reason.REJECTED
                    message = "not sent: Rehook refused this client's API key/secret (401) earlier"
                    break
                attempts += 1
                sending = True
                last = await self.transport.post(request, key)
                sending = False
                status = last.status
                if status is not None and 200 <= status < 300:
                    results.append(
                        ActionResult(
                            mapping=mapping.name,
                            action=mapping.action,
                            status=OutcomeStatus.DELIVERED,
                            message=f"Rehook answered {status}",
                            message_id=key,
                            http_status=status,
                            response_body=last.body,
                            attempts=attempts,
                        )
                    )
                    return
                if status == 401:
                    self._note_auth_failure(last)
                if status is not None and not is_retryable_status(status):
                    reason, message = Reason.REJECTED, f"Rehook rejected the call with {status}: {last.body}"
                    break
                why = f"HTTP {status}" if status is not None else (last.error or "no answer")
                reason = Reason.RETRIES_EXHAUSTED
                if last.maybe_sent and self._delivery is Delivery.AT_MOST_ONCE:
                    message = f"{why}; not retried (delivery=at_most_once): Rehook may have received it"
                    break
                if attempts >= self._retry.max_attempts:
                    message = f"{why} on all {attempts} attempts"
                    break
                backoff = backoff or Backoff(self._retry)
                self.counters.retry()
                await asyncio.sleep(backoff.next_wait(last.retry_after))
        except asyncio.CancelledError:
            where = "while its request was in flight" if sending else "while it waited to be retried"
            message = f"the client stopped {where}" + (": Rehook may have received it" if sending else "")
            results.append(
                _failed(mapping, key, last, attempts, Reason.SHUTDOWN_TIMEOUT, message, sending or last.maybe_sent)
            )
            raise
        # Only an answer-less attempt can have maybe_sent; a rejection always came with an answer.
        results.append(_failed(mapping, key, last, attempts, reason, message, last.maybe_sent))

    def _note_auth_failure(self, attempt: Attempt) -> None:
        if self._auth_failure is None:
            self._auth_failure = attempt
            logger.error(
                "rehook_sdk: Rehook refused the API key/secret (HTTP 401). Every queued and later call on this "
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


def entry_call(meta: tuple[Any, ...], data: dict[str, Any] | None) -> Call:
    """
    The `Call` of a queued entry: the one queued on the general path, or one built from the fast path's fields.
    """
    call: Call | None = meta[1]
    if call is not None:
        return call
    return build_call(CODE_KINDS[meta[2]], meta[3], meta[4], data)


def deadline_after(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    """
    The loop-clock deadline ``timeout`` seconds from now; ``None`` means wait without limit.
    """
    if timeout is None or math.isinf(timeout):
        return None
    return loop.time() + max(0.0, timeout)
