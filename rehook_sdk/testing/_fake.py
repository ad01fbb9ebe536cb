"""
A fake Rehook: a real aiohttp.web server on loopback with Rehook's rules and scriptable faults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import random
import secrets
import ssl
import string
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
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


def _error(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body = {"code": code, "message": message, "details": details, "request_id": "req_" + secrets.token_hex(8)}
    return web.json_response(body, status=status)


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
        self.conversion_events = frozenset(conversion_events)
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
        self._ids = itertools.count(1)
        self._delivered_keys: set[str] = set()
        self._record_requests = record
        self.request_count = 0
        self.delivered_digest = 0
        self.requests: list[RecordedRequest] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        # Indexes, so that every request costs O(1) however many customers there are: referral code -> owner's
        # source_id, and advocate's source_id -> the source_ids of the friends it referred (in order).
        self._code_owner: dict[str, str] = {}
        self._referred: dict[str, dict[str, None]] = {}
        self.duplicates = 0
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """
        Listen on loopback; `url` then holds the base URL.
        """
        app = web.Application()
        route = app.router.add_route
        route("POST", CUSTOMERS_PATH, self._endpoint(self._identify))
        route("POST", EVENTS_PATH, self._endpoint(self._track))
        route("GET", CHECK_AUTH_PATH, self._endpoint(self._check_auth))
        route("*", "/customers/validate-code/{code}", self._endpoint(self._validate_code))
        route("GET", "/customers/referral/list/{source_id}", self._endpoint(self._referrals))
        route("GET", "/customers/{source_id}", self._endpoint(self._get_customer))
        # Not Rehook's: lets a test in another process read what this fake saw (no credentials needed).
        app.router.add_get("/_fake/summary", self._summary)
        app.router.add_get("/_fake/events", self._list_events)
        app.router.add_get("/_fake/customers", self._list_customers)
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
            ("POST", CUSTOMERS_PATH): self._identify,
            ("POST", EVENTS_PATH): self._track,
            ("GET", CHECK_AUTH_PATH): self._check_auth,
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
                else _error(fault.status, "SCRIPTED_FAULT", f"scripted {fault.status}")
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
        elif not authorized:
            response = _error(401, "UNAUTHORIZED", "invalid API key or secret")
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

    async def _list_events(self, request: web.Request) -> web.Response:
        return _page(request, self.events)

    async def _list_customers(self, request: web.Request) -> web.Response:
        return _page(request, self.customers.values(), self._public)

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
            if code not in self._code_owner:
                return code

    def _owner(self, code: Any) -> dict[str, Any] | None:
        owner = self._code_owner.get(code) if isinstance(code, str) else None
        return self.customers.get(owner) if owner is not None else None

    def _set_code(self, customer: dict[str, Any], code: str) -> None:
        old = customer.get("referral_code")
        if old is not None and self._code_owner.get(old) == customer["source_id"]:
            del self._code_owner[old]
        customer["referral_code"] = code
        self._code_owner[code] = customer["source_id"]

    async def _identify(self, match: MappingABC[str, str], body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("source_id"), str) or not body["source_id"]:
            return _error(400, "INVALID_REQUEST", "source_id is required")
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            return _error(400, "INVALID_REQUEST", "metadata must be an object")
        code = body.get("referral_code")
        if code is not None and not isinstance(code, str):
            return _error(400, "INVALID_REQUEST", "referral_code must be a string or null")
        source_id: str = body["source_id"]
        if code is not None:
            owner = self._owner(code)
            if owner is not None and owner["source_id"] != source_id:
                return _error(400, "REFERRAL_CODE_TAKEN", f"referral code {code!r} belongs to another customer")
        customer = self.customers.get(source_id)
        if customer is None:
            customer = self.customers[source_id] = {
                "id": f"cust_{next(self._ids)}",
                "source_id": source_id,
                "metadata": {},
                "referral_code": None,
                "referred_by": None,
            }
            self._set_code(customer, code or self._new_code())
        elif code is not None:
            self._set_code(customer, code)
        customer["metadata"].update(metadata)
        return web.json_response(customer)

    async def _track(self, match: MappingABC[str, str], body: Any) -> web.Response:
        if not isinstance(body, dict):
            return _error(400, "INVALID_REQUEST", "a JSON object is required")
        name, source_id, metadata = body.get("event_name"), body.get("source_id"), body.get("metadata", {})
        if not isinstance(name, str) or not name:
            return _error(400, "INVALID_REQUEST", "event_name is required")
        if not isinstance(source_id, str) or not source_id:
            return _error(400, "INVALID_REQUEST", "source_id is required")
        if not isinstance(metadata, dict):
            return _error(400, "INVALID_REQUEST", "metadata must be an object")
        code = metadata.get("referral_code")
        if name in self.conversion_events and not code:
            return _error(400, "MISSING_REFERRAL_CODE", f"{name!r} is a conversion event: referral_code is required")
        if code and name in self.conversion_events:
            advocate = self._owner(code)
            friend = self.customers.get(source_id)
            if advocate is not None and friend is not None and advocate is not friend:
                if friend["referred_by"] is not None:
                    self._referred.get(friend["referred_by"], {}).pop(source_id, None)
                friend["referred_by"] = advocate["source_id"]
                self._referred.setdefault(advocate["source_id"], {})[source_id] = None
        event = {"id": f"evt_{next(self._ids)}", "event_name": name, "source_id": source_id, "metadata": metadata}
        if self._record_requests:
            self.events.append(event)
        return web.json_response({"status": "ok", "event": event})

    async def _check_auth(self, match: MappingABC[str, str], body: Any) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _get_customer(self, match: MappingABC[str, str], body: Any) -> web.Response:
        customer = self.customers.get(match["source_id"])
        if customer is None:
            return _error(404, "NOT_FOUND_CUSTOMER", "no customer with that source_id")
        return web.json_response(self._public(customer))

    async def _validate_code(self, match: MappingABC[str, str], body: Any) -> web.Response:
        code = match["code"]
        owner = self._owner(code)
        if owner is None:
            return _error(404, "NOT_FOUND_CODE", f"referral code {code!r} does not exist")
        return web.json_response(self._public(owner))

    async def _referrals(self, match: MappingABC[str, str], body: Any) -> web.Response:
        source_id = match["source_id"]
        referred = [self._public(self.customers[friend]) for friend in self._referred.get(source_id, {})]
        if not referred:
            return _error(404, "NOT_FOUND_REFERRALS", "no successful referrals")
        return web.json_response(referred)

    def _public(self, customer: dict[str, Any]) -> dict[str, Any]:
        referrals = len(self._referred.get(customer["source_id"], {}))
        return {
            "id": customer["id"],
            "source_id": customer["source_id"],
            "metadata": customer["metadata"],
            "referral_code": customer["referral_code"],
            "referral_count": referrals,
            "referral_link": f"https://rehook.example/r/{customer['referral_code']}",
        }


def _page(request: web.Request, items: Collection[Any], view: Callable[[Any], Any] | None = None) -> web.Response:
    # ?offset=0&limit=100 (at most 1000): {"total", "offset", "limit", "items"}, in the order they were recorded.
    try:
        offset = max(0, int(request.query.get("offset", "0")))
        limit = min(1000, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        return _error(400, "INVALID_REQUEST", "offset and limit must be whole numbers")
    listed = list(itertools.islice(items, offset, offset + limit))
    page = [view(item) for item in listed] if view is not None else listed
    return web.json_response({"total": len(items), "offset": offset, "limit": limit, "items": page})
