"""
A fake Rehook: a real aiohttp.web server on loopback with Rehook's rules and scriptable faults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from collections.abc import Mapping as MappingABC
from types import TracebackType
from typing import Any, Self

import attrs
from aiohttp import web

from .._client.client import RehookClient
from .._client.sync import SyncRehookClient
from .._core.constants import CHECK_AUTH_PATH, CUSTOMERS_PATH, EVENTS_PATH, IDEMPOTENCY_HEADER
from .._core.retry import RetryPolicy
from ._memory import memory_client, memory_sync_client
from ._rehook import SimulatedRehook, error

__all__ = ["FakeRehook", "RecordedRequest"]

DEFAULT_API_KEY = "test_key"
DEFAULT_API_SECRET = "test_secret"


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """
    One request the fake received, in arrival order.

    Attributes:
        method: HTTP method.
        path: URL path.
        json: The parsed JSON body (``None`` for none or invalid JSON).
        idempotency_key: The ``Idempotency-Key`` header, if any.
        authorized: Whether the Basic credentials matched.
        status: What the fake answered; ``None`` when a scripted fault dropped the connection.
        received_at: ``time.monotonic()`` when the request arrived.
        headers: The request's headers (``Authorization`` shown as ``[redacted]``).
    """

    method: str
    path: str
    json: Any
    idempotency_key: str | None
    authorized: bool
    status: int | None
    received_at: float
    headers: MappingABC[str, str] = attrs.field(factory=dict)


_Endpoint = Callable[[MappingABC[str, str], Any], Awaitable[web.Response]]


@attrs.frozen
class _Fault:
    kind: str  # "status" | "delay" | "disconnect" | "hang"
    status: int = 503
    retry_after: str | None = None
    body: Any = None
    seconds: float = 0.0


def key_digest(key: str) -> int:
    """
    A 64-bit digest of one Idempotency-Key; `FakeRehook.delivered_digest` sums them over distinct delivered keys
    (mod 2**64), so a test can compare sets of hundreds of thousands of keys without holding them.
    """
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class FakeRehook:
    """
    A stand-in for ``https://api.rehook.ai`` for tests and local development.

    It implements Rehook's write endpoints (``POST /customers``, ``POST /events/invoke``), the credential check,
    get customer, validate referral code and list referrals, with Rehook's rules: HTTP Basic auth (401
    otherwise), customers upserted by ``source_id``, referral codes unique per customer (a code taken by
    another customer answers 400 ``REFERRAL_CODE_TAKEN``), and conversion events that need
    ``metadata.referral_code`` (400 ``MISSING_REFERRAL_CODE``). It records everything and counts requests
    that repeat an ``Idempotency-Key`` already answered 2xx (what a duplicate delivery would cost).

    Faults are scripted in order, one per request: `fail_next`, `delay_next`, `disconnect_next`, `hang_next`;
    `random_faults` adds seeded random errors and resets.

    Use it as an async context manager::

        async with FakeRehook(conversion_events={"signup"}) as fake:
            async with fake.client() as rehook:
                await rehook.track("signup", {"referral_code": "ABC"}, user_id="u1")
            assert fake.events[0]["event_name"] == "signup"
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        conversion_events: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        latency: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """
        Args:
            api_key: The key the fake accepts.
            api_secret: The secret the fake accepts.
            conversion_events: Event names that need ``metadata.referral_code``.
            host: Loopback address to listen on.
            port: Port, 0 for any free one.
            record: Keep every request and event in `requests` and `events` (off for long soak runs: then only
                the counters, `duplicates` and `delivered_digest` are kept).
            latency: Seconds every request waits before it is handled (a slow Rehook for load tests); the
                attribute of that name may be changed at any time.
            ssl_context: Serve https with this server context (a certificate from your test CA), to test a
                client's ``ssl=`` trust settings; `url` then starts with ``https://``.
        """
        self._ssl_context = ssl_context
        self.latency = latency
        self.api_key = api_key
        self.api_secret = api_secret
        self._host = host
        self._port = port
        self._auth = "Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        self._faults: deque[_Fault] = deque()
        self._delays: set[asyncio.Future[Any]] = set()
        self._random = random.Random()
        self._error_rate = 0.0
        self._error_status = 500
        self._reset_rate = 0.0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._delivered_keys: set[str] = set()
        self._record_requests = record
        self.request_count = 0
        self.delivered_digest = 0
        self.requests: list[RecordedRequest] = []
        self._rehook = SimulatedRehook(conversion_events, record)
        self.customers = self._rehook.customers
        self.events = self._rehook.events
        self.duplicates = 0
        self.url = ""

    @property
    def conversion_events(self) -> frozenset[str]:
        """
        Event names that need ``metadata.referral_code``; may be set at any time.
        """
        return self._rehook.conversion_events

    @conversion_events.setter
    def conversion_events(self, names: Iterable[str]) -> None:
        self._rehook.conversion_events = frozenset(names)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """
        Listen on loopback; `url` then holds the base URL.
        """
        app = web.Application()
        route, rehook = app.router.add_route, self._rehook
        route("POST", CUSTOMERS_PATH, self._endpoint(rehook.identify))
        route("POST", EVENTS_PATH, self._endpoint(rehook.track))
        route("GET", CHECK_AUTH_PATH, self._endpoint(rehook.check_auth))
        route("*", "/customers/validate-code/{code}", self._endpoint(rehook.validate_code))
        route("GET", "/customers/referral/list/{source_id}", self._endpoint(rehook.referrals))
        route("GET", "/customers/{source_id}", self._endpoint(rehook.get_customer))
        # Not Rehook's: lets a test in another process read what this fake saw (no credentials needed).
        app.router.add_get("/_fake/summary", self._summary)
        app.router.add_get("/_fake/events", rehook.list_events)
        app.router.add_get("/_fake/customers", rehook.list_customers)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl_context)
        await self._site.start()
        host, port = self._runner.addresses[0][:2]
        self._port = port  # a restart after stop() reuses the same port
        self.url = f"{'https' if self._ssl_context is not None else 'http'}://{host}:{port}"

    async def stop(self) -> None:
        """
        Stop listening and close open connections (clients then see connection refused).
        """
        for delay in self._delays:  # a delayed request must not hold the shutdown
            delay.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **settings: Any) -> Iterator[FakeRehook]:
        """
        A started fake served by its own event loop in a background thread, for synchronous code and tests
        (Django, Flask, scripts): ``with FakeRehook.in_thread(conversion_events={"signup"}) as fake: ...``.

        Args:
            settings: What `FakeRehook` takes. Configure faults from the test's thread; they are read per request.
        """
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-rehook", daemon=True)
        thread.start()
        fake = cls(**settings)
        try:
            asyncio.run_coroutine_threadsafe(fake.start(), loop).result(30)
            yield fake
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def client(self, **settings: Any) -> RehookClient:
        """
        A `RehookClient` for this fake: its URL and credentials, and retries that do not really wait.

        Args:
            settings: Any other `RehookClient` settings; they win over these defaults.
        """
        settings.setdefault("base_url", self.url)
        settings.setdefault("retry", RetryPolicy(time_scale=0.0))
        settings.setdefault("conversion_events", self.conversion_events)
        return RehookClient(self.api_key, self.api_secret, **settings)

    def memory_client(self, **settings: Any) -> RehookClient:
        """
        A `RehookClient` whose requests this fake answers in memory, without a server or a socket: the same
        rules, scripted faults, records (`requests`, `customers`, `events`) and counters as over HTTP. The fake
        need not be started. For unit tests: ``client = FakeRehook().memory_client()``.

        Args:
            settings: Any other `RehookClient` settings; they win over these defaults (this fake's
                credentials and conversion events, retries that do not really wait).
        """
        return memory_client(
            self._answer_in_memory, (self.api_key, self.api_secret), self.conversion_events, **settings
        )

    def memory_sync_client(self, **settings: Any) -> SyncRehookClient:
        """
        `memory_client`, as a `SyncRehookClient` for synchronous code.
        """
        return memory_sync_client(
            self._answer_in_memory, (self.api_key, self.api_secret), self.conversion_events, **settings
        )

    async def _answer_in_memory(
        self,
        method: str,
        path: str,
        body: bytes | None,
        key: str | None,
        headers: MappingABC[str, str],
        authorized: bool,
    ) -> tuple[int, str, MappingABC[str, str]] | None:
        # A memory client's request (an `Answerer`): the same rules, faults and records as over HTTP.
        endpoints = {
            ("POST", CUSTOMERS_PATH): self._rehook.identify,
            ("POST", EVENTS_PATH): self._rehook.track,
            ("GET", CHECK_AUTH_PATH): self._rehook.check_auth,
        }
        endpoint = endpoints.get((method, path))
        if endpoint is None:
            return 404, '{"code": "NOT_FOUND"}', {}
        parsed = json.loads(body) if body else None
        response = await self._respond(
            method, path, {}, parsed, key, authorized, time.monotonic(), endpoint, headers=headers
        )
        if response is None:
            return None
        return response.status, response.text or "", response.headers

    # -- scripted faults ---------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, *, status: int = 503, retry_after: str | None = None, body: Any = None) -> None:
        """
        Answer the next ``count`` requests with ``status`` (and a ``Retry-After`` header if given).
        """
        self._faults.extend(_Fault("status", status=status, retry_after=retry_after, body=body) for _ in range(count))

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        """
        Hold the next ``count`` requests ``seconds`` before handling them normally.
        """
        self._faults.extend(_Fault("delay", seconds=seconds) for _ in range(count))

    def disconnect_next(self, count: int = 1) -> None:
        """
        Read the next ``count`` requests, then drop the connection without answering.
        """
        self._faults.extend(_Fault("disconnect") for _ in range(count))

    def hang_next(self, count: int = 1) -> None:
        """
        Read the next ``count`` requests and never answer or act on them (until the fake stops).
        """
        self._faults.extend(_Fault("hang") for _ in range(count))

    def random_faults(
        self, *, error_rate: float = 0.0, status: int = 500, reset_rate: float = 0.0, seed: int | None = None
    ) -> None:
        """
        From now on, answer a random ``error_rate`` of requests with ``status`` and drop the connection of a random
        ``reset_rate`` of them (after reading them, without acting on them). Scripted faults come first.
        """
        self._random = random.Random(seed)
        self._error_rate, self._error_status, self._reset_rate = error_rate, status, reset_rate

    def clear_faults(self) -> None:
        """
        Forget every scripted fault not yet used, and stop random faults.
        """
        self._faults.clear()
        self._error_rate = self._reset_rate = 0.0

    # -- what was received -------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """
        Requests the fake is holding right now (scripted delays and hangs).
        """
        return len(self._delays)

    @property
    def delivered_keys(self) -> frozenset[str]:
        """
        The Idempotency-Keys of write requests answered 2xx.
        """
        return frozenset(self._delivered_keys)

    # -- the server --------------------------------------------------------------------------------------

    def _endpoint(self, endpoint: _Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, endpoint)

        return handle

    async def _handle(self, request: web.Request, endpoint: _Endpoint) -> web.StreamResponse:
        received_at = time.monotonic()
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        authorized = request.headers.get("Authorization") == self._auth
        key = request.headers.get(IDEMPOTENCY_HEADER)
        response = await self._respond(
            request.method, request.path, request.match_info, body, key, authorized, received_at, endpoint,
            headers=request.headers,
        )  # fmt: skip
        if response is None:  # a scripted disconnect
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # aiohttp ends the handler quietly; the client sees a lost connection
        return response

    async def _respond(
        self,
        method: str,
        path: str,
        match: MappingABC[str, str],
        body: Any,
        key: str | None,
        authorized: bool,
        received_at: float,
        endpoint: _Endpoint,
        *,
        headers: MappingABC[str, str],
    ) -> web.Response | None:
        # One request, over HTTP or in memory (memory_client()): faults, rules, bookkeeping. None: disconnect.
        fault = self._faults.popleft() if self._faults else self._random_fault()
        if self.latency > 0 and (fault is None or fault.kind != "hang"):
            await self._wait(asyncio.ensure_future(asyncio.sleep(self.latency)))
        if fault is not None and fault.kind == "hang":
            self._record(method, path, body, key, authorized, None, received_at, headers)
            await self._wait(asyncio.get_running_loop().create_future())  # cancelled by stop()
        if fault is not None and fault.kind == "delay":
            await self._wait(asyncio.ensure_future(asyncio.sleep(fault.seconds)))
            fault = None
        if fault is not None and fault.kind == "disconnect":
            self._record(method, path, body, key, authorized, None, received_at, headers)
            return None
        response: web.Response
        if fault is not None:
            response = (
                web.json_response(fault.body, status=fault.status)
                if fault.body is not None
                else error(fault.status, "SCRIPTED_FAULT", f"scripted {fault.status}")
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
        elif not authorized:
            response = error(401, "UNAUTHORIZED", "invalid API key or secret")
        else:
            response = await endpoint(match, body)
        if method == "POST" and key is not None and 200 <= response.status < 300:
            if key in self._delivered_keys:
                self.duplicates += 1
            else:
                self.delivered_digest = (self.delivered_digest + key_digest(key)) % 2**64
            self._delivered_keys.add(key)
        self._record(method, path, body, key, authorized, response.status, received_at, headers)
        return response

    async def _wait(self, waiting: asyncio.Future[Any]) -> None:
        # A delayed or hanging request: stop() cancels it, so that it never holds the shutdown.
        self._delays.add(waiting)
        try:
            await waiting
        finally:
            self._delays.discard(waiting)

    def _random_fault(self) -> _Fault | None:
        if self._reset_rate or self._error_rate:
            draw = self._random.random()
            if draw < self._reset_rate:
                return _Fault("disconnect")
            if draw < self._reset_rate + self._error_rate:
                return _Fault("status", status=self._error_status)
        return None

    def _record(
        self,
        method: str,
        path: str,
        body: Any,
        key: str | None,
        authorized: bool,
        status: int | None,
        at: float,
        headers: MappingABC[str, str],
    ) -> None:
        self.request_count += 1
        if not self._record_requests:
            return
        self.requests.append(
            RecordedRequest(
                method=method,
                path=path,
                json=body,
                idempotency_key=key,
                authorized=authorized,
                status=status,
                received_at=at,
                headers={k: "[redacted]" if k.lower() == "authorization" else v for k, v in headers.items()},
            )
        )

    async def _summary(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.request_count,
                "delivered": len(self._delivered_keys),
                "duplicates": self.duplicates,
                "delivered_digest": self.delivered_digest,
                "customers": len(self.customers),
                "events": len(self.events),
                "recording": self._record_requests,
            }
        )
