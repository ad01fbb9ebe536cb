"""
`RehookClient`: the public entry point. Calls return at once; the background `DeliveryEngine` does the rest.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import os
import ssl as ssl_module
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from time import monotonic as _monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from uuid import UUID

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
    SPOOL_OPEN_TIMEOUT,
)
from .._core.entry import KIND_CODES, Meta, queued
from .._core.exceptions import AuthenticationError, ClientStateError, RehookError
from .._core.outcome import Reason
from .._core.retry import Delivery, RetryPolicy
from .._core.types import Call, CallType
from .._delivery.engine import DeliveryEngine, deadline_after
from .._delivery.handle import EventHandle
from .._delivery.intake import DISABLED_MESSAGE
from .._durable.spooling import Spooling
from .._durable.spools import SpoolError
from .._mapping.audience import audience_key, engage_context
from .._mapping.mappings import Mapping as RehookMapping
from .._report.outcome_log import calls
from .._report.stats import Stats
from .._transports import Transport, TransportName, make_transport
from .arguments import Callback, build, identify_arguments
from .lifetime import after_fork, drain_at_exit, drain_collected, left_in_child
from .settings import check_settings

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["RehookClient", "delivery_engine"]

logger = logging.getLogger("rehook_sdk")

_get_running_loop = asyncio._get_running_loop


class _State(enum.Enum):
    NOT_STARTED = "not started"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class RehookClient:
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
        base_url: Default ``$REHOOK_BASE_URL`` or ``https://api.rehook.ai``. Must be https, except for
            loopback hosts (a local fake Rehook).
        max_queue_size: Calls that may wait for a sender; more are dropped as ``queue_full``.
        concurrency: Sender tasks, and so requests in flight at once (and connections kept alive); or
            ``"auto"``: as many as Rehook takes, found from its answers (docs/configuration.md), up to
            ``max_concurrency``.
        max_concurrency: The most requests in flight with ``concurrency="auto"`` (default 256).
        request_timeout: Seconds one HTTP request may take, connecting included.
        retry: How failed requests are retried (`RetryPolicy`).
        delivery: ``Delivery.AT_LEAST_ONCE`` (default) retries timeouts and lost connections after a request
            was sent, so Rehook may see such an event twice; ``Delivery.AT_MOST_ONCE`` never does, so such an
            event fails with ``maybe_delivered=True`` instead.
        conversion_events: Event names configured in Rehook as conversion events; a Track Event with one of
            these names (after mapping) and no ``metadata["referral_code"]`` is dropped as
            ``missing_referral_code``.
        mappings: Which calls send which Rehook action with which fields (`Mapping`, at most 50); they
            replace `DEFAULT_MAPPINGS`. Validated and compiled here.
        on_error: Called with every dropped or failed `Outcome`, on the client's loop (or in the calling thread
            for calls dropped at once). Exceptions it raises are logged and ignored.
        dead_letter: A file to append every failed call to (and those dropped as ``queue_full`` or
            ``client_closed``), one JSON line each, written by a background thread and flushed by `aclose`.
            The format is versioned and replayable (docs/durable-delivery.md, "Dead-letter file").
        session: An aiohttp ``ClientSession`` to send with; it is left open by `aclose`. By default the client
            makes and closes its own.
        proxy: An HTTP(S) proxy URL for every request (``http://user:password@proxy:3128``); its password is a
            secret like the API secret. With a plain-http ``base_url`` (a local fake) only a loopback proxy is
            accepted. By default the environment's, read as curl reads it when the client is made:
            ``HTTPS_PROXY`` (``HTTP_PROXY`` for an http base URL), then ``ALL_PROXY``, minus ``NO_PROXY`` (names
            with or without a leading ``.`` or ``*.``, ``host:port``, IP addresses, CIDR blocks, ``*``); a
            proxy scheme the SDK cannot use (``socks5://``) is a `ConfigurationError`, never a direct connection.
            Loopback hosts never take the environment's proxy.
        ssl: An `ssl.SSLContext` to verify Rehook (or a TLS-inspecting proxy) with: a corporate CA bundle
            (``ssl.create_default_context(cafile=...)``), client certificates; or ``"system"``: the operating
            system's trust store (macOS Keychain, Windows' certificate store, Linux's CA bundle) through the
            truststore package (the ``truststore`` extra). It must verify: verification cannot be turned off.
        max_payload_bytes: The largest request body sent (1 MiB); a call whose body is larger ends dropped as
            ``payload_too_large``, naming the size, before any upload.
        before_send: Called on the sender side with each `Call` before it is mapped: return it (changed with
            ``attrs.evolve`` to enrich or redact it) or ``None`` to drop it (``before_send``). The call it returns
            is the one sent, reported in the `Outcome` and written to the dead-letter file. An exception ends the
            call as ``invalid_payload``, naming it (logged once per distinct error, with its traceback).
        context: Context merged into every call's ``context`` (analytics.js's), the call's own keys winning:
            ``{"app": {"name": "shop", "version": "2.1"}}``. Copied when the client is made.
        default_properties: Properties merged into every track, page and screen call's properties (PostHog's
            super properties), the call's own keys winning. Copied when the client is made. Both are merged on
            the sender side, before ``before_send`` and the mappings.
        enabled: ``False`` keeps every call from leaving the process (test and staging environments): calls end
            dropped as ``disabled`` at once, counted in `stats`, with no log line, dead-letter line or
            ``on_error`` call, and credentials may be absent. ``None`` (the default) reads ``$REHOOK_DISABLED``
            (``1``/``true``/``yes``/``on`` disable).
        meter_provider: The OpenTelemetry ``MeterProvider`` to report metrics to (docs: Logging and metrics); by default
            the global one, when ``opentelemetry-api`` is installed (the ``otel`` extra). Until the application
            sets a provider, OpenTelemetry's default discards them. ``NoOpMeterProvider()`` turns them off.
        transport: How requests are sent: ``"auto"`` (the default; ``$REHOOK_TRANSPORT`` when left out) posts
            calls over the SDK's own keep-alive HTTP/1.1 connections (httptools) whenever there is no proxy and no
            ``session``, and through aiohttp otherwise; ``"aiohttp"`` always uses aiohttp; ``"fast"`` refuses a
            proxy or a session. ``check_auth`` always goes through aiohttp.
        headers: Extra HTTP headers for every request (a proxy's or a gateway's); they may replace the
            ``User-Agent`` (``rehook-sdk-python/<version> (python <x.y>; aiohttp <x.y>)``) but not
            ``Authorization``, ``Content-Type`` or ``Idempotency-Key``.
        atexit_timeout: Seconds to keep delivering at interpreter exit when the client was not closed (never
            started, its loop ended without ``aclose()``, or still running in another thread); what is still left
            then is reported with a ``RuntimeWarning`` and the dead-letter file. ``None`` never drains at exit.
        spool: A SQLite file that keeps every accepted call until its outcome, so that calls survive the process
            (SIGKILL, OOM, a deploy): the next client on the file, or another process sharing it, delivers what
            this one did not (docs/durable-delivery.md). Calls are still delivered from memory; the spool is
            written by a background thread in groups.
        spool_interval: Seconds a group of accepted calls waits before it is committed to the spool (what a
            SIGKILL can lose).
        spool_lease: Seconds after a process's last heartbeat that its spooled calls are taken over by others.
        spool_synchronous: ``"normal"`` (a committed call survives the process dying, not necessarily the machine
            losing power) or ``"full"`` (it survives both; each commit waits for the disk).
        max_spool_bytes: Beyond this many bytes of calls in the spool, calls are dropped as ``spool_full``.
        spool_take_unidentified: Also deliver the calls a spool kept from before rows named their application
            (a spool of format version 1), as this application's. Every spool row names the application (API key
            and base URL) that accepted it, and a client takes only its own; set this only where no other
            application has used the spool, until those calls are delivered.
        spool_retention: Seconds a failed call stays in the spool (from its acceptance) for ``rehook send
            --from-spool``: older ones are removed, with a count in the log (default 7 days; ``None`` keeps them).

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
        self._state = _State.NOT_STARTED
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
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Task[None] | None = None
        tokens = itertools.count(1)  # next() on it is atomic: calls from any thread get distinct tokens
        make_transport = type(self)._make_transport  # from the class: the closure must not hold the client

        def make_engine(session: aiohttp.ClientSession | None) -> DeliveryEngine:
            return settings.engine(make_transport, session, tokens.__next__)

        self._make_engine = make_engine
        self._tokens = tokens
        self._engine = self._new_engine(session)
        self._pid = os.getpid()
        self._atexit_timeout = settings.atexit_timeout
        after_fork(self._after_fork)
        if settings.atexit_timeout is not None:
            _exit.watch(self)

    # The transport the senders use; rehook_sdk.testing's in-memory client replaces it (nothing else should),
    # with a class or a staticmethod.
    _make_transport: Callable[..., Transport] = staticmethod(make_transport)

    def _new_engine(self, session: aiohttp.ClientSession | None) -> DeliveryEngine:
        engine = self._make_engine(session)
        # Awaiting a handle starts the client (weakly: the board must not keep the client alive).
        engine.board.starter = weakref.WeakMethod(self._kick)
        # Calls carry the time they were accepted only while a meter provider records their durations (~0.07 us
        # and 32 bytes each).
        self._metrics = engine.metrics
        self._admit = engine.intake.admit  # the hot path's one call into the engine
        return engine

    def _after_fork(self) -> None:
        """
        In a forked child: start over with an empty queue, fresh counters and no session, loop or tasks.

        Calls the parent had queued stay the parent's to deliver; the child never sends them, and their handles
        in the child resolve as dropped ``forked``. The parent's session and tasks are kept referenced (not
        closed) in the child (see `_lifetime`).
        """
        left_in_child(self._engine)
        self._lock = threading.Lock()  # the parent's lock may have been held by a thread the child does not have
        self._pid = os.getpid()
        self._loop = None
        self._closing = None
        if self._state is _State.RUNNING:
            self._state = _State.NOT_STARTED
        elif self._state is _State.CLOSING:
            self._state = _State.CLOSED
        # A session the user passed in belongs to the parent's event loop: the child makes its own.
        self._engine = self._new_engine(None)

    def __repr__(self) -> str:
        key = self._api_key[:4] + "…" if len(self._api_key) > 4 else "…"
        return f"<RehookClient api_key={key!r} base_url={self._base_url!r} state={self._state.value!r}>"

    # -- the calls ---------------------------------------------------------------------------------------

    def identify(
        self,
        user_id: str | int | UUID | Mapping[str, Any] | None = None,
        traits: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Create or update the customer ``user_id`` in Rehook (Identify User: ``POST /customers``).

        ``traits`` become the customer's metadata; ``traits["referral_code"]`` is also sent as the customer's
        own referral code. As in analytics.js, ``identify(traits)`` with a dict first means "no user id" (the
        call is then dropped: Rehook needs one).

        Args:
            user_id: The customer's id in your system (``source_id`` in Rehook). An int or UUID becomes its str.
            traits: What you know about the customer.
            options: analytics.js options: ``userId``, ``anonymousId``, ``timestamp``, ``context``,
                ``integrations``, ``messageId``; other keys go into ``context``.
            callback: Called with the `Outcome` once it is known.
            anonymous_id, timestamp, context, integrations, message_id: The same as the options, in Python
                spelling; they win over ``options``. ``message_id`` becomes the Idempotency-Key header.

        Returns:
            A handle; ``await`` it for the `Outcome`, or ignore it.

        Raises:
            TypeError: an argument of the wrong type.
        """
        if (
            type(user_id) is str
            and (traits is None or type(traits) is dict)
            and options is None
            and callback is None
            and anonymous_id is None
            and timestamp is None
            and context is None
            and integrations is None
            and message_id is None
        ):
            # The common shape, checked with exact types; equal to what build() would make (tests compare them).
            return self._fast(CallType.IDENTIFY, user_id, None, traits.copy() if traits is not None else None)
        user_id, traits, options = identify_arguments(user_id, traits, options)  # type: ignore[assignment]
        call, cb = build(
            "identify",
            CallType.IDENTIFY,
            options=options,
            callback=callback,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
            integrations=integrations,
            message_id=message_id,
            traits=traits,
        )
        return self._submit(call, cb)

    def track(
        self,
        event: str,
        properties: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Record that a user did ``event`` (Track Event: ``POST /events/invoke``).

        The user id comes from ``user_id=``, else ``options["userId"]``, else ``properties["userId"]`` (as in
        Segment's Rehook example that carries ``userId`` inside the properties). ``properties`` are the event's
        metadata, which Rehook's campaign rules read (keep numbers as numbers). For a conversion event (see
        ``conversion_events``) ``properties["referral_code"]`` must hold the advocate's referral code.

        Args:
            event: The event name, e.g. ``"signup"``.
            properties: The event's properties.
            options: analytics.js options, as for `identify`.
            callback: Called with the `Outcome` once it is known.
            user_id, anonymous_id, timestamp, context, integrations, message_id: As in `identify`.

        Returns:
            A handle; ``await`` it for the `Outcome`, or ignore it.

        Raises:
            TypeError: an argument of the wrong type.
        """
        if (
            type(event) is str
            and type(user_id) is str
            and (properties is None or type(properties) is dict)
            and options is None
            and callback is None
            and anonymous_id is None
            and timestamp is None
            and context is None
            and integrations is None
            and message_id is None
        ):
            # The hot path of a request handler: exact types only, nothing else to normalise. Equal to what
            # build() would make (tests compare them); the Call itself is built later, in the sender.
            return self._fast(CallType.TRACK, user_id, event, properties.copy() if properties is not None else None)
        if not isinstance(event, str):
            raise TypeError(f"track(): event must be a str, not {type(event).__qualname__}")
        call, cb = build(
            "track",
            CallType.TRACK,
            options=options,
            callback=callback,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
            integrations=integrations,
            message_id=message_id,
            event=str.__str__(event),
            properties=properties,
        )
        return self._submit(call, cb)

    def page(
        self,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Record a page view: sent as a Track Event named ``"page"`` (Segment's Rehook mapping).

        ``name`` is added to the metadata as ``"name"`` unless the properties already have one. Arguments and
        return value as in `track`.
        """
        return self._view(
            "page", CallType.PAGE, name, properties, options, callback,
            user_id=user_id, anonymous_id=anonymous_id, timestamp=timestamp, context=context,
            integrations=integrations, message_id=message_id,
        )  # fmt: skip

    def screen(
        self,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Record a mobile screen view: sent as a Track Event named ``"screen"``. As `page` otherwise.
        """
        return self._view(
            "screen", CallType.SCREEN, name, properties, options, callback,
            user_id=user_id, anonymous_id=anonymous_id, timestamp=timestamp, context=context,
            integrations=integrations, message_id=message_id,
        )  # fmt: skip

    def _view(
        self,
        method: str,
        call_type: CallType,
        name: object,
        properties: object,
        options: object,
        callback: object,
        **fields: Any,
    ) -> EventHandle:
        call, cb = build(
            method, call_type, options=options, callback=callback, name=name, properties=properties, **fields
        )
        return self._submit(call, cb)

    def group(
        self,
        group_id: str | int | UUID | None = None,
        traits: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Accepted for drop-in compatibility with analytics.js; Rehook has no group action, so the call ends
        dropped as ``unsupported_call`` (reported like every other outcome).
        """
        call, cb = build(
            "group", CallType.GROUP, options=options, callback=callback, group_id=group_id, traits=traits,
            user_id=user_id, anonymous_id=anonymous_id, timestamp=timestamp, context=context,
            integrations=integrations, message_id=message_id,
        )  # fmt: skip
        return self._submit(call, cb)

    def alias(
        self,
        user_id: str | int | UUID | None = None,
        previous_id: str | int | UUID | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Accepted for drop-in compatibility with analytics.js; Rehook has no alias action, so the call ends
        dropped as ``unsupported_call``.
        """
        call, cb = build(
            "alias", CallType.ALIAS, options=options, callback=callback, user_id=user_id,
            previous_id=previous_id, timestamp=timestamp, context=context, integrations=integrations,
            message_id=message_id,
        )  # fmt: skip
        return self._submit(call, cb)

    def audience(
        self,
        user_id: str | int | UUID,
        audience_name: str,
        member: bool = True,
        callback: Callback | None = None,
        *,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Say that ``user_id`` entered (``member=True``) or left an Engage audience, as Segment Engage does.

        Sends an identify whose only trait is the audience name snake_cased as lodash does (as Engage keys it) with
        a boolean: ``audience("u1", "Order Completed Last 30 Days")`` identifies ``u1`` with
        ``{"order_completed_last_30_days": True}``, and ``context.personas`` carries ``computation_class``
        ``"audience"`` and ``computation_key``, as Engage's do. Mappings apply as to any identify.

        Raises:
            TypeError: ``audience_name`` is not a str or ``member`` not a bool.
            ValueError: the audience name's key would be empty (no letter, digit or emoji).
        """
        if not isinstance(audience_name, str):
            raise TypeError(f"audience(): audience_name must be a str, not {type(audience_name).__qualname__}")
        if not isinstance(member, bool):
            raise TypeError(f"audience(): member must be a bool, not {type(member).__qualname__}")
        key = audience_key(audience_name)
        personas = {**(context or {}).get("personas", {}), **engage_context(key)}
        return self.identify(
            user_id,
            {key: member},
            None,
            callback,
            timestamp=timestamp,
            context={**(context or {}), "personas": personas},
            message_id=message_id,
        )

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
        elif self._state is _State.RUNNING and _get_running_loop() is self._loop:
            self._admit(handle, meta, data)
        else:
            self._enqueue_slow(handle, meta, data, callback)
        return handle

    def _enqueue_slow(
        self, handle: EventHandle, meta: Meta, data: dict[str, Any] | None, callback: Callback | None
    ) -> None:
        if self._pid != os.getpid():  # forked by a means that skipped os.register_at_fork's hooks
            self._after_fork()
            handle._board = self._engine.board
            self._engine.board.attach(meta[0], callback)
        loop = _get_running_loop()
        with self._lock:
            if loop is not None:
                self._ensure_on(loop)
            state = self._state
            if state is _State.RUNNING or state is _State.NOT_STARTED:
                # From another thread, or before any loop exists (delivered once the client starts).
                self._engine.intake.admit_from(handle, meta, data, loop is self._loop)
                return
        self._engine.intake.refuse(handle, meta, Reason.CLIENT_CLOSED)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _start_on(self, loop: asyncio.AbstractEventLoop) -> None:
        # Caller holds self._lock and has checked the state is NOT_STARTED, or that the client's loop has closed.
        self._loop = loop
        self._engine.start(loop)
        self._state = _State.RUNNING

    def _ensure_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        Start on ``loop`` (running, in this thread) if not started yet, or start over on it if the loop the client
        ran on has closed: nothing can be in flight on a closed loop, and what is still queued is sent from here.
        The everyday case of a module-level client used by several ``asyncio.run()`` calls, or by pytest's
        per-test loops. Caller holds self._lock.
        """
        own = self._loop
        stranded = self._state is _State.RUNNING and own is not None and own is not loop and own.is_closed()
        if self._state is _State.NOT_STARTED or stranded:
            self._start_on(loop)

    def _kick(self) -> None:
        """
        A handle is being awaited: start the client on the awaiting loop if it is not running anywhere.
        """
        loop = _get_running_loop()
        if loop is not None and self._loop is not loop:
            with self._lock:
                self._ensure_on(loop)

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
        loop = asyncio.get_running_loop()
        await self._open_spool()
        with self._lock:
            self._ensure_on(loop)
            if self._state is not _State.RUNNING:
                raise ClientStateError(f"cannot start a RehookClient that is {self._state.value}")
            if self._loop is not loop:
                raise ClientStateError("this RehookClient already runs on another event loop")

    async def _open_spool(self) -> None:
        with self._lock:
            if self._state is not _State.NOT_STARTED:
                return
            spooling = self._engine.open_spool()
        if spooling is None:
            return
        try:
            await spooling.opened(SPOOL_OPEN_TIMEOUT)
        except SpoolError:
            if self._forget_spool(spooling):  # (a call from another thread started the client meanwhile: no)
                await asyncio.to_thread(spooling.spool.close, release=False, timeout=SPOOL_OPEN_TIMEOUT)
                raise

    def _forget_spool(self, spooling: Spooling) -> bool:
        with self._lock:
            return self._state is _State.NOT_STARTED and self._engine.forget_spool() is spooling

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
        loop = asyncio.get_running_loop()
        with self._lock:
            self._ensure_on(loop)
        if self._loop is not loop:
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
        with self._lock:
            state = self._state
            if state is _State.CLOSED:
                return
            own = self._loop
            if state is _State.RUNNING and own is not None and own is not loop:
                if not own.is_closed():
                    raise ClientStateError("aclose() must be awaited on the event loop the client runs on")
                # The loop the client ran on is gone, and its senders with it: deliver what is queued from here.
                self._start_on(loop)
            if state is not _State.CLOSING:
                self._state = _State.CLOSING
                if state is _State.NOT_STARTED:
                    # Calls may have been queued before any loop ran: deliver them here.
                    self._loop = loop
                    self._engine.start(loop)
                self._closing = loop.create_task(self._close(deadline_after(loop, timeout)))
            closing = self._closing
        assert closing is not None
        await asyncio.shield(closing)

    async def _close(self, deadline: float | None) -> None:
        try:
            lost = await self._engine.stop(deadline)
            if lost:
                logger.warning("aclose() deadline passed; %s failed as shutdown_timeout", calls(lost))
        finally:
            self._state = _State.CLOSED

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
        with self._lock:
            self._ensure_on(asyncio.get_running_loop())
        if self._state is not _State.RUNNING:
            raise ClientStateError(f"cannot check credentials on a RehookClient that is {self._state.value}")
        if self._loop is not asyncio.get_running_loop():
            raise ClientStateError("check_auth() must be awaited on the event loop the client runs on")
        attempt = await self._engine.transport.get(CHECK_AUTH_PATH)
        if attempt.tls:
            raise RehookError(f"the TLS handshake with {self._base_url} refused its certificate: {attempt.error}")
        if attempt.from_proxy:
            raise RehookError(
                f"the proxy refused to open the tunnel to {self._base_url} with HTTP {attempt.status}: {attempt.body}"
            )
        if attempt.status == 401:
            self._engine.note_auth_failure(attempt)  # the calls would be refused too: fail them without sending
        if attempt.status in (401, 403):
            raise AuthenticationError(
                f"Rehook refused the API key/secret (HTTP {attempt.status}); check {API_KEY_ENV} and "
                f"{API_SECRET_ENV} and that the application exists",
                status=attempt.status,
                body=attempt.body or "",
            )
        if attempt.status is None:
            raise RehookError(f"could not reach Rehook at {self._base_url}: {attempt.error}")
        if not 200 <= attempt.status < 300:
            raise RehookError(f"Rehook's credential check answered HTTP {attempt.status}: {attempt.body}")

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
        timeout = self._atexit_timeout
        state = self._state
        engine = self._engine
        if timeout is None or state is _State.CLOSED or state is _State.CLOSING or self._pid != os.getpid():
            return 0, None
        if not engine.pending_count() and state is _State.NOT_STARTED:
            return 0, None
        loop = self._loop if state is _State.RUNNING else None
        return drain_at_exit(engine, loop, self.aclose, timeout)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        state = getattr(self, "_state", _State.CLOSED)
        if state is _State.CLOSED or state is _State.CLOSING:
            return
        engine: DeliveryEngine | None = getattr(self, "_engine", None)
        if engine is None:
            return
        pending = engine.pending_count()  # __del__ may run in any thread: no iteration over live sets
        if not pending and (state is _State.NOT_STARTED or self._pid != os.getpid()):
            return
        loop = self._loop
        running = loop if state is _State.RUNNING and loop is not None and loop.is_running() else None
        # Keep delivering what was accepted; scheduled before the warning, which may be turned into an exception.
        drain_collected(engine, running, self._atexit_timeout)
        _warn(
            f"unclosed RehookClient with {calls(pending)} still without an outcome; "
            "use 'async with RehookClient(...)' or 'await client.aclose()'",
            ResourceWarning,
            source=self,
            stacklevel=1,
        )


def delivery_engine(client: RehookClient) -> DeliveryEngine:
    """
    The delivery engine behind ``client``: the package's one seam into it, for the parts of the package that drive
    delivery themselves (the command line's relay and replay, the sync client's exit report).
    """
    return client._engine
