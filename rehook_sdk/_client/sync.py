"""
`SyncRehookClient`: the async client on a background thread with its own event loop, for code without one
(Flask and Django views, scripts, Celery tasks).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar, Unpack

from .. import _exit
from .._core.constants import DEFAULT_ATEXIT_TIMEOUT, DEFAULT_CLOSE_TIMEOUT
from .._core.exceptions import ClientStateError
from .._core.outcome import Reason
from .._delivery.handle import EventHandle
from .._report.outcome_log import calls
from .._report.stats import Stats
from .client import RehookClient, delivery_engine, reset_if_forked
from .lifetime import after_fork, exit_report
from .settings import ClientSettings

if TYPE_CHECKING:
    pass

__all__ = ["SyncRehookClient"]

logger = logging.getLogger("rehook_sdk")

P = ParamSpec("P")
T = TypeVar("T")


def _forward(
    method: Callable[Concatenate[RehookClient, P], EventHandle],
) -> Callable[Concatenate[SyncRehookClient, P], EventHandle]:
    name = method.__name__

    @functools.wraps(method)
    def call(self: SyncRehookClient, /, *args: P.args, **kwargs: P.kwargs) -> EventHandle:
        handle: EventHandle = getattr(self._running(), name)(*args, **kwargs)
        return handle

    return call


class SyncRehookClient:
    """
    The same client for code without an event loop: same calls, outcomes and counters, blocking lifecycle.

    A background thread runs the async `RehookClient` on its own event loop; it starts on the first call and
    stops on `close`. Calls return an `EventHandle` at once, as in async code; ``handle.result(timeout)`` blocks
    until the outcome is known. At interpreter exit the client drains for ``atexit_timeout`` seconds (``None``
    turns that off). After a fork the child starts over with its own thread and an empty queue; calls the
    parent had queued stay with the parent.

    Args:
        api_key: As for `RehookClient`.
        api_secret: As for `RehookClient`.
        atexit_timeout: Seconds to keep delivering at interpreter exit if `close` was not called; ``None`` never.
        settings: Every other setting, by keyword, as `ClientSettings` documents (not ``session``).
    """

    # The client this one drives; rehook_sdk.testing's in-memory client replaces it (nothing else should).
    _client_class: type[RehookClient] = RehookClient

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        atexit_timeout: float | None = DEFAULT_ATEXIT_TIMEOUT,
        **settings: Unpack[ClientSettings],
    ) -> None:
        self._closed = False
        # Validates everything now, in the caller. The exit drain is this wrapper's (see _drain_at_exit), not the
        # inner client's.
        self._client = self._client_class(api_key, api_secret, atexit_timeout=None, **settings)
        self._atexit_timeout = atexit_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        after_fork(self._after_fork)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._thread is not None else "not started"
        return f"<SyncRehookClient {self._client!r} thread={state!r}>"

    # -- the calls: RehookClient's, run from the caller's thread -------------------------------------------

    identify = _forward(RehookClient.identify)
    track = _forward(RehookClient.track)
    page = _forward(RehookClient.page)
    screen = _forward(RehookClient.screen)
    group = _forward(RehookClient.group)
    alias = _forward(RehookClient.alias)
    audience = _forward(RehookClient.audience)

    def stats(self) -> Stats:
        """
        The client's counters now (see `Stats`).
        """
        return self._client.stats()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _running(self) -> RehookClient:
        if self._pid != os.getpid():
            self._after_fork()
        if self._needs_thread():
            with self._lock:
                if self._needs_thread():  # another thread may have started it while this one waited
                    self._start_thread()
        return self._client

    def _needs_thread(self) -> bool:
        return self._thread is None and not self._closed

    def _start_thread(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="rehook-sdk", daemon=True)
        thread.start()
        started.wait()
        asyncio.run_coroutine_threadsafe(self._client.start(), loop).result()
        self._loop, self._thread = loop, thread
        if self._atexit_timeout is not None:
            # Held strongly until close(): a client kept only in a local variable must still drain at exit, and its
            # thread (a daemon) would die with the interpreter.
            _exit.hold(self)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise ClientStateError("the SyncRehookClient's thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def start(self) -> None:
        """
        Start the background thread now rather than on the first call.

        Raises:
            ClientStateError: the client is closed.
        """
        if self._closed:
            raise ClientStateError("cannot start a closed SyncRehookClient")
        self._running()

    def flush(self, timeout: float | None = None) -> int:
        """
        Block until every call accepted so far has its outcome, or ``timeout`` seconds pass.

        Returns:
            How many of those calls still have no outcome (0: all done).
        """
        if self._thread is None:
            return 0
        return self._run(self._client.flush(timeout))

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """
        Deliver what is queued within ``timeout`` seconds, then stop the thread; later calls are dropped as
        ``client_closed``. Calling it again does nothing.
        """
        if self._pid != os.getpid():
            self._after_fork()  # forked by a means that skipped os.register_at_fork's hooks (uWSGI): not our thread
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        _exit.release(self)
        if loop is None or thread is None:
            # Never started: close the client on a short-lived loop so that later calls are refused.
            asyncio.run(self._client.aclose(timeout=0))
            return
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(timeout), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def check_auth(self) -> None:
        """
        Ask Rehook whether the API key and secret are valid; see `RehookClient.check_auth`.
        """
        self._running()
        self._run(self._client.check_auth())

    def _drain_at_exit(self) -> tuple[int, str | None]:
        """
        At interpreter exit (see ``_exit.py``): `close` with ``atexit_timeout``.

        Returns:
            How many calls were not delivered in time, and the dead-letter file they went to.
        """
        if self._pid != os.getpid():
            self._after_fork()  # the parent's thread and calls, seen from a child forked without the hooks
        if self._closed or self._atexit_timeout is None:
            return 0, None
        before = self.stats()
        logger.info("draining %s at exit (up to %s s)", calls(before.in_queue + before.in_flight), self._atexit_timeout)
        self.close(self._atexit_timeout)
        return exit_report(delivery_engine(self._client), before.failed.get(Reason.SHUTDOWN_TIMEOUT, 0))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _after_fork(self) -> None:
        # The thread and its loop did not survive the fork. The inner client resets itself (see RehookClient), unless
        # the fork skipped os.register_at_fork's hooks: then it is reset here.
        reset_if_forked(self._client)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        _exit.release(self)  # the parent's to drain; the child's own calls start a thread (and a hold) again
