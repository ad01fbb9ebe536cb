"""
The fake Rehook without a server: clients whose requests go straight to a `FakeRehook`'s rules and records, in
memory, on the client's own event loop. For unit tests that need no socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .._client import RehookClient
from .._constants import CHECK_AUTH_PATH, CUSTOMERS_PATH, EVENTS_PATH
from .._retry import RetryPolicy, parse_retry_after
from .._sync import SyncRehookClient
from .._transports import AiohttpTransport, Attempt, Transport

if TYPE_CHECKING:
    from .._mapping.actions import Request
    from ._fake import FakeRehook

__all__ = ["memory_client", "memory_sync_client"]

_BASE_URL = "http://127.0.0.1:9"  # never dialled: the transport below answers every request itself


class _MemoryTransport(AiohttpTransport):
    """
    A `Transport` that hands each request to a fake's rules instead of the network.
    """

    def __init__(self, fake: FakeRehook, api_key: str, api_secret: str, **settings: Any) -> None:
        super().__init__(api_key=api_key, api_secret=api_secret, **settings)
        self._fake = fake
        self._authorized = (api_key, api_secret) == (fake.api_key, fake.api_secret)

    def post(self, request: Request, idempotency_key: str) -> Coroutine[Any, Any, Attempt]:
        return self._answer("POST", request.path, request.body, idempotency_key)

    async def get(self, path: str) -> Attempt:
        return await self._answer("GET", path, None, None)

    async def _answer(self, method: str, path: str, body: bytes | None, key: str | None) -> Attempt:
        fake = self._fake
        endpoints = {
            ("POST", CUSTOMERS_PATH): fake._identify,
            ("POST", EVENTS_PATH): fake._track,
            ("GET", CHECK_AUTH_PATH): fake._check_auth,
        }
        endpoint = endpoints.get((method, path))
        if endpoint is None:
            return Attempt(status=404, body='{"code": "NOT_FOUND"}')
        parsed = json.loads(body) if body else None
        response = await fake._respond(
            method, path, {}, parsed, key, self._authorized, time.monotonic(), endpoint, headers=self.headers(key)
        )
        if response is None:  # a scripted disconnect: the request reached the fake, no answer came back
            return Attempt(error="the connection was reset (scripted disconnect)", maybe_sent=True)
        return Attempt(
            status=response.status,
            body=self.credentials.body_text((response.text or "").encode()),  # kept as the wire transports keep it
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def rebind(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _client_class(fake: FakeRehook) -> type[RehookClient]:
    def make_transport(base_url: Any, api_key: str, api_secret: str, **settings: Any) -> Transport:
        settings.pop("transport", None)
        return _MemoryTransport(fake, api_key, api_secret, base_url=base_url, **settings)

    class MemoryRehookClient(RehookClient):
        _make_transport = staticmethod(make_transport)

    return MemoryRehookClient


def _defaults(fake: FakeRehook, settings: dict[str, Any]) -> dict[str, Any]:
    settings.setdefault("base_url", _BASE_URL)
    settings.setdefault("retry", RetryPolicy(time_scale=0))
    settings.setdefault("conversion_events", fake.conversion_events)
    return settings


def memory_client(fake: FakeRehook, **settings: Any) -> RehookClient:
    """
    A `RehookClient` whose requests ``fake`` answers in memory: see `FakeRehook.memory_client`.
    """
    settings = _defaults(fake, settings)
    return _client_class(fake)(
        settings.pop("api_key", fake.api_key), settings.pop("api_secret", fake.api_secret), **settings
    )


def memory_sync_client(fake: FakeRehook, **settings: Any) -> SyncRehookClient:
    """
    A `SyncRehookClient` whose requests ``fake`` answers in memory: see `FakeRehook.memory_sync_client`.
    """
    settings = _defaults(fake, settings)

    class MemorySyncRehookClient(SyncRehookClient):
        _client_class = _client_class(fake)

    return MemorySyncRehookClient(
        settings.pop("api_key", fake.api_key), settings.pop("api_secret", fake.api_secret), **settings
    )
