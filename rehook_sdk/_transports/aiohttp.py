"""
HTTP to Rehook through aiohttp: one keep-alive session (the user's, or one of its own), proxies, and every answer or
error turned into an `Attempt`. Serves everything the fast transport does not (see `rehook_sdk._transports`).
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
from collections.abc import Coroutine, Mapping
from time import monotonic
from typing import Any

import aiohttp
import aiohttp.abc
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from .._core import exiting
from .._core.constants import IDEMPOTENCY_HEADER
from .._core.retry import parse_retry_after
from .._mapping.actions import Request
from .base import IDLE_TIMEOUT, MAX_BODY_BYTES, Attempt, Credentials, describe
from .config import unverified
from .heads import StatusSniffer, forget_sniffer, last_sniffer
from .keepalive import CHECK_AFTER, KeepAlive, spoken_on

__all__ = ["AiohttpTransport"]

logger = logging.getLogger("rehook_sdk")


class AiohttpTransport:
    """
    Sends requests to one Rehook base URL with one set of credentials, through aiohttp.
    """

    def __init__(
        self,
        base_url: URL,
        api_key: str,
        api_secret: str,
        *,
        request_timeout: float,
        concurrency: int,
        session: aiohttp.ClientSession | None,
        headers: Mapping[str, str] | None = None,
        proxy: URL | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._base = str(base_url).rstrip("/")
        self._proxy = proxy
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True  # True: the default
        self.credentials = credentials = Credentials(api_key, api_secret, headers, proxy)
        self._headers = credentials.headers
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._concurrency = concurrency
        self._session = session
        self._owns_session = session is None
        self._connector: aiohttp.TCPConnector | None = None  # of the session this transport made
        self._checked = 0.0  # when its idle connections were last checked (monotonic)
        self._keep_alive = KeepAlive()  # on the monotonic clock, as aiohttp's pool
        self._urls: dict[str, URL] = {}

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base + path)
        return url

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Created lazily inside the running loop, as aiohttp requires; limit matches the sender count so
            # every sender has a connection and no more are opened.
            # During the exit drain, names are resolved in this thread: aiohttp's default resolver needs an executor
            # thread, which Python 3.12 cannot start at interpreter exit (nothing else runs on this loop then).
            resolver = _BlockingResolver() if exiting.draining else None
            connector = aiohttp.TCPConnector(
                limit=self._concurrency,
                limit_per_host=self._concurrency,
                resolver=resolver,
                keepalive_timeout=IDLE_TIMEOUT,
            )
            _sniff_heads(connector)
            self._connector = connector
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def post(self, request: Request, idempotency_key: str) -> Coroutine[Any, Any, Attempt]:
        """
        POST one request; never raises for network trouble (cancellation passes through). Await the result.

        A plain function returning `_request`'s coroutine, so that each request in flight holds one coroutine
        of this module rather than two.
        """
        return self._request("POST", self._url(request.path), self.headers(idempotency_key), request.body)

    def headers(self, idempotency_key: str | None) -> dict[str, str]:
        """
        The headers of one request: a POST (with its Idempotency-Key) or a GET (``None``).
        """
        if idempotency_key is None:
            return dict(self._headers)
        return {**self._headers, "Content-Type": "application/json", IDEMPOTENCY_HEADER: idempotency_key}

    async def get(self, path: str) -> Attempt:
        """
        GET ``path``; never raises for network trouble.
        """
        return await self._request("GET", self._url(path), self.headers(None), None)

    async def _request(self, method: str, url: URL, headers: dict[str, str], body: bytes | None) -> Attempt:
        if isinstance(self._ssl, ssl.SSLContext) and (weakened := unverified(self._ssl)) is not None:
            return Attempt(error=weakened, tls=True)
        session = self._session or self._get_session()
        if self._connector is not None:
            self._close_spoken_on()
        forget_sniffer()
        status: int | None = None
        retry_after: float | None = None
        prefix = bytearray()
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxy=self._proxy,
                ssl=self._ssl,
            ) as response:
                status = response.status
                # Retry-After matters only on the answers that are retried; 2xx skip the header lookup.
                retry_after = None if status < 300 else parse_retry_after(response.headers.get("Retry-After"))
                if not await _read_prefix(response.content, prefix):
                    response.close()  # the rest stays unread: this connection cannot be reused
                return Attempt(status=status, body=self._text(prefix), retry_after=retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if status is not None:
                # The status line and headers came, then the body was cut, garbled or too slow. The answer is
                # known: a 2xx was accepted (sending it again would duplicate it), any other status decides as usual.
                return Attempt(status=status, body=self._text(prefix), retry_after=retry_after)
            if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError):
                return self._no_answer(exc)  # before the request: the connection or the proxy's tunnel failed
            return self._sniffed() or self._no_answer(exc)

    def _sniffed(self) -> Attempt | None:
        """
        The answer aiohttp dropped whole because its body (or trailers) broke after a head that parsed within the
        limits, in the same read: its status decides, as it would have in a later read, and on the fast transport.
        A head that broke the limits: no answer, said as the fast transport says it.
        """
        sniffer = last_sniffer()
        head = sniffer.head if sniffer is not None else None
        if head is not None and head.broken is not None:
            return Attempt(
                error=f"connection lost after the request was sent: the answer broke the SDK's limits "
                f"({head.broken}); the connection was closed",
                maybe_sent=True,
            )
        if head is None or head.status is None:
            return None
        raw = head.retry_after
        retry_after = parse_retry_after(raw.decode("latin-1")) if raw is not None and head.status >= 300 else None
        return Attempt(status=head.status, body="", retry_after=retry_after)

    def _close_spoken_on(self) -> None:
        """
        Close the idle kept-alive connections of this transport's own session that the peer closed (or sent
        anything on) since their last answer, and those idle too long to reuse safely (`KeepAlive`, learning from
        the closes found), so that aiohttp does not write the next request on one of them: at most once every
        `CHECK_AFTER` seconds, one ``poll()`` for all of them. aiohttp itself sees a peer's close only once its
        loop has read it, and reuses the connection idle longest first.

        It reads the connector's pool of idle connections, which aiohttp keeps as ``_conns`` (a mapping to
        sequences of (protocol, monotonic time of release) pairs, in every 3.x release since 3.0); if that ever
        changes, it does nothing, and tests/test_keepalive.py fails.
        """
        now = monotonic()
        if now - self._checked < CHECK_AFTER:
            return
        self._checked = now
        pool = getattr(self._connector, "_conns", None)
        if not isinstance(pool, Mapping):
            return
        idle = [(entry[0], entry[1]) for queue in pool.values() for entry in queue if entry[0].transport is not None]
        keep_alive = self._keep_alive
        for index in spoken_on([protocol.transport for protocol, _ in idle]):
            protocol, released = idle[index]
            keep_alive.peer_closed_within(now, now - released)
            protocol.close()
        limit = keep_alive.limit(now)
        for protocol, released in idle:
            if now - released >= limit:
                protocol.close()  # retired before the peer's idle timeout; closing twice does nothing

    def _no_answer(self, exc: BaseException) -> Attempt:
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            # The proxy answered CONNECT with something other than 200: the tunnel to Rehook was never opened.
            return Attempt(status=exc.status, body=self._redact(exc.message), from_proxy=True)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            # The handshake refused the certificate (unknown CA, wrong host name, expired): the request never left.
            return Attempt(error=self._redact(f"cannot connect: {describe(exc.certificate_error)}"), tls=True)
        if isinstance(exc, aiohttp.ClientConnectorError):
            # Refused, unreachable, DNS failure, TLS handshake: the request never left.
            return Attempt(error=self._redact(f"cannot connect: {describe(exc)}"), unreachable=True)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return Attempt(error=self._redact(f"connect timed out: {describe(exc)}"), unreachable=True)
        if isinstance(exc, TimeoutError):
            return Attempt(error=f"no answer within {self._timeout.total} s: {describe(exc)}", maybe_sent=True)
        # Reset, disconnected, broken response head: the request may have reached Rehook.
        return Attempt(error=self._redact(f"connection lost before the answer: {describe(exc)}"), maybe_sent=True)

    def _text(self, prefix: bytearray) -> str:
        return self.credentials.body_text(prefix)

    def _redact(self, text: str) -> str:
        return self.credentials.redact(text)

    def rebind(self) -> None:
        """
        Forget a session whose event loop has closed (a client starting over on a new loop). A session of the
        user's that belongs to a closed loop cannot send any more: from then on the transport makes its own.
        """
        session = self._session
        if session is None or not session._loop.is_closed():
            return
        if not self._owns_session:
            logger.warning("the aiohttp session given to RehookClient belongs to a closed event loop; using a new one")
        self._session = None
        self._connector = None
        self._owns_session = True

    async def close(self) -> None:
        """
        Close the session if this transport created it; a user's session stays open.
        """
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None if self._owns_session else self._session
        self._connector = None


def _sniff_heads(connector: aiohttp.TCPConnector) -> None:
    """
    Make the connector's connections read each answer's head a second time (`StatusSniffer`). aiohttp keeps its
    protocol factory as ``_factory`` (a partial of ``ResponseHandler`` in every 3.x release since 3.0); if that
    changes, the connector stays as it is, and tests/security/test_hostile_servers.py fails.
    """
    factory = getattr(connector, "_factory", None)
    if isinstance(factory, functools.partial) and factory.func is ResponseHandler:
        connector._factory = functools.partial(StatusSniffer, *factory.args, **factory.keywords)  # type: ignore[assignment]


class _BlockingResolver(aiohttp.abc.AbstractResolver):
    """
    Resolves names with a blocking ``getaddrinfo`` in the loop's own thread: for the exit drain only.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            aiohttp.abc.ResolveResult(
                hostname=host, host=str(address[0]), port=int(address[1]), family=found, proto=proto, flags=flags
            )
            for found, _, proto, _, address in infos
        ]

    async def close(self) -> None:
        return None


async def _read_prefix(content: aiohttp.StreamReader, prefix: bytearray) -> bool:
    """
    Read at most `MAX_BODY_BYTES` of a body into ``prefix``; True when the whole body was read.
    """
    while len(prefix) < MAX_BODY_BYTES:
        chunk = await content.read(MAX_BODY_BYTES - len(prefix))
        if not chunk:
            return True
        prefix += chunk
    return content.at_eof()
