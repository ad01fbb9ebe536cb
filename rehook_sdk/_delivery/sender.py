"""
The sender: takes each call off the queue and runs it through ``defaults``, ``before_send`` and the router, hands
each request to `Attempts` and the result to `Outcomes`. One `Sender` serves every sender task of a client.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import attrs

from .._core.encoding import safe_repr
from .._core.entry import entry_call, queued
from .._core.outcome import ActionResult, Outcome, OutcomeStatus, Reason, outcome_for, outcome_of, result_for
from .._core.retry import Delivery
from .._core.types import Call
from .._durable.spooling import Spooling, TakenOver
from .._mapping.router import Router, Step
from .attempts import Attempts
from .outcomes import Outcomes
from .queue import EventQueue

__all__ = ["QUICK_CALLS_PER_ITERATION", "Sender"]

logger = logging.getLogger("rehook_sdk")

# Calls that end without a request (no await) that the senders together run per loop iteration before yielding.
QUICK_CALLS_PER_ITERATION = 64


class Sender:
    """
    Sends the calls of one client's queue; ``serve`` is the body of each sender task.
    """

    def __init__(
        self,
        queue: EventQueue,
        router: Router,
        attempts: Attempts,
        outcomes: Outcomes,
        spooling: Spooling | None,
        before_send: Callable[[Call], Call | None] | None,
        defaults: Callable[[Call], Call] | None,
    ) -> None:
        self.stopping = False  # set by the engine's drain: a cancel then ends calls rather than requeueing them
        self._queue = queue
        self._router = router
        self._attempts = attempts
        self._outcomes = outcomes
        self._spooling = spooling
        self._before_send = before_send
        self._defaults = defaults
        self._before_send_errors: set[str] = set()  # each distinct error of before_send is logged once, in full
        self._quick = 0  # calls ended without a request in this loop iteration, by all senders
        self._refill_scheduled = False

    async def serve(self) -> None:
        queue = self._queue
        outcomes = self._outcomes
        in_flight = outcomes.in_flight
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
                    outcomes.finish(token, call, outcome_for(call, Reason.INTERNAL_ERROR, message))
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
        prepared = self._prepare(call)
        if isinstance(prepared, Outcome):
            self._outcomes.end(token, prepared.call, prepared, accepted)
            return 0
        call, message_id, routed = prepared
        results: list[ActionResult] = []
        keyed = len(routed) > 1  # several requests for one call: each needs its own Idempotency-Key
        spooling = self._spooling
        fence = (token, message_id) if spooling is not None else None
        try:
            if spooling is not None and any(step.request is not None for step in routed):
                # On disk before anything is on the wire: whoever adopts the call after a crash knows it may have.
                await spooling.before_request(token, message_id)
            for step in routed:
                if step.drop is not None:
                    results.append(result_for(step.mapping.name, step.mapping.action, *step.drop))
                    continue
                assert step.request is not None
                key = f"{message_id}-{step.mapping.index}" if keyed else message_id
                await self._attempts.deliver(step.mapping, step.request, key, results, fence)
        except TakenOver:
            message = (
                "another process took this call over from the spool (this one was presumed dead: no heartbeat for "
                "the lease); that process delivers it"
            )
            outcome = outcome_for(call, Reason.TAKEN_OVER, message, message_id=message_id)
            self._outcomes.end(token, call, outcome, accepted)
            return 0
        except asyncio.CancelledError:
            self._cancelled(token, call, accepted, routed, results, message_id)
            raise
        if len(results) == 1:
            (result,) = results
            if result.status is OutcomeStatus.DELIVERED and not self._outcomes.board.watched(token):
                self._outcomes.delivered_unobserved(token, accepted)
                return result.attempts
        outcome = outcome_of(call, tuple(results), message_id)
        self._outcomes.end(token, call, outcome, accepted)
        return outcome.attempts

    def _prepare(self, call: Call) -> tuple[Call, str, list[Step]] | Outcome:
        """
        The call as ``defaults`` and ``before_send`` leave it, its messageId and its route; or its outcome when it
        ends here, without a request.
        """
        if self._defaults is not None:
            call = self._defaults(call)
        if self._before_send is not None:
            changed = self._run_before_send(call)
            if isinstance(changed, tuple):
                return outcome_for(call, changed[0], changed[1])
            call = changed
        message_id = call.message_id
        if message_id is None:  # before_send returned a call without one
            message_id = f"{random.getrandbits(128):032x}"
            call = attrs.evolve(call, message_id=message_id)
        routed = self._router.route(call, message_id)
        if isinstance(routed, tuple):
            return outcome_for(call, routed[0], routed[1])
        return call, message_id, routed

    def _cancelled(
        self, token: int, call: Call, accepted: float, routed: list[Step], results: list[ActionResult], message_id: str
    ) -> None:
        """
        The sender was cancelled under this call: requeue it when the loop is ending (see `_requeue_at_loop_end`),
        else end it, its steps not sent yet as ``shutdown_timeout``.
        """
        on_the_wire = bool(results) and results[-1].maybe_delivered
        if self._requeue_at_loop_end(token, call, accepted, len(routed), on_the_wire):
            return
        for step in routed[len(results) :]:
            results.append(
                result_for(
                    step.mapping.name,
                    step.mapping.action,
                    Reason.SHUTDOWN_TIMEOUT,
                    "the client stopped before this action was sent",
                )
            )
        if token in self._outcomes.in_flight:
            self._outcomes.end(token, call, outcome_of(call, tuple(results), message_id), accepted)

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
        if self.stopping or actions != 1:
            return False
        if on_the_wire and self._attempts.delivery is not Delivery.AT_LEAST_ONCE:
            return False
        if self._outcomes.in_flight.pop(token, None) is None:
            return False
        self._queue.requeue(queued(token, call, accepted), None)
        self._outcomes.counters.retry()
        return True
