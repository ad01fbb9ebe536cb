"""
HTTP to Rehook: one keep-alive aiohttp session, Basic auth, and every answer or error turned into an `Attempt`.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Coroutine
from typing import Any, NamedTuple

import aiohttp
from yarl import URL

from ._actions import Request
from ._constants import IDEMPOTENCY_HEADER
from ._exceptions import ConfigurationError
from ._retry import parse_retry_after

__all__ = ["Attempt", "Transport", "check_base_url"]

# Kept per outcome and in logs; Rehook's error bodies are small, a proxy's HTML page need not be kept whole.
_MAX_BODY_CHARS = 8192


class Attempt(NamedTuple):
    """
    What one HTTP request came to (a named tuple: one is made per request, in the sender's hot loop).

    Attributes:
        status: The HTTP status, or ``None`` when no answer came.
        body: The response body as text (truncated), or ``None``.
        retry_after: Seconds the server's Retry-After asked for, if any.
        error: What went wrong when no answer came.
        maybe_sent: No answer came, and the request may have reached Rehook (timeout, lost connection).
    """

    status: int | None = None
    body: str | None = None
    retry_after: float | None = None
    error: str | None = None
    maybe_sent: bool = False


def check_base_url(base_url: str) -> URL:
    """
    Parse ``base_url``: https, or http only to a loopback host (a local fake Rehook).

    Raises:
        ConfigurationError: anything else, so credentials never travel in clear text.
    """
    url = URL(base_url)
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
    ) -> None:
        self._base = str(base_url).rstrip("/")
        # Built once here (RFC 7617, UTF-8) rather than with aiohttp.BasicAuth, which aiohttp 3.14 deprecates.
        self._auth = "Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
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
            connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def post(self, request: Request, idempotency_key: str) -> Coroutine[Any, Any, Attempt]:
        """
        POST one request; never raises for network trouble (cancellation passes through). Await the result.

        A plain function returning `_request`'s coroutine, so that each request in flight holds one coroutine
        of this module rather than two.
        """
        headers = {
            "Authorization": self._auth,
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: idempotency_key,
        }
        return self._request("POST", self._url(request.path), headers, request.body)

    async def get(self, path: str) -> Attempt:
        """
        GET ``path``; never raises for network trouble.
        """
        return await self._request("GET", self._url(path), {"Authorization": self._auth}, None)

    async def _request(self, method: str, url: URL, headers: dict[str, str], body: bytes | None) -> Attempt:
        session = self._session or self._get_session()
        try:
            async with session.request(
                method, url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                raw = await response.read()
                status = response.status
                # Retry-After matters only on the answers that are retried; 2xx skip the header lookup.
                retry_after = None if status < 300 else parse_retry_after(response.headers.get("Retry-After"))
                text = raw.decode("utf-8", errors="replace")
                return Attempt(status=status, body=text[:_MAX_BODY_CHARS], retry_after=retry_after)
        except aiohttp.ClientConnectorError as exc:
            # Refused, unreachable, DNS failure, TLS handshake: the request never left.
            return Attempt(error=f"cannot connect: {_describe(exc)}")
        except aiohttp.ConnectionTimeoutError as exc:
            return Attempt(error=f"connect timed out: {_describe(exc)}")
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return Attempt(error=f"no answer within {self._timeout.total} s: {_describe(exc)}", maybe_sent=True)
        except aiohttp.ClientError as exc:
            # Reset, disconnected, broken response: the request may have reached Rehook.
            return Attempt(error=f"connection lost: {_describe(exc)}", maybe_sent=True)

    async def close(self) -> None:
        """
        Close the session if this transport created it; a user's session stays open.
        """
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None if self._owns_session else self._session


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
