"""
The fake Rehook without a server: clients whose requests go straight to a `FakeRehook`'s rules and records, in
memory, on the client's own event loop. For unit tests that need no socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from .._client.client import RehookClient
from .._client.sync import SyncRehookClient
from .._core.retry import RetryPolicy, parse_retry_after
from .._transports import AiohttpTransport, Attempt, Transport

if TYPE_CHECKING:
    from .._mapping.actions import Request

__all__ = ["Answerer", "memory_client", "memory_sync_client"]

_BASE_URL = "http://127.0.0.1:9"  # never dialled: the transport below answers every request itself

Answerer = Callable[
    [str, str, bytes | None, str | None, Mapping[str, str], bool], Awaitable[tuple[int, str, Mapping[str, str]] | None]
]
"""What answers a memory client's requests: (method, path, body, Idempotency-Key, headers, whether the credentials
are right) in; (status, body text, headers) out, or None when the connection is to look lost after the request."""


class _MemoryTransport(AiohttpTransport):
    """
    A `Transport` that hands each request to an `Answerer` instead of the network.
    """

    def __init__(self, answer: Answerer, authorized: bool, api_key: str, api_secret: str, **settings: Any) -> None:
        super().__init__(api_key=api_key, api_secret=api_secret, **settings)
        self._answer_with = answer
        self._authorized = authorized

    def post(self, request: Request, idempotency_key: str) -> Coroutine[Any, Any, Attempt]:
        return self._answer("POST", request.path, request.body, idempotency_key)

    async def get(self, path: str) -> Attempt:
        return await self._answer("GET", path, None, None)

    async def _answer(self, method: str, path: str, body: bytes | None, key: str | None) -> Attempt:
        answered = await self._answer_with(method, path, body, key, self.headers(key), self._authorized)
        if answered is None:  # a scripted disconnect: the request arrived, no answer came back
            return Attempt(error="the connection was reset (scripted disconnect)", maybe_sent=True)
        status, text, headers = answered
        return Attempt(
            status=status,
            body=self.credentials.body_text(text.encode()),  # kept as the wire transports keep it
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )

    def rebind(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _client_class(answer: Answerer, credentials: tuple[str, str]) -> type[RehookClient]:
    def make_transport(base_url: Any, api_key: str, api_secret: str, **settings: Any) -> Transport:
        settings.pop("transport", None)
        authorized = (api_key, api_secret) == credentials
        return _MemoryTransport(answer, authorized, api_key, api_secret, base_url=base_url, **settings)

    class MemoryRehookClient(RehookClient):
        _make_transport = staticmethod(make_transport)

    return MemoryRehookClient


def _defaults(conversion_events: Collection[str], settings: dict[str, Any]) -> dict[str, Any]:
    settings.setdefault("base_url", _BASE_URL)
    settings.setdefault("retry", RetryPolicy(time_scale=0))
    settings.setdefault("conversion_events", conversion_events)
    return settings


def memory_client(
    answer: Answerer, credentials: tuple[str, str], conversion_events: Collection[str], **settings: Any
) -> RehookClient:
    """
    A `RehookClient` whose requests ``answer`` answers in memory, with ``credentials`` (key, secret) as its
    defaults and the right ones: see `FakeRehook.memory_client`.
    """
    settings = _defaults(conversion_events, settings)
    api_key, api_secret = settings.pop("api_key", credentials[0]), settings.pop("api_secret", credentials[1])
    return _client_class(answer, credentials)(api_key, api_secret, **settings)


def memory_sync_client(
    answer: Answerer, credentials: tuple[str, str], conversion_events: Collection[str], **settings: Any
) -> SyncRehookClient:
    """
    `memory_client`, as a `SyncRehookClient`: see `FakeRehook.memory_sync_client`.
    """
    settings = _defaults(conversion_events, settings)

    class MemorySyncRehookClient(SyncRehookClient):
        _client_class = _client_class(answer, credentials)

    api_key, api_secret = settings.pop("api_key", credentials[0]), settings.pop("api_secret", credentials[1])
    return MemorySyncRehookClient(api_key, api_secret, **settings)
