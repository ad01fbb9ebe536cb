"""
Every `RehookClient` setting checked once, when a client is made: the values the client keeps, and what makes its
delivery engine (the first one, and each forked child's). Nothing is opened or connected here.
"""

from __future__ import annotations

import logging
import os
import re
import ssl as ssl_module
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import aiohttp
import attrs
from yarl import URL

from .._core.constants import (
    API_KEY_ENV,
    API_SECRET_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DISABLED_ENV,
)
from .._core.encoding import header_problem
from .._core.exceptions import ConfigurationError
from .._core.redaction import redact_location
from .._core.retry import Delivery, RetryPolicy
from .._core.types import Call, CallType
from .._delivery.engine import DeliveryEngine
from .._durable.deadletter import DeadLetterWriter
from .._durable.spooling import Spooling
from .._durable.spools import is_postgres_url, need_psycopg
from .._durable.spools.identity import application_identity
from .._mapping.mappings import DEFAULT_MAPPINGS, compile_mappings
from .._mapping.mappings import Mapping as RehookMapping
from .._mapping.router import Router
from .._transports import (
    RESERVED_HEADERS,
    Transport,
    TransportName,
    check_base_url,
    check_ssl,
    check_transport,
    proxy_for,
)
from .arguments import Callback

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["ClientSettings", "Settings", "check_settings"]

logger = logging.getLogger("rehook_sdk")


class ClientSettings(TypedDict, total=False):
    """
    The settings of `RehookClient` and `SyncRehookClient` besides the credentials, each by keyword (the async
    client also takes ``session``; each client takes ``atexit_timeout``). A setting left out takes its default
    (docs/configuration.md shows them all).

    Attributes:
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
            replace `DEFAULT_MAPPINGS`. Validated and compiled when the client is made.
        on_error: Called with every dropped or failed `Outcome`, on the client's loop (or in the calling thread
            for calls dropped at once). Exceptions it raises are logged and ignored.
        dead_letter: A file to append every failed call to (and those dropped as ``queue_full`` or
            ``client_closed``), one JSON line each, written by a background thread and flushed by `aclose`.
            The format is versioned and replayable (docs/durable-delivery.md, "Dead-letter file").
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
    """

    base_url: str | None
    max_queue_size: int
    concurrency: int | Literal["auto"]
    max_concurrency: int | None
    request_timeout: float
    retry: RetryPolicy | None
    delivery: Delivery | Literal["at_least_once", "at_most_once"]
    conversion_events: Iterable[str]
    mappings: Iterable[RehookMapping] | None
    on_error: Callback | None
    dead_letter: str | os.PathLike[str] | None
    headers: Mapping[str, str] | None
    proxy: str | None
    ssl: ssl_module.SSLContext | Literal["system"] | None
    max_payload_bytes: int
    before_send: Callable[[Call], Call | None] | None
    context: Mapping[str, Any] | None
    default_properties: Mapping[str, Any] | None
    enabled: bool | None
    meter_provider: MeterProvider | None
    transport: TransportName | None
    spool: str | os.PathLike[str] | None
    spool_interval: float
    spool_lease: float
    spool_synchronous: Literal["normal", "full"]
    max_spool_bytes: int
    spool_take_unidentified: bool
    spool_retention: float | None


MakeTransport = Callable[..., Transport]


@attrs.frozen
class Settings:
    """
    A client's settings, checked: what it shows (`api_key`, `url`), whether it sends at all, and what its delivery
    engine is made of.
    """

    disabled: bool
    api_key: str
    api_secret: str
    url: URL
    headers: dict[str, str]
    proxy: URL | None
    ssl_context: ssl_module.SSLContext | None
    request_timeout: float
    transport: TransportName
    senders: int
    adaptive: bool
    queue_size: int
    router: Router
    retry: RetryPolicy
    delivery: Delivery
    on_error: Callback | None
    dead_letter: str | os.PathLike[str] | None
    before_send: Callable[[Call], Call | None] | None
    defaults: Callable[[Call], Call] | None
    meter_provider: MeterProvider | None
    open_spool: Callable[[], Spooling] | None
    atexit_timeout: float | None

    def engine(
        self, make_transport: MakeTransport, session: aiohttp.ClientSession | None, tokens: Callable[[], int]
    ) -> DeliveryEngine:
        """
        A delivery engine with these settings, over a transport ``make_transport`` makes (a new one per engine: a
        forked child never uses its parent's connections).
        """
        transport = make_transport(
            self.url,
            self.api_key,
            self.api_secret,
            request_timeout=self.request_timeout,
            concurrency=self.senders,
            session=session,
            headers=self.headers,
            proxy=self.proxy,
            ssl_context=self.ssl_context,
            transport=self.transport,
        )
        return DeliveryEngine(
            transport=transport,
            max_queue_size=self.queue_size,
            concurrency=self.senders,
            router=self.router,
            retry=self.retry,
            delivery=self.delivery,
            on_error=self.on_error,
            dead_letter=DeadLetterWriter(self.dead_letter) if self.dead_letter is not None else None,
            before_send=self.before_send,
            defaults=self.defaults,
            meter_provider=self.meter_provider,
            metrics_name=str(self.url),
            adaptive=self.adaptive,
            open_spool=self.open_spool,
            tokens=tokens,
        )


def check_settings(
    *,
    api_key: str | None,
    api_secret: str | None,
    base_url: str | None,
    max_queue_size: int,
    concurrency: int | Literal["auto"],
    max_concurrency: int | None,
    request_timeout: float,
    retry: RetryPolicy | None,
    delivery: Delivery | Literal["at_least_once", "at_most_once"],
    conversion_events: Iterable[str],
    mappings: Iterable[RehookMapping] | None,
    on_error: Callback | None,
    dead_letter: str | os.PathLike[str] | None,
    session: aiohttp.ClientSession | None,
    headers: Mapping[str, str] | None,
    proxy: str | None,
    ssl: ssl_module.SSLContext | Literal["system"] | None,
    max_payload_bytes: int,
    before_send: Callable[[Call], Call | None] | None,
    context: Mapping[str, Any] | None,
    default_properties: Mapping[str, Any] | None,
    enabled: bool | None,
    meter_provider: MeterProvider | None,
    transport: TransportName | None,
    atexit_timeout: float | None,
    spool: str | os.PathLike[str] | None,
    spool_interval: float,
    spool_lease: float,
    spool_synchronous: Literal["normal", "full"],
    max_spool_bytes: int,
    spool_take_unidentified: bool,
    spool_retention: float | None,
) -> Settings:
    """
    Check every setting (environment defaults included) and return them as `Settings`.

    Raises:
        ConfigurationError: missing credentials or an invalid setting (`MappingError` for a mapping).
    """
    disabled = not _enabled(enabled)
    api_key, api_secret = _credentials(api_key, api_secret, disabled)
    if base_url is not None and not str(base_url).strip():
        raise ConfigurationError(f"base_url must be a URL, got {base_url!r}; leave it out for the default")
    url = check_base_url(base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)
    proxy_url = proxy_for(url, proxy)
    if not _positive_number(request_timeout):
        raise ConfigurationError(f"request_timeout must be a number > 0, got {request_timeout!r}")
    for name, hook in (("on_error", on_error), ("before_send", before_send)):
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"{name} must be callable")
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise ConfigurationError("session must be an aiohttp.ClientSession")
    if atexit_timeout is not None and not _non_negative_number(atexit_timeout):
        raise ConfigurationError(f"atexit_timeout must be a number >= 0 or None, got {atexit_timeout!r}")
    senders, adaptive = _senders(concurrency, max_concurrency)
    return Settings(
        disabled=disabled,
        api_key=api_key,
        api_secret=api_secret,
        url=url,
        headers=_extra_headers(headers),
        proxy=proxy_url,
        ssl_context=check_ssl(ssl),
        request_timeout=float(request_timeout),
        transport=check_transport(transport, proxy=proxy_url, session=session),
        senders=senders,
        adaptive=adaptive,
        queue_size=_positive_int(max_queue_size, "max_queue_size"),
        router=Router(
            compile_mappings(DEFAULT_MAPPINGS if mappings is None else mappings),
            _event_names(conversion_events),
            max_payload_bytes=_positive_int(max_payload_bytes, "max_payload_bytes"),
        ),
        retry=retry if retry is not None else RetryPolicy(),
        delivery=_delivery(delivery),
        on_error=on_error,
        dead_letter=dead_letter,
        before_send=before_send,
        defaults=_defaults(_str_keyed(context, "context"), _str_keyed(default_properties, "default_properties")),
        meter_provider=meter_provider,
        open_spool=_spool_opener(
            None if disabled else spool,
            application_identity(str(url), api_key),
            spool_take_unidentified,
            spool_retention,
            spool_interval,
            spool_lease,
            spool_synchronous,
            max_spool_bytes,
        ),
        atexit_timeout=atexit_timeout,
    )


def _credentials(api_key: str | None, api_secret: str | None, disabled: bool) -> tuple[str, str]:
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    api_secret = api_secret if api_secret is not None else os.environ.get(API_SECRET_ENV)
    if disabled:  # nothing will be sent: credentials may be absent (test and staging environments)
        api_key, api_secret = api_key or "disabled", api_secret or "disabled"
        logger.info("a RehookClient is disabled: its calls end dropped as 'disabled' and nothing is sent")
    if not api_key or not api_secret:
        raise ConfigurationError(
            f"Rehook credentials are missing: pass api_key and api_secret, or set {API_KEY_ENV} and {API_SECRET_ENV}"
        )
    if not _all_str((api_key, api_secret)):
        raise ConfigurationError("api_key and api_secret must be strings")
    return api_key, api_secret


def _event_names(conversion_events: Iterable[str]) -> frozenset[str]:
    if isinstance(conversion_events, str):
        raise ConfigurationError("conversion_events must be a collection of event names, not one str")
    events = frozenset(conversion_events)
    if not _all_str(events):
        raise ConfigurationError("conversion_events must contain only str event names")
    return events


def _senders(concurrency: object, max_concurrency: object) -> tuple[int, bool]:
    # How many sender tasks run, and whether concurrency="auto" limits them below that.
    if concurrency == "auto":
        most = DEFAULT_MAX_CONCURRENCY if max_concurrency is None else max_concurrency
        return _positive_int(most, "max_concurrency"), True
    if max_concurrency is not None:
        raise ConfigurationError("max_concurrency applies only to concurrency='auto'")
    return _positive_int(concurrency, "concurrency"), False


def _all_str(values: Iterable[object]) -> bool:
    return all(isinstance(v, str) for v in values)


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _non_negative_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _delivery(value: object) -> Delivery:
    try:
        return Delivery(value if isinstance(value, str) else "")
    except ValueError:
        choices = ", ".join(repr(d.value) for d in Delivery)
        raise ConfigurationError(f"delivery must be a Delivery or one of {choices}, got {value!r}") from None


def _spool_opener(
    spool: object,
    app: str,
    take_unidentified: object,
    retention: float | None,
    interval: float,
    lease: float,
    synchronous: str,
    max_bytes: int,
) -> Callable[[], Spooling] | None:
    """
    Check the spool settings; return what opens the spool when a client starts (None: no spool), for the client's
    first delivery engine and for each forked child's (a child never uses its parent's connection or thread). Nothing is
    opened here.
    """
    if spool is None:
        return None
    if not isinstance(spool, str | os.PathLike) or not os.fspath(spool):
        raise ConfigurationError(f"spool must be a file path or a postgresql:// URL, got {spool!r}")
    path = os.fspath(spool)
    if isinstance(path, str) and "://" in path and not is_postgres_url(path):
        raise ConfigurationError(
            f"spool must be a file path (SQLite) or a postgresql:// URL; {path.split('://')[0]}:// is not supported"
        )
    if isinstance(path, str) and is_postgres_url(path):
        psycopg = need_psycopg()  # the extra is checked now; the database is opened when the client starts
        try:
            psycopg.conninfo.conninfo_to_dict(path)
        except psycopg.Error:
            # libpq's message is not repeated: it may quote a piece of the password.
            raise ConfigurationError(
                f"spool {redact_location(path)!r} is not a PostgreSQL URL or connection string libpq can read "
                "(keyword=value pairs; quote a value that holds spaces: password='a b')"
            ) from None
    if not _positive_number(interval):
        raise ConfigurationError(f"spool_interval must be a number > 0, got {interval!r}")
    if not _positive_number(lease):
        raise ConfigurationError(f"spool_lease must be a number > 0, got {lease!r}")
    if synchronous not in ("normal", "full"):
        raise ConfigurationError(f"spool_synchronous must be 'normal' or 'full', got {synchronous!r}")
    most = _positive_int(max_bytes, "max_spool_bytes")
    if not isinstance(take_unidentified, bool):
        raise ConfigurationError(f"spool_take_unidentified must be True or False, got {take_unidentified!r}")
    if retention is not None and not _positive_number(retention):
        raise ConfigurationError(f"spool_retention must be a number of seconds > 0 or None, got {retention!r}")
    pragma: Literal["NORMAL", "FULL"] = "FULL" if synchronous == "full" else "NORMAL"

    def open_spool() -> Spooling:
        # At start, in each process: its writer thread connects (see Spooling.opened).
        return Spooling(
            path,
            app=app,
            take_unidentified=take_unidentified,
            retention=None if retention is None else float(retention),
            lease=float(lease),
            group_interval=float(interval),
            synchronous=pragma,
            max_bytes=most,
        )

    return open_spool


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"", "0", "false", "no", "off"})


def _enabled(enabled: object) -> bool:
    """
    ``enabled=``, else ``$REHOOK_DISABLED`` (1/true/yes/on disables; 0/false/no/off or unset does not).
    """
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ConfigurationError(f"enabled must be True, False or None, got {enabled!r}")
        return enabled
    value = os.environ.get(DISABLED_ENV, "").strip().lower()
    if value in _TRUE:
        return False
    if value in _FALSE:
        return True
    raise ConfigurationError(f"{DISABLED_ENV} must be 1/true/yes/on or 0/false/no/off, got {value!r}")


def _str_keyed(value: object, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigurationError(f"{name} must be a mapping with str keys, not {type(value).__qualname__}")
    return dict(value) or None


_PROPERTY_CALLS = frozenset({CallType.TRACK, CallType.PAGE, CallType.SCREEN})


def _defaults(context: dict[str, Any] | None, properties: dict[str, Any] | None) -> Callable[[Call], Call] | None:
    # The client-wide context and properties, merged into each call on the sender side (the call's own keys win).
    if context is None and properties is None:
        return None

    def merge(call: Call) -> Call:
        changes: dict[str, Any] = {}
        if context is not None:
            changes["context"] = {**context, **(call.context or {})}
        if properties is not None and call.type in _PROPERTY_CALLS:
            changes["properties"] = {**properties, **(call.properties or {})}
        return attrs.evolve(call, **changes) if changes else call

    return merge


def _extra_headers(headers: object) -> dict[str, str]:
    """
    ``headers=``, checked: str names and values a header can carry, none of the SDK's own.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"headers must be a mapping of str to str, not {type(headers).__qualname__}")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError(f"headers must map str to str, got {name!r}: {value!r}")
        if not name or not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"headers: {name!r} is not a valid header name")
        if (problem := header_problem(value)) is not None:
            raise ConfigurationError(f"headers: the value of {name} {problem}")
        if name.lower() in RESERVED_HEADERS:
            raise ConfigurationError(f"headers: {name} is set by the SDK and cannot be replaced")
        if name.lower() in _FRAMING_HEADERS or name.lower().startswith("proxy-"):
            raise ConfigurationError(
                f"headers: {name} frames or routes the request (the SDK and the HTTP client set such headers); "
                "it cannot be set"
            )
        checked[name] = value
    return checked


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
# Headers that frame or route a request, or concern one hop: a second Content-Length or Host, or a
# Transfer-Encoding beside Content-Length, is request-smuggling material (RFC 9112 section 6.3); Proxy-* are
# handled through proxy=.
_FRAMING_HEADERS = frozenset(
    {"connection", "content-length", "expect", "host", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    return value
