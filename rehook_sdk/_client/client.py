"""
`RehookClient`: the public entry point. Calls return at once; the background `DeliveryEngine` does the rest.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl as ssl_module
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from time import monotonic as _monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import aiohttp

from .. import _exit
from .._core.constants import (
    API_KEY_ENV,
    API_SECRET_ENV,
    CHECK_AUTH_PATH,
    DEFAULT_ATEXIT_TIMEOUT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SPOOL_INTERVAL,
    DEFAULT_SPOOL_LEASE,
    DEFAULT_SPOOL_RETENTION,
)
from .._core.entry import KIND_CODES, Meta, entry_call, queued
from .._core.exceptions import AuthenticationError, ClientStateError, RehookError
from .._core.outcome import Reason
from .._core.retry import Delivery, RetryPolicy
from .._core.types import Call, CallType
from .._delivery.engine import DeliveryEngine, deadline_after
from .._delivery.handle import EventHandle
from .._delivery.intake import DISABLED_MESSAGE
from .._mapping.mappings import Mapping as RehookMapping
from .._report.outcome_log import calls
from .._report.stats import Stats
from .._transports import Transport, TransportName, make_transport
from .._transports.base import Attempt
from .arguments import Callback
from .binding import LoopBinding, State
from .calls import Calls
from .lifetime import after_fork, drain_at_exit, drain_collected, left_in_child
from .settings import check_settings

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["RehookClient", "delivery_engine", "reset_if_forked"]

logger = logging.getLogger("rehook_sdk")

_get_running_loop = asyncio._get_running_loop


class RehookClient(Calls):
    """
    Sends identify and track calls (and, with a mapping for them, page/screen/group) to Rehook from asyncio code,
    without ever blocking the caller.

    Each call is queued and returns an `EventHandle` at once; sender tasks deliver in the background, one
    HTTP request per call over a keep-alive session, retrying with backoff. Every call ends in exactly one
    `Outcome`: await the handle, pass a callback, set ``on_error``, read `stats`, or read the ``rehook_sdk``
    log.

    The client may be made anywhere (module level included); it starts on ``async with``, ``await start()``,
    or its first call inside a running event loop, and belongs to that loop from then on. Calls are safe from
    any thread. Close it with ``await aclose()`` (``async with`` does) to deliver what is queued.

    Args:
        api_key: The Rehook application's API key; default ``$REHOOK_API_KEY``.
        api_secret: Its API secret; default ``$REHOOK_API_SECRET``. Never logged or shown in ``repr``.
        session: An aiohttp ``ClientSession`` to send with; it is left open by `aclose`. By default the client
            makes and closes its own.
        atexit_timeout: Seconds to keep delivering at interpreter exit when the client was not closed (never
            started, its loop ended without ``aclose()``, or still running in another thread); what is still left
            then is reported with a ``RuntimeWarning`` and the dead-letter file. ``None`` never drains at exit.
        settings: Every other setting, by keyword: `ClientSettings` documents each, and the Configuration page
            (docs/configuration.md) shows them all with their defaults.

    Raises:
        ConfigurationError: missing credentials or an invalid setting.
        MappingError: an invalid mapping (a `ConfigurationError`), naming it and what is wrong.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        concurrency: int | Literal["auto"] = DEFAULT_CONCURRENCY,
        max_concurrency: int | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        retry: RetryPolicy | None = None,
        delivery: Delivery | Literal["at_least_once", "at_most_once"] = Delivery.AT_LEAST_ONCE,
        conversion_events: Iterable[str] = (),
        mappings: Iterable[RehookMapping] | None = None,
        on_error: Callback | None = None,
        dead_letter: str | os.PathLike[str] | None = None,
        session: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        proxy: str | None = None,
        ssl: ssl_module.SSLContext | Literal["system"] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        before_send: Callable[[Call], Call | None] | None = None,
        context: Mapping[str, Any] | None = None,
        default_properties: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        meter_provider: MeterProvider | None = None,
        transport: TransportName | None = None,
        atexit_timeout: float | None = DEFAULT_ATEXIT_TIMEOUT,
        spool: str | os.PathLike[str] | None = None,
        spool_interval: float = DEFAULT_SPOOL_INTERVAL,
        spool_lease: float = DEFAULT_SPOOL_LEASE,
        spool_synchronous: Literal["normal", "full"] = "normal",
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        spool_take_unidentified: bool = False,
        spool_retention: float | None = DEFAULT_SPOOL_RETENTION,
    ) -> None:
        # Set first so that __del__ works whatever fails below.
        self._binding = LoopBinding()
        settings = check_settings(
            api_key=api_key, api_secret=api_secret, base_url=base_url, max_queue_size=max_queue_size,
            concurrency=concurrency, max_concurrency=max_concurrency, request_timeout=request_timeout, retry=retry,
            delivery=delivery, conversion_events=conversion_events, mappings=mappings, on_error=on_error,
            dead_letter=dead_letter, session=session, headers=headers, proxy=proxy, ssl=ssl,
            max_payload_bytes=max_payload_bytes, before_send=before_send, context=context,
            default_properties=default_properties, enabled=enabled, meter_provider=meter_provider,
            transport=transport, atexit_timeout=atexit_timeout, spool=spool, spool_interval=spool_interval,
            spool_lease=spool_lease, spool_synchronous=spool_synchronous, max_spool_bytes=max_spool_bytes,
            spool_take_unidentified=spool_take_unidentified, spool_retention=spool_retention,
        )  # fmt: skip
        self._disabled = settings.disabled
        self._api_key = settings.api_key
        self._base_url = str(settings.url)
        tokens = itertools.count(1)  # next() on it is atomic: calls from any thread get distinct tokens
        make_transport = type(self)._make_transport  # from the class: the closure must not hold the client

        def make_engine(session: aiohttp.ClientSession | None) -> DeliveryEngine:
            return settings.engine(make_transport, session, tokens.__next__)

        self._make_engine = make_engine
        self._tokens = tokens
        self._pid = os.getpid()
        self._atexit_timeout = settings.atexit_timeout
        self._engine = self._new_engine(session)
        after_fork(self._after_fork)
        if settings.atexit_timeout is not None:
            _exit.watch(self)

    # The senders' transport; only rehook_sdk.testing's memory client replaces it (with a class or a staticmethod).
    _make_transport: Callable[..., Transport] = staticmethod(make_transport)

    def _new_engine(self, session: aiohttp.ClientSession | None) -> DeliveryEngine:
        engine = self._make_engine(session)
        # Awaiting a handle starts the client (weakly: the board must not keep the client alive).
        engine.board.starter = weakref.WeakMethod(self._kick)
        # Calls carry the time they were accepted only while a meter provider records their durations.
        self._metrics = engine.metrics
        self._admit = engine.intake.admit  # the hot path's one call into the engine
        return engine

    def _after_fork(self) -> None:
        """
        In a forked child: start over with an empty queue, fresh counters and no session, loop or tasks. Calls the
        parent had queued stay the parent's to deliver; their handles here resolve as dropped ``forked`` (`lifetime`).
        """
        if self._pid == os.getpid():
            return  # reset already (by the SyncRehookClient around it)
        left_in_child(self._engine)
        self._binding.after_fork()
        self._pid = os.getpid()
        # A session the user passed in belongs to the parent's event loop: the child makes its own.
        self._engine = self._new_engine(None)

    def __repr__(self) -> str:
        key = self._api_key[:4] + "…" if len(self._api_key) > 4 else "…"
        shown = f"api_key={key!r} base_url={self._base_url!r} state={self._binding.state.value!r}"
        return f"<RehookClient {shown}{' enabled=False' if self._disabled else ''}>"

    # -- queueing ----------------------------------------------------------------------------------------

    def _fast(self, kind: CallType, user_id: str, event: str | None, data: dict[str, Any] | None) -> EventHandle:
        board = self._engine.board
        token = next(self._tokens)
        handle = EventHandle(board, token, None, kind, user_id, event, data)
        board.attach(token, None)
        metrics = self._metrics
        accepted = _monotonic() if metrics is not None and metrics.timed else 0.0
        return self._enqueue(handle, (token, None, KIND_CODES[kind], user_id, event, accepted), data, None)

    def _submit(self, call: Call, callback: Callback | None) -> EventHandle:
        board = self._engine.board
        token = next(self._tokens)
        handle = EventHandle(board, token, call)
        board.attach(token, callback)
        metrics = self._metrics
        accepted = _monotonic() if metrics is not None and metrics.timed else 0.0
        return self._enqueue(handle, queued(token, call, accepted), None, callback)

    def _enqueue(
        self, handle: EventHandle, meta: Meta, data: dict[str, Any] | None, callback: Callback | None
    ) -> EventHandle:
        # The hot path: a call from a task of the client's own loop while it runs.
        if self._disabled:
            self._engine.intake.disabled(handle, meta)
        elif self._binding.live is _get_running_loop():
            self._admit(handle, meta, data)
        else:
            return self._enqueue_slow(handle, meta, data, callback)
        return handle

    def _enqueue_slow(
        self, handle: EventHandle, meta: Meta, data: dict[str, Any] | None, callback: Callback | None
    ) -> EventHandle:
        if self._pid != os.getpid():  # forked by a means that skipped os.register_at_fork's hooks
            self._after_fork()  # the handle belongs to the parent's engine now: the call starts over on the new one
            call = meta[1]
            return self._submit(call if call is not None else entry_call(meta, data), callback)
        loop = _get_running_loop()
        binding = self._binding
        with binding.lock:
            if loop is not None:
                binding.ensure_on(loop, self._engine)
            state = binding.state
            if state is State.RUNNING or state is State.NOT_STARTED:
                # From another thread, or before any loop exists (delivered once the client starts).
                self._engine.intake.admit_from(handle, meta, data, loop is binding.loop)
                return handle
        self._engine.intake.refuse(handle, meta, Reason.CLIENT_CLOSED)
        return handle

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _kick(self) -> None:
        # A handle is being awaited: start the client on the awaiting loop if it is not running anywhere.
        loop = _get_running_loop()
        if loop is not None and self._binding.loop is not loop:
            with self._binding.lock:
                self._binding.ensure_on(loop, self._engine)

    async def start(self) -> None:
        """
        Start the sender tasks on the running loop. Not needed with ``async with`` or after a first call.

        With ``spool=``, the spool is opened first (nothing is opened before a client starts): one that cannot be
        opened fails this call, and the client stays unstarted. A client started by a call instead logs that
        error and delivers from memory, opening the spool again as it goes.

        Raises:
            ClientStateError: the client is closed, or already runs on another event loop.
            SpoolError: the spool cannot be opened (not a spool, a newer format, the database unreachable...).
        """
        await self._binding.open_spool(self._engine)
        self._binding.require_here(
            self._engine, "cannot start a RehookClient", "this RehookClient already runs on another event loop"
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def flush(self, timeout: float | None = None) -> int:
        """
        Wait until every call accepted so far has its outcome, or ``timeout`` seconds pass.

        Calls made while waiting are not waited for.

        Returns:
            How many of those calls still have no outcome (0: all done).
        """
        loop = self._binding.ensure_here(self._engine)
        if self._binding.loop is not loop:
            raise ClientStateError("flush() must be awaited on the event loop the client runs on")
        return await self._engine.wait_for(self._engine.pending(), deadline_after(loop, timeout))

    async def aclose(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """
        Stop accepting calls, deliver what is queued within ``timeout`` seconds, then close.

        Later calls end dropped as ``client_closed``. When the deadline comes, retry waits and requests in
        flight are cancelled, and every call still without an outcome fails as ``shutdown_timeout`` (in-flight
        ones with ``maybe_delivered=True``). The aiohttp session is closed if the client made it. Calling
        aclose() again does nothing more; a concurrent second call waits for the first.

        Args:
            timeout: Seconds to keep delivering; ``None`` waits without limit.
        """
        loop = asyncio.get_running_loop()
        engine = self._engine
        closing = self._binding.begin_close(loop, engine, lambda: _stop(engine, deadline_after(loop, timeout)))
        if closing is not None:
            await asyncio.shield(closing)

    async def check_auth(self) -> None:
        """
        Ask Rehook whether the API key and secret are valid (``GET /events/segment/check-auth``).

        Raises:
            AuthenticationError: Rehook answered 401 (or 403): the credentials are wrong.
            RehookError: Rehook could not be reached (the message names a refused TLS certificate or a proxy's
                refusal), or answered something unexpected.
            ClientStateError: the client is closed, runs on another loop, or is disabled (nothing is sent).
        """
        if self._disabled:
            raise ClientStateError(f"check_auth() sends a request, and {DISABLED_MESSAGE}")
        self._binding.require_here(
            self._engine,
            "cannot check credentials on a RehookClient",
            "check_auth() must be awaited on the event loop the client runs on",
        )
        _check_answer(await self._engine.transport.get(CHECK_AUTH_PATH), self._base_url, self._engine)

    def stats(self) -> Stats:
        """
        The client's counters now (see `Stats`).
        """
        return self._engine.stats()

    def _drain_at_exit(self) -> tuple[int, str | None]:
        """
        At interpreter exit (see ``_exit.py``): close with ``atexit_timeout``, from whatever loop can still run.

        Returns:
            How many calls were not delivered in time, and the dead-letter file they went to.
        """
        if self._pid != os.getpid():
            return 0, None
        return drain_at_exit(self._binding, self._engine, self.aclose, self._atexit_timeout)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        engine: DeliveryEngine | None = getattr(self, "_engine", None)
        if engine is None:
            return
        # Keep delivering what was accepted; scheduled before the warning, which may be turned into an exception.
        pending = drain_collected(self._binding, engine, self._pid != os.getpid(), self._atexit_timeout)
        if pending:
            _warn(
                f"unclosed RehookClient with {calls(pending)} still without an outcome; "
                "use 'async with RehookClient(...)' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )


async def _stop(engine: DeliveryEngine, deadline: float | None) -> None:
    lost = await engine.stop(deadline)
    if lost:
        logger.warning("aclose() deadline passed; %s failed as shutdown_timeout", calls(lost))


def _check_answer(attempt: Attempt, base_url: str, engine: DeliveryEngine) -> None:
    """
    Raise what `RehookClient.check_auth` says about Rehook's answer to the credential check; a 401 also fails the
    calls waiting (they would be refused too) without sending them.
    """
    if attempt.tls:
        raise RehookError(f"the TLS handshake with {base_url} refused its certificate: {attempt.error}")
    if attempt.from_proxy:
        raise RehookError(
            f"the proxy refused to open the tunnel to {base_url} with HTTP {attempt.status}: {attempt.body}"
        )
    if attempt.status == 401:
        engine.note_auth_failure(attempt)
    if attempt.status in (401, 403):
        raise AuthenticationError(
            f"Rehook refused the API key/secret (HTTP {attempt.status}); check {API_KEY_ENV} and "
            f"{API_SECRET_ENV} and that the application exists",
            status=attempt.status,
            body=attempt.body or "",
        )
    if attempt.status is None:
        raise RehookError(f"could not reach Rehook at {base_url}: {attempt.error}")
    if not 200 <= attempt.status < 300:
        raise RehookError(f"Rehook's credential check answered HTTP {attempt.status}: {attempt.body}")


def delivery_engine(client: RehookClient) -> DeliveryEngine:
    """
    The delivery engine behind ``client``: the package's one seam into it, for the parts of the package that drive
    delivery themselves (the command line's relay and replay, the sync client's exit report).
    """
    return client._engine


def reset_if_forked(client: RehookClient) -> None:
    """
    In a forked child, reset ``client`` as the fork hooks do (see `RehookClient._after_fork`), unless they have: the
    package's seam for a `SyncRehookClient` forked by a means that skipped ``os.register_at_fork``'s hooks (uWSGI).
    """
    client._after_fork()
