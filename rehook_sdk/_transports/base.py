"""
What every transport shares: the `Transport` protocol the delivery engine sends through (a prepared request in, an
`Attempt` out), the headers every request carries, and how answers are kept and redacted.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine, Mapping
from typing import Any, NamedTuple, Protocol

import aiohttp
from yarl import URL

from .._core.constants import IDEMPOTENCY_HEADER, VERSION
from .._core.redaction import REDACTED, Redactor, basic_token
from .._mapping.actions import Request

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_BODY_BYTES",
    "REDACTED",
    "RESERVED_HEADERS",
    "USER_AGENT",
    "Attempt",
    "Credentials",
    "Transport",
    "describe",
]

USER_AGENT = (
    f"rehook-sdk-python/{VERSION} (python {sys.version_info.major}.{sys.version_info.minor}; "
    f"aiohttp {aiohttp.__version__.rsplit('.', 1)[0]})"
)
"""What every request says it is, unless ``headers=`` gives another User-Agent."""
RESERVED_HEADERS = frozenset({"authorization", "content-type", IDEMPOTENCY_HEADER.lower()})
"""Headers ``headers=`` may not set: the SDK's own, which Rehook's answers depend on."""


# Kept per outcome and in logs; Rehook's error bodies are small, a proxy's HTML page need not be kept whole.
_MAX_BODY_CHARS = 8192
# At most this much of any answer is read; the rest is never read, and its connection is closed instead of reused.
# The status line decides the outcome, so a huge or endless body costs neither memory nor the event loop's time.
MAX_BODY_BYTES = 64 * 1024
# A keep-alive connection idle this long is closed rather than reused: a server or proxy closing it meanwhile would
# cross the request on the wire, and the request would be lost or maybe delivered. Below the 5 s idle timeouts of
# Apache httpd and Node's http server, as undici's 4 s default; lower when a server's Keep-Alive header asks.
IDLE_TIMEOUT = 4.0


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
        tls: The TLS handshake refused the server's certificate (unknown CA, wrong host name, expired): the
            request never left, and a retry would meet the same certificate.
        from_proxy: ``status`` is a proxy's answer to CONNECT: the tunnel to Rehook was not opened, the request
            never left.
    """

    status: int | None = None
    body: str | None = None
    retry_after: float | None = None
    error: str | None = None
    maybe_sent: bool = False
    unreachable: bool = False
    tls: bool = False
    from_proxy: bool = False


class Transport(Protocol):
    """
    How the delivery engine talks to Rehook. ``post`` and ``get`` never raise for network trouble (an `Attempt` says
    what happened); cancellation passes through.
    """

    def post(self, request: Request, idempotency_key: str) -> Coroutine[Any, Any, Attempt]:
        """
        POST ``request`` with its Idempotency-Key (the coroutine is awaited by the sender).
        """
        ...

    async def get(self, path: str) -> Attempt:
        """
        GET ``path`` (``check_auth``).
        """
        ...

    def rebind(self) -> None:
        """
        Forget connections of an event loop that has closed: the client starts over on a new loop.
        """
        ...

    async def close(self) -> None:
        """
        Close what this transport opened.
        """
        ...


class Credentials:
    """
    The Basic authorization of one client, the headers every request carries, and the secrets no answer may carry
    into an outcome, a log line or the dead-letter file (a server or proxy that echoes the request's
    Authorization header would otherwise hand the secret to all of them).
    """

    def __init__(
        self, api_key: str, api_secret: str, headers: Mapping[str, str] | None, proxy: URL | None = None
    ) -> None:
        # Built once here (RFC 7617, UTF-8) rather than with aiohttp.BasicAuth, which aiohttp 3.14 deprecates.
        token = basic_token(api_key, api_secret)
        self.authorization = "Basic " + token
        # Every request carries these; the user's extra headers (checked by the client) may replace the User-Agent.
        self.headers = {"User-Agent": USER_AGENT, **(headers or {}), "Authorization": self.authorization}
        redactor = Redactor((token, api_secret, api_key, f"{api_key}:{api_secret}", *_proxy_secrets(proxy)))
        self.redact = redactor.redact
        self._shortest = redactor.shortest

    def body_text(self, prefix: bytes | bytearray) -> str:
        """
        What an outcome keeps of an answer's body: its text with the secrets redacted, then cut to a length logs
        can carry (cut first, a secret at the cut would be kept in part: a Basic token without its last
        characters still decodes to most of ``key:secret``).
        """
        text = prefix.decode("utf-8", errors="replace")
        if len(text) >= self._shortest:  # a 2xx's "{}" holds no secret: one check, on every answer
            text = self.redact(text)
        return text[:_MAX_BODY_CHARS]


def _proxy_secrets(proxy: URL | None) -> tuple[str, ...]:
    # A proxy's password, and its Basic form, are secrets like the API secret.
    if proxy is None or proxy.password is None:
        return ()
    user = proxy.user or ""
    return (proxy.password, basic_token(user, proxy.password), f"{user}:{proxy.password}")


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
