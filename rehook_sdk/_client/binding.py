"""
Which event loop a client belongs to, and where it is in its life: not started (its spool opened first, if it has
one), running on a loop, closing, closed.

A client may be made anywhere (module level included). It starts on the first running loop that uses it, and starts
over on a new loop when the one it ran on has closed: the everyday case of a module-level client used by several
``asyncio.run()`` calls, or by pytest's per-test loops. Nothing can be in flight on a closed loop, and what is still
queued is sent from the new one.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .._core.constants import SPOOL_OPEN_TIMEOUT
from .._core.exceptions import ClientStateError
from .._delivery.engine import DeliveryEngine
from .._durable.spooling import Spooling
from .._durable.spools import SpoolError

__all__ = ["LoopBinding", "State"]


class State(enum.Enum):
    NOT_STARTED = "not started"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


# What `LoopBinding.live` holds while the client does not run: never a loop, never None (no running loop).
_NOWHERE = object()


class LoopBinding:
    """
    A client's loop and state. Every change holds ``lock``; reads of ``live`` need none.

    ``live`` is the loop while the client runs on it, else a value no loop is: the hot path asks one question
    (``live is asyncio._get_running_loop()``) for "running, and called from a task of its own loop".
    """

    __slots__ = ("closing", "live", "lock", "loop", "state")

    def __init__(self) -> None:
        self.state = State.NOT_STARTED
        self.loop: asyncio.AbstractEventLoop | None = None
        self.live: object = _NOWHERE
        self.lock = threading.Lock()
        self.closing: asyncio.Task[None] | None = None

    def _move(self, state: State, loop: asyncio.AbstractEventLoop | None) -> None:
        self.state, self.loop = state, loop
        self.live = loop if state is State.RUNNING and loop is not None else _NOWHERE

    def ensure_on(self, loop: asyncio.AbstractEventLoop, engine: DeliveryEngine) -> None:
        """
        Start ``engine`` on ``loop`` (running, in this thread) if not started yet, or start over on it if the loop the
        client ran on has closed. Caller holds ``lock``.
        """
        own = self.loop
        stranded = self.state is State.RUNNING and own is not None and own is not loop and own.is_closed()
        if self.state is State.NOT_STARTED or stranded:
            self._start_on(loop, engine)

    def _start_on(self, loop: asyncio.AbstractEventLoop, engine: DeliveryEngine) -> None:
        engine.start(loop)
        self._move(State.RUNNING, loop)

    def ensure_here(self, engine: DeliveryEngine) -> asyncio.AbstractEventLoop:
        """
        `ensure_on` the running loop (taking ``lock``), and return that loop.
        """
        loop = asyncio.get_running_loop()
        with self.lock:
            self.ensure_on(loop, engine)
        return loop

    def require_here(self, engine: DeliveryEngine, refused: str, elsewhere: str) -> asyncio.AbstractEventLoop:
        """
        `ensure_here`, then check that the client runs on the running loop.

        Raises:
            ClientStateError: ``"{refused} that is {state}"`` when it does not run (closing, closed), or ``elsewhere``
                when it runs on another loop.
        """
        loop = self.ensure_here(engine)
        if self.state is not State.RUNNING:
            raise ClientStateError(f"{refused} that is {self.state.value}")
        if self.loop is not loop:
            raise ClientStateError(elsewhere)
        return loop

    async def open_spool(self, engine: DeliveryEngine) -> None:
        """
        Before the client first starts: open ``engine``'s spool, if it has one.

        Raises:
            SpoolError: it cannot be opened; the engine forgets it, unless a call from another thread started the
                client meanwhile (that start logged the error and delivers from memory, opening it again as it goes).
        """
        with self.lock:
            if self.state is not State.NOT_STARTED:
                return
            spooling = engine.open_spool()
        if spooling is None:
            return
        try:
            await spooling.opened(SPOOL_OPEN_TIMEOUT)
        except SpoolError:
            if self._forget(engine, spooling):
                await asyncio.to_thread(spooling.spool.close, release=False, timeout=SPOOL_OPEN_TIMEOUT)
                raise

    def _forget(self, engine: DeliveryEngine, spooling: Spooling) -> bool:
        with self.lock:
            return self.state is State.NOT_STARTED and engine.forget_spool() is spooling

    def begin_close(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: DeliveryEngine,
        close: Callable[[], Coroutine[Any, Any, None]],
    ) -> asyncio.Task[None] | None:
        """
        Move to closing on ``loop`` and run ``close()`` there, once: a second caller gets the same task. Returns
        None when the client is already closed.

        Raises:
            ClientStateError: the client runs on another loop that is still open.
        """
        with self.lock:
            state = self.state
            if state is State.CLOSED:
                return None
            own = self.loop
            if state is State.RUNNING and own is not None and own is not loop:
                if not own.is_closed():
                    raise ClientStateError("aclose() must be awaited on the event loop the client runs on")
                # The loop the client ran on is gone, and its senders with it: deliver what is queued from here.
                self._start_on(loop, engine)
            if state is not State.CLOSING:
                if state is State.NOT_STARTED:
                    engine.start(loop)  # calls may have been queued before any loop ran: deliver them here
                self._move(State.CLOSING, loop)
                self.closing = loop.create_task(self._closed_after(close()))
            return self.closing

    async def _closed_after(self, close: Coroutine[Any, Any, None]) -> None:
        try:
            await close
        finally:
            self._move(State.CLOSED, self.loop)

    def after_fork(self) -> None:
        """
        In a forked child: no loop and no task of the parent's. A running client starts again on its next call; a
        closing one is closed (its parent closes it).
        """
        self.lock = threading.Lock()  # the parent's lock may have been held by a thread the child does not have
        self.closing = None
        if self.state is State.RUNNING:
            self._move(State.NOT_STARTED, None)
        elif self.state is State.CLOSING:
            self._move(State.CLOSED, None)
        else:
            self._move(self.state, None)
