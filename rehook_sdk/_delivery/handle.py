"""
The handle every call returns, and the board where outcomes wait for the handles that still exist.

A queued call is kept as plain data in the queue (a tuple of strings and ints, and the properties dict), never as
an object that points at other objects: CPython's garbage collector scans every such object on each full
collection, and 100,000 queued handles made those pauses 20 ms and more. The handle is the caller's: it lives as
long as the caller keeps it (a fire-and-forget call's handle is freed at once), and the board keeps an outcome only
while its handle exists.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any

from .._core.entry import build_call
from .._core.outcome import Outcome
from .._core.types import Call, CallType

__all__ = ["Board", "Countdown", "EventHandle"]

logger = logging.getLogger("rehook_sdk")

Callback = Callable[[Outcome], object]
Waiter = asyncio.Future[Outcome] | threading.Event


def _running_loop_or_none() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


def _set_if_pending(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


class Countdown:
    """
    Done when every token it was given has its outcome: one future for flush() over any backlog.
    """

    __slots__ = ("future", "tokens")

    def __init__(self, tokens: Iterable[int]) -> None:
        self.tokens = set(tokens)
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.tokens:
            self.future.set_result(None)

    def one_done(self, token: int) -> None:
        # Runs on the loop that owns the future: pending calls are resolved by the sender tasks, on that loop.
        if token in self.tokens:
            self.tokens.discard(token)
            if not self.tokens and not self.future.done():
                self.future.set_result(None)


class Board:
    """
    Where a call's outcome meets its handle, waiters and callback. Safe from any thread.
    """

    __slots__ = ("_alive", "_callbacks", "_countdowns", "_lock", "_outcomes", "_waiters", "persist", "starter")

    def __init__(self) -> None:
        # Called when a handle is awaited before its outcome is known: starts the client if nothing runs it.
        self.starter: Callable[[], Callable[[], None] | None] | None = None
        # With a spool: until every call accepted so far is committed to it.
        # With a spool: a future done once every call accepted so far is committed (any thread may wait on it).
        self.persist: Callable[[], concurrent.futures.Future[None]] | None = None
        self._lock = threading.Lock()
        self._alive: set[int] = set()  # tokens whose handle still exists
        self._outcomes: dict[int, Outcome] = {}  # outcomes of those handles
        self._waiters: dict[int, list[Waiter]] = {}
        self._callbacks: dict[int, Callback] = {}
        self._countdowns: list[Countdown] = []

    def attach(self, token: int, callback: Callback | None) -> None:
        """
        A handle for ``token`` now exists (set and dict updates are atomic: no lock needed).
        """
        self._alive.add(token)
        if callback is not None:
            self._callbacks[token] = callback

    def detach(self, token: int) -> None:
        """
        The handle for ``token`` is gone: nobody can ask for its outcome any more.

        No lock: this runs for every fire-and-forget call. Each step is atomic, and resolve() checks ``_alive``
        again after storing an outcome, so whichever order the two threads take, nothing is left behind.
        (No waiter can be registered for a handle that is gone.)
        """
        self._alive.discard(token)
        self._outcomes.pop(token, None)

    def watched(self, token: int) -> bool:
        """
        Whether anything can observe ``token``'s `Outcome`: its handle or a callback. (A flush() waiting needs only
        to hear that the call ended: `resolve_unobserved` tells it.)
        """
        return token in self._alive or token in self._callbacks

    def outcome(self, token: int) -> Outcome | None:
        return self._outcomes.get(token)

    def wait(self, token: int, waiter: Waiter) -> Outcome | None:
        """
        Register ``waiter`` for ``token``'s outcome, or return the outcome if it is already known.
        """
        with self._lock:
            outcome = self._outcomes.get(token)
            if outcome is None:
                self._waiters.setdefault(token, []).append(waiter)
            return outcome

    def countdown(self, tokens: Iterable[int]) -> Countdown:
        countdown = Countdown(tokens)
        if countdown.tokens:
            with self._lock:
                self._countdowns.append(countdown)
        return countdown

    def forget(self, countdown: Countdown) -> None:
        with self._lock:
            if countdown in self._countdowns:
                self._countdowns.remove(countdown)

    def held(self) -> tuple[int, int, int, int]:
        """
        What the board holds: handles alive, outcomes kept for them, calls with waiters, callbacks. All 0 once every
        handle is gone and every outcome known.
        """
        return len(self._alive), len(self._outcomes), len(self._waiters), len(self._callbacks)

    def reset_lock(self) -> None:
        """
        In a forked child: a fresh lock, since a thread of the parent may have held the old one at the fork.
        """
        self._lock = threading.Lock()

    def resolve_unobserved(self, token: int) -> None:
        """
        ``token``'s outcome is known and `watched` said nothing observes it: only a flush() that began since needs
        to hear of it (a handle that is gone never comes back; a callback is set when the call is made).
        """
        if self._countdowns:
            with self._lock:
                countdowns = list(self._countdowns)
            for countdown in countdowns:
                countdown.one_done(token)

    def resolve_unobserved_many(self, tokens: Iterable[int]) -> None:
        """
        `resolve_unobserved` for many tokens.
        """
        if self._countdowns:
            with self._lock:
                countdowns = list(self._countdowns)
            for token in tokens:
                for countdown in countdowns:
                    countdown.one_done(token)

    def resolve(self, token: int, call: Call, outcome: Outcome, *, run_callback: bool = True) -> None:
        """
        ``token``'s outcome is known: keep it for its handle, wake the waiters, run the callback. Once per token.

        ``run_callback=False`` forgets the callback instead (a forked child's copy of a call its parent reports).
        """
        with self._lock:
            waiters: list[Waiter] | None = None
            if token in self._alive:
                self._outcomes[token] = outcome
                waiters = self._waiters.pop(token, None)
                if token not in self._alive:  # the handle went meanwhile, in another thread (see detach)
                    self._outcomes.pop(token, None)
            callback = self._callbacks.pop(token, None)
            countdowns = list(self._countdowns) if self._countdowns else None
        if countdowns is not None:
            for countdown in countdowns:
                countdown.one_done(token)
        if waiters is not None:
            running = _running_loop_or_none()
            for waiter in waiters:
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    continue
                loop = waiter.get_loop()
                if loop is running:
                    _set_if_pending(waiter, outcome)
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(_set_if_pending, waiter, outcome)
        if callback is not None and run_callback:
            try:
                callback(outcome)
            except Exception:
                logger.exception(
                    "the callback for a %s call raised; the outcome (%s) is unchanged",
                    call.type.value,
                    outcome.status.value,
                )


class EventHandle:
    """
    What every call returns at once: ignore it (fire and forget) or ``await`` it for the call's `Outcome`.

    A handle may be awaited from any event loop, in any thread, any number of times; ``result(timeout)`` blocks
    for it in code without an event loop.
    """

    __slots__ = ("_board", "_call", "_data", "_event", "_kind", "_token", "_user_id")

    def __init__(
        self,
        board: Board,
        token: int,
        call: Call | None,
        kind: CallType | None = None,
        user_id: str | None = None,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._board = board
        self._token = token
        self._call = call
        self._kind = kind
        self._user_id = user_id
        self._event = event
        self._data = data

    def __del__(self) -> None:
        self._board.detach(self._token)

    @property
    def call(self) -> Call:
        """
        The call this handle is for.
        """
        call = self._call
        if call is None:
            call = self._call = build_call(self._kind, self._user_id, self._event, self._data)
        return call

    @property
    def message_id(self) -> str | None:
        """
        The call's messageId: the one you gave, or once the call has its outcome, the one the SDK gave it
        (``outcome.call.message_id``).
        """
        outcome = self.outcome
        return outcome.call.message_id if outcome is not None else self.call.message_id

    def __repr__(self) -> str:
        outcome = self.outcome
        state = outcome.status.value if outcome is not None else "pending"
        return f"<EventHandle {self.call.type.value} {state}>"

    @property
    def outcome(self) -> Outcome | None:
        """
        The outcome, or ``None`` while the call is still queued or in flight.
        """
        return self._board.outcome(self._token)

    def done(self) -> bool:
        """
        True once the call has its outcome.
        """
        return self._board.outcome(self._token) is not None

    def __await__(self) -> Generator[Any, None, Outcome]:
        return self._wait().__await__()

    async def _wait(self) -> Outcome:
        board = self._board
        outcome = board.outcome(self._token)
        if outcome is not None:
            return outcome
        kick = board.starter() if board.starter is not None else None
        if kick is not None:
            kick()
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        outcome = self._board.wait(self._token, fut)
        if outcome is not None:
            return outcome
        return await fut

    async def persisted(self) -> bool:
        """
        With ``spool=``: wait until the call is committed to the spool (it then survives this process), or has its
        outcome already. For the call that must not be lost (a signup) before answering the request.

        Returns:
            True once the call is durable or ended; False at once when the client has no spool.

        Raises:
            SpoolError: the spool could not write it (it is still delivered from memory).
        """
        persist = self._board.persist
        if persist is None:
            return False
        if not self.done():
            await asyncio.wrap_future(persist())
        return True

    def wait_persisted(self, timeout: float | None = None) -> bool:
        """
        The blocking form of `persisted`, for code without an event loop (a `SyncRehookClient`'s handles).

        Args:
            timeout: Seconds to wait; ``None`` waits without limit.

        Returns:
            True once the call is durable or ended; False at once when the client has no spool.

        Raises:
            TimeoutError: not committed within ``timeout``.
            SpoolError: the spool could not write it (it is still delivered from memory).
            RuntimeError: called from a thread that runs an event loop (``await handle.persisted()`` there).
        """
        if _running_loop_or_none() is not None:
            raise RuntimeError(
                "EventHandle.wait_persisted() would block the event loop; use 'await handle.persisted()'"
            )
        persist = self._board.persist
        if persist is None:
            return False
        if not self.done():
            try:
                persist().result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"this {self.call.type.value} call was not committed within {timeout} s") from None
        return True

    def result(self, timeout: float | None = None) -> Outcome:
        """
        Block the calling thread until the outcome is known, for code without an event loop.

        Args:
            timeout: Seconds to wait; ``None`` waits without limit.

        Raises:
            TimeoutError: no outcome within ``timeout``.
            RuntimeError: called from a thread that runs an event loop (``await`` the handle there instead).
        """
        # Refused inside a loop even when the outcome is already known, so that the mistake shows every time rather
        # than only when delivery happens to be slow.
        if _running_loop_or_none() is not None:
            raise RuntimeError("EventHandle.result() would block the event loop; use 'await handle' instead")
        outcome = self._board.outcome(self._token)
        if outcome is not None:
            return outcome
        done = threading.Event()
        outcome = self._board.wait(self._token, done)
        if outcome is None and not done.wait(timeout):
            raise TimeoutError(f"no outcome for this {self.call.type.value} call within {timeout} s")
        outcome = self._board.outcome(self._token)
        assert outcome is not None
        return outcome
