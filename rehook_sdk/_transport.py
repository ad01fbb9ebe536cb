"""
HTTP to Rehook: one keep-alive aiohttp session, Basic auth, and every answer or error turned into an `Attempt`.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import socket
import ssl
import sys
import urllib.request
from collections.abc import Coroutine, Mapping
from typing import Any, NamedTuple

import aiohttp
import aiohttp.abc
from yarl import URL

from . import _exit
from ._actions import Request
from ._constants import IDEMPOTENCY_HEADER, VERSION
from ._exceptions import ConfigurationError
from ._retry import parse_retry_after

__all__ = ["RESERVED_HEADERS", "USER_AGENT", "Attempt", "Transport", "check_base_url", "check_ssl", "proxy_for"]

USER_AGENT = (
    f"rehook-sdk-python/{VERSION} (python {sys.version_info.major}.{sys.version_info.minor}; "
    f"aiohttp {aiohttp.__version__.rsplit('.', 1)[0]})"
)
"""What every request says it is, unless ``headers=`` gives another User-Agent."""
RESERVED_HEADERS = frozenset({"authorization", "content-type", IDEMPOTENCY_HEADER.lower()})
"""Headers ``headers=`` may not set: the SDK's own, which Rehook's answers depend on."""

logger = logging.getLogger("rehook_sdk")

# Kept per outcome and in logs; Rehook's error bodies are small, a proxy's HTML page need not be kept whole.
_MAX_BODY_CHARS = 8192
# At most this much of any answer is read; the rest is never read, and its connection is closed instead of reused.
# The status line decides the outcome, so a huge or endless body costs neither memory nor the event loop's time.
MAX_BODY_BYTES = 64 * 1024
# Secrets shorter than this are not searched for in answers: replacing a 2-letter secret would garble every text.
_MIN_REDACTED = 4
REDACTED = "[redacted]"


class Attempt(NamedTuple):
    """
    What one HTTP request came to (a named tuple: one is made per request, in the sender's hot loop).

    Attributes:
        status: The HTTP status, or ``None`` when no answer came.
        body: The response body as text (truncated), or ``None``.
        retry_after: Seconds the server's Retry-After asked for, if any.
        error: What went wrong when no answer came.
        maybe_sent: No answer came, and the request may have reached Rehook (timeout, lost connection).
        unreachable: No connection could be made: the request never left.
    """

    status: int | None = None
    body: str | None = None
    retry_after: float | None = None
    error: str | None = None
    maybe_sent: bool = False
    unreachable: bool = False


def check_base_url(base_url: str) -> URL:
    """
    Parse ``base_url``: https, or http only to a loopback host (a local fake Rehook).

    Raises:
        ConfigurationError: anything else, so credentials never travel in clear text.
    """
    url = URL(base_url)
    if url.user is not None or url.password is not None:
        # Checked first, and the URL is not repeated in the message: it holds a password.
        raise ConfigurationError(
            "base_url must not carry credentials (user:password@host); pass api_key and api_secret instead"
        )
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ConfigurationError(
            f"base_url {base_url!r} would send the API secret unencrypted; use https "
            "(plain http is allowed only to loopback hosts such as a local fake Rehook)"
        )
    if url.query_string or url.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment, got {base_url!r}")
    return url


def check_ssl(context: object) -> ssl.SSLContext | None:
    """
    ``ssl=``: a client `ssl.SSLContext` (a CA bundle, client certificates) that still verifies the server, or
    ``"system"``: the operating system's trust store, through the truststore package.

    Raises:
        ConfigurationError: anything else; verification cannot be turned off.
    """
    if context is None:
        return None
    if context == "system":
        try:
            import truststore
        except ImportError:
            raise ConfigurationError(
                "ssl='system' needs the truststore package: pip install 'rehook-sdk[truststore]'"
            ) from None
        system: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return system
    if not isinstance(context, ssl.SSLContext):
        raise ConfigurationError(
            f"ssl must be an ssl.SSLContext (for example ssl.create_default_context(cafile=...)) or 'system', "
            f"not {context!r}; "
            "TLS verification cannot be turned off"
        )
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ConfigurationError(
            "ssl: this SSLContext does not verify the server (verify_mode CERT_REQUIRED and check_hostname are "
            "needed); TLS verification cannot be turned off"
        )
    return context


def proxy_for(base_url: URL, proxy: str | None) -> URL | None:
    """
    The proxy requests to ``base_url`` go through: ``proxy`` when given, else the environment's
    (``HTTPS_PROXY``/``HTTP_PROXY``, lower case too, minus ``NO_PROXY``), read once here. Loopback hosts (a local
    fake Rehook) never take the environment's proxy, which could not reach them.

    Raises:
        ConfigurationError: ``proxy`` is not an http(s) URL with a host.
    """
    if proxy is not None:
        if not isinstance(proxy, str):
            raise ConfigurationError(f"proxy must be a URL str, not {type(proxy).__qualname__}")
        url = URL(proxy)
        if url.scheme not in ("http", "https") or not url.host:
            # The URL is not repeated: it may hold a password.
            raise ConfigurationError("proxy must be an http:// or https:// URL with a host (user:password@ allowed)")
        return url
    host = base_url.host or ""
    if _is_loopback(host):
        return None
    found = urllib.request.getproxies_environment().get(base_url.scheme)
    if not found or urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]  # untyped, stdlib
        return None
    url = URL(found if "://" in found else f"http://{found}")
    return url if url.scheme in ("http", "https") and url.host else None


def _proxy_secrets(proxy: URL | None) -> tuple[str, ...]:
    # A proxy's password, and its Basic form, are secrets like the API secret.
    if proxy is None or proxy.password is None:
        return ()
    basic = base64.b64encode(f"{proxy.user or ''}:{proxy.password}".encode()).decode("ascii")
    return (proxy.password, basic, f"{proxy.user or ''}:{proxy.password}")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Transport:
    """
    Sends requests to one Rehook base URL with one set of credentials.
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
        # Built once here (RFC 7617, UTF-8) rather than with aiohttp.BasicAuth, which aiohttp 3.14 deprecates.
        token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
        self._auth = "Basic " + token
        # Every request carries these; the user's extra headers (checked by the client) may replace the User-Agent.
        self._headers = {"User-Agent": USER_AGENT, **(headers or {}), "Authorization": self._auth}
        # What an answer must never carry into an outcome, a log line or the dead-letter file: a server or proxy
        # that echoes the request's Authorization header would otherwise hand the secret to all of them.
        proxied = _proxy_secrets(proxy)
        self._secrets = tuple(
            sorted(
                {s for s in (token, api_secret, api_key, *proxied) if len(s) >= _MIN_REDACTED}, key=len, reverse=True
            )
        )
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._concurrency = concurrency
        self._session = session
        self._owns_session = session is None
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
            resolver = _BlockingResolver() if _exit.draining else None
            connector = aiohttp.TCPConnector(
                limit=self._concurrency, limit_per_host=self._concurrency, resolver=resolver
            )
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
        session = self._session or self._get_session()
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
            return self._no_answer(exc)

    def _no_answer(self, exc: BaseException) -> Attempt:
        if isinstance(exc, aiohttp.ClientConnectorError):
            # Refused, unreachable, DNS failure, TLS handshake: the request never left.
            return Attempt(error=self._redact(f"cannot connect: {_describe(exc)}"), unreachable=True)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return Attempt(error=self._redact(f"connect timed out: {_describe(exc)}"), unreachable=True)
        if isinstance(exc, TimeoutError):
            return Attempt(error=f"no answer within {self._timeout.total} s: {_describe(exc)}", maybe_sent=True)
        # Reset, disconnected, broken response head: the request may have reached Rehook.
        return Attempt(error=self._redact(f"connection lost: {_describe(exc)}"), maybe_sent=True)

    def _text(self, prefix: bytearray) -> str:
        return self._redact(prefix.decode("utf-8", errors="replace")[:_MAX_BODY_CHARS])

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

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
        self._owns_session = True

    async def close(self) -> None:
        """
        Close the session if this transport created it; a user's session stays open.
        """
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None if self._owns_session else self._session


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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
