"""
What became of a call: the `Outcome` value, its status and reason codes, and the `EventHandle` a call returns.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

import attrs

from ._types import Action, Call, CallType

__all__ = ["ActionResult", "EventHandle", "Outcome", "OutcomeStatus", "Reason"]

logger = logging.getLogger("rehook_sdk")


class OutcomeStatus(enum.StrEnum):
    """
    The three ways a call can end.
    """

    DELIVERED = "delivered"
    """Rehook answered 2xx."""
    DROPPED = "dropped"
    """Not sent, on purpose: a Rehook rule, a full queue, a closed client, a payload JSON cannot carry."""
    FAILED = "failed"
    """Sending was attempted (or due) and did not succeed."""


class Reason(enum.StrEnum):
    """
    Why a call was dropped or failed.
    """

    MISSING_USER_ID = "missing_user_id"
    """dropped: no userId (Rehook needs one to know the customer)."""
    ANONYMOUS_ONLY = "anonymous_only"
    """dropped: only an anonymousId; Rehook drops anonymous calls."""
    MISSING_REFERRAL_CODE = "missing_referral_code"
    """dropped: a conversion event without ``referral_code`` in its properties."""
    UNSUPPORTED_CALL = "unsupported_call"
    """dropped: group() and alias() have no Rehook action."""
    QUEUE_FULL = "queue_full"
    """dropped: the in-process queue was at ``max_queue_size``."""
    CLIENT_CLOSED = "client_closed"
    """dropped: the call came after aclose() began."""
    NO_MATCHING_MAPPING = "no_matching_mapping"
    """dropped: no mapping's trigger matched the call."""
    MISSING_FIELD = "missing_field"
    """dropped: a field the action needs (event_name) resolved to nothing; the message names it."""
    INVALID_PAYLOAD = "invalid_payload"
    """dropped: a value JSON cannot carry (the message names its key path), or an empty event name."""
    REJECTED = "rejected"
    """failed: Rehook answered 4xx other than 408/429 (status and body kept), or 401 earlier on this client."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """failed: every attempt allowed by the retry policy (or the delivery mode) failed."""
    SHUTDOWN_TIMEOUT = "shutdown_timeout"
    """failed: aclose()'s deadline came before the call could be delivered."""


_FAILED_REASONS = frozenset({Reason.REJECTED, Reason.RETRIES_EXHAUSTED, Reason.SHUTDOWN_TIMEOUT})


@attrs.frozen(kw_only=True)
class ActionResult:
    """
    What became of one Rehook action a call fired (one mapping whose trigger matched).

    Attributes:
        mapping: The mapping's name.
        action: The Rehook action it sends.
        status: delivered, dropped or failed.
        reason: Why it was dropped or failed; ``None`` when delivered.
        message: A sentence for humans.
        message_id: The ``Idempotency-Key`` its requests carried; ``None`` when nothing was sent.
        http_status: Rehook's last HTTP status, if any answer came.
        response_body: Rehook's last response body, if any answer came.
        attempts: HTTP requests made for this action.
        maybe_delivered: The last attempt failed after the request was sent.
    """

    mapping: str
    action: Action
    status: OutcomeStatus
    reason: Reason | None = None
    message: str = ""
    message_id: str | None = None
    http_status: int | None = None
    response_body: str | None = None
    attempts: int = 0
    maybe_delivered: bool = False

    @classmethod
    def _for(cls, mapping: str, action: Action, reason: Reason, message: str, **kw: Any) -> ActionResult:
        status = OutcomeStatus.FAILED if reason in _FAILED_REASONS else OutcomeStatus.DROPPED
        return cls(mapping=mapping, action=action, status=status, reason=reason, message=message, **kw)


@attrs.frozen(kw_only=True)
class Outcome:
    """
    The final word on one call. Every accepted call ends in exactly one.

    Attributes:
        call: The call this is the outcome of.
        status: delivered, dropped or failed.
        reason: Why it was dropped or failed; ``None`` when delivered.
        message: A sentence for humans (logs, dashboards). Never contains the API secret.
        message_id: The ``Idempotency-Key`` the requests carried (the call's messageId, or one the SDK made);
            ``None`` when nothing was ever sent.
        http_status: Rehook's last HTTP status, if any answer came.
        response_body: Rehook's last response body (text), if any answer came.
        attempts: How many HTTP requests were made for this call.
        maybe_delivered: True when the last attempt failed after the request was sent (a timeout or a lost
            connection): Rehook may have acted on it. Only ever true for failed outcomes.
        results: One `ActionResult` per mapping the call fired, in mapping order (empty when the call was
            dropped before any mapping ran). The fields above summarise them: with one action they are its
            result; with several, the call is delivered when all were, and otherwise reports the first failed
            action (or else the first dropped one).
    """

    call: Call
    status: OutcomeStatus
    reason: Reason | None = None
    message: str = ""
    message_id: str | None = None
    http_status: int | None = None
    response_body: str | None = None
    attempts: int = 0
    maybe_delivered: bool = False
    results: tuple[ActionResult, ...] = ()

    @property
    def delivered(self) -> bool:
        """
        True when Rehook accepted the call.
        """
        return self.status is OutcomeStatus.DELIVERED

    @classmethod
    def _for(cls, call: Call, reason: Reason, message: str, **kw: Any) -> Outcome:
        status = OutcomeStatus.FAILED if reason in _FAILED_REASONS else OutcomeStatus.DROPPED
        return cls(call=call, status=status, reason=reason, message=message, **kw)

    @classmethod
    def _of(cls, call: Call, results: tuple[ActionResult, ...], message_id: str) -> Outcome:
        attempts = sum(r.attempts for r in results)
        sent = message_id if attempts else None
        if len(results) == 1:
            (r,) = results
            return cls(
                call=call, status=r.status, reason=r.reason, message=r.message, message_id=r.message_id,
                http_status=r.http_status, response_body=r.response_body, attempts=r.attempts,
                maybe_delivered=r.maybe_delivered, results=results,
            )  # fmt: skip
        bad = [r for r in results if r.status is not OutcomeStatus.DELIVERED]
        if not bad:
            return cls(
                call=call, status=OutcomeStatus.DELIVERED, message=f"all {len(results)} actions delivered",
                message_id=sent, http_status=results[-1].http_status, attempts=attempts, results=results,
            )  # fmt: skip
        worst = next((r for r in bad if r.status is OutcomeStatus.FAILED), bad[0])
        return cls(
            call=call, status=worst.status, reason=worst.reason,
            message=f"{len(bad)} of {len(results)} actions not delivered; {worst.mapping}: {worst.message}",
            message_id=sent, http_status=worst.http_status, response_body=worst.response_body, attempts=attempts,
            maybe_delivered=worst.maybe_delivered, results=results,
        )  # fmt: skip


class Countdown:
    """
    One future for many handles: done when all of them have their outcome (flush() on a large backlog registers
    one of these per handle instead of a future and a done-callback per handle).
    """

    __slots__ = ("_left", "_loop", "_thread", "future")

    def __init__(self, handles: list[EventHandle]) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.future: asyncio.Future[None] = self._loop.create_future()
        self._left = 0
        for handle in handles:
            if handle._outcome is None:
                if handle._waiters is None:
                    handle._waiters = []
                handle._waiters.append(self)
                self._left += 1
        if self._left == 0:
            self.future.set_result(None)

    @property
    def left(self) -> int:
        return self._left

    def one_done(self) -> None:
        if threading.get_ident() != self._thread:  # resolved from another thread: count on the loop's thread
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.one_done)
            return
        self._left -= 1
        if self._left == 0 and not self.future.done():
            self.future.set_result(None)


def _set_if_pending(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


class EventHandle:
    """
    What every call returns at once: ignore it (fire and forget) or ``await`` it for the call's `Outcome`.

    A handle may be awaited from any event loop, in any thread, any number of times.
    """

    # The common call shapes (track/identify with a str user id and a dict) keep their few fields here and build
    # the `Call` only when something reads it, in the sender: the caller's path then allocates one object and a
    # dict copy, and a queued call is one object for the garbage collector to scan, not two.
    __slots__ = ("_call", "_callback", "_data", "_event", "_kind", "_outcome", "_user_id", "_waiters", "message_id")

    def __init__(
        self,
        call: Call | None,
        callback: Callable[[Outcome], object] | None,
        kind: CallType | None = None,
        user_id: str | None = None,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._call = call
        self.message_id = call.message_id if call is not None else None
        self._callback = callback
        self._kind = kind
        self._user_id = user_id
        self._event = event
        self._data = data
        self._outcome: Outcome | None = None
        self._waiters: list[asyncio.Future[Outcome] | threading.Event | Countdown] | None = None

    @property
    def call(self) -> Call:
        """
        The call this handle is for.
        """
        call = self._call
        if call is None:
            # Two threads may both build it: the results are equal, and either may be kept.
            assert self._kind is not None
            if self._kind is CallType.IDENTIFY:
                call = Call(type=self._kind, user_id=self._user_id, traits=self._data)
            else:
                call = Call(type=self._kind, user_id=self._user_id, event=self._event, properties=self._data)
            self._call = call
        return call

    def __repr__(self) -> str:
        state = self._outcome.status.value if self._outcome is not None else "pending"
        return f"<EventHandle {self.call.type.value} {state}>"

    @property
    def outcome(self) -> Outcome | None:
        """
        The outcome, or ``None`` while the call is still queued or in flight.
        """
        return self._outcome

    def done(self) -> bool:
        """
        True once the call has its outcome.
        """
        return self._outcome is not None

    def __await__(self) -> Generator[Any, None, Outcome]:
        return self._wait().__await__()

    async def _wait(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        return await self._future()

    def _future(self) -> asyncio.Future[Outcome]:
        """
        A future of the running loop that gets the outcome.
        """
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        # _resolve() may have run in another thread before the append: then it did not see this future.
        outcome = self._outcome
        if outcome is not None:
            _set_if_pending(fut, outcome)
        return fut

    def result(self, timeout: float | None = None) -> Outcome:
        """
        Block the calling thread until the outcome is known, for code without an event loop.

        Args:
            timeout: Seconds to wait; ``None`` waits without limit.

        Raises:
            TimeoutError: no outcome within ``timeout``.
            RuntimeError: called from a thread that runs an event loop (``await`` the handle there instead).
        """
        if self._outcome is not None:
            return self._outcome
        if _running_loop_or_none() is not None:
            raise RuntimeError("EventHandle.result() would block the event loop; use 'await handle' instead")
        done = threading.Event()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(done)
        # Checked again after registering: _resolve() may have run in between without seeing the event.
        if not self.done() and not done.wait(timeout):
            raise TimeoutError(f"no outcome for this {self.call.type.value} call within {timeout} s")
        outcome = self.outcome
        assert outcome is not None
        return outcome

    def _resolve(self, outcome: Outcome) -> None:
        """
        Set the outcome, wake every waiter and run the callback; the caller guarantees this runs once.
        """
        self._outcome = outcome
        if self._waiters is not None:
            for fut in self._waiters:
                if isinstance(fut, Countdown):
                    fut.one_done()
                    continue
                if isinstance(fut, threading.Event):
                    fut.set()
                    continue
                loop = fut.get_loop()
                if loop is _running_loop_or_none():
                    _set_if_pending(fut, outcome)
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(_set_if_pending, fut, outcome)
        if self._callback is not None:
            try:
                self._callback(outcome)
            except Exception:
                logger.exception(
                    "rehook_sdk: the callback for a %s call raised; the outcome (%s) is unchanged",
                    self.call.type.value,
                    outcome.status.value,
                )


def _running_loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
