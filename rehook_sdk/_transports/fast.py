"""
The write hot path: keep-alive HTTP/1.1 connections on `asyncio.Protocol`, requests written from pre-encoded header
bytes, answers parsed by httptools (llhttp, the parser uvicorn uses). It posts the two write endpoints only, and
only straight to Rehook (https, or http to loopback; no proxy, no session of the user's); ``get`` (check_auth) goes
through aiohttp.

The "may have been sent" rules are the aiohttp transport's: a failure before the request was written (refused,
DNS, TLS handshake, connect timeout) is ``unreachable`` (a refused certificate: ``tls``); after it was written, no
status line is ``maybe_sent``; a status line, however the body ends, is the answer. A kept-alive connection is not
reused once it has been idle too long (`KeepAlive`), nor when the peer has closed it or sent anything since its
last answer (checked just before the write); when it closes before the request is written, the request goes out
on a new connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine, Mapping
from typing import Any, cast

import httptools
from yarl import URL

from .._core import exiting
from .._core.constants import IDEMPOTENCY_HEADER
from .._core.retry import parse_retry_after
from .._mapping.actions import Request
from .aiohttp import AiohttpTransport
from .base import MAX_BODY_BYTES, Attempt, Credentials, describe
from .config import unverified
from .heads import MAX_FRAMING, MAX_HEAD, MAX_HEADERS, MAX_LINE
from .keepalive import CHECK_AFTER, KeepAlive, parse_keep_alive, readable

__all__ = ["FastTransport"]

# Past a limit of `heads` before the status, the connection is closed and the answer is unknown (the request may have
# been acted on); past one after the status came, the status stands and the rest is not read, as for a body longer
# than MAX_BODY_BYTES. httptools keeps no limits of its own and grows a header by concatenation, so an endless
# header would otherwise cost memory, and quadratic time, until the request timed out.


class _Answer(Exception):
    """
    The connection ended, or the answer could not be parsed, before the answer was complete.
    """


class _Connection(asyncio.Protocol):
    """
    One keep-alive connection: at most one request at a time, its answer parsed as the bytes arrive.
    """

    def __init__(self, keep_alive: KeepAlive) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.usable = True  # False once it cannot carry another request
        self.status: int | None = None
        self.retry_after: bytes | None = None
        self.announced: float | None = None  # the last answer's Keep-Alive: timeout=N
        self.most: int | None = None  # and its max=N
        self.body = bytearray()
        self.whole = False  # the body was read to its end (not cut at MAX_BODY_BYTES)
        self.written = False  # the request was handed to the socket
        self.idle_since = 0.0  # loop time it went back to the idle list; 0.0 while in use
        self.aborted = False  # closed by this side
        self._keep_alive = keep_alive
        # What the answer sent besides its body, against the limits above.
        self.in_head = True  # before the final status's headers are complete
        self.head_bytes = 0
        self.line = 0  # bytes since the last newline outside the body
        self.headers = 0
        self.framing = 0  # bytes after the head that are not body
        self.fed = 0  # body bytes of the data being fed
        self.broken: str | None = None  # which limit the answer broke

    # -- one request ----------------------------------------------------------------------------------------

    def expect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> asyncio.Future[None]:
        """
        Get ready for the answer to a request about to be written: the future is done when the answer is, with
        `_Answer` when it cannot be, or with `TimeoutError` once the transport's sweep finds ``deadline`` (loop
        time) passed.
        """
        assert self.waiter is None
        self.status = self.retry_after = self.announced = self.most = None
        self.body = bytearray()
        self.whole = self.written = False
        self.in_head, self.head_bytes, self.line, self.headers, self.framing, self.broken = True, 0, 0, 0, 0, None
        self.idle_since = 0.0
        self.deadline = deadline
        self.waiter = waiter = loop.create_future()
        return waiter

    def write(self, data: bytes) -> None:
        transport = self.transport
        if self.waiter is not None and transport is not None and not transport.is_closing():
            transport.write(data)
            self.written = True

    def reusable(self, now: float) -> bool:
        """
        Whether this idle connection may carry the next request: open, idle for less than its limit, and nothing
        (an EOF, a reset, stray bytes) arrived since its last answer.
        """
        transport = self.transport
        if not self.usable or transport is None or transport.is_closing():
            return False
        idle = now - self.idle_since
        # Reused at once, as under load, with no Keep-Alive timeout: no limit is that short (a learned one is at
        # least 7.5 ms), and nothing is checked.
        if idle >= CHECK_AFTER or self.announced is not None:
            if idle >= self._keep_alive.limit(now, self.announced):
                return False
            if idle >= CHECK_AFTER and readable(transport):
                return False
        self.idle_since = 0.0
        return True

    def may_keep(self) -> bool:
        """
        Whether the answer just read leaves this connection open for another request.
        """
        return self.usable and self.whole and (self.most is None or self.most >= 1)

    def time_out(self) -> None:
        self._done(TimeoutError())

    def _done(self, error: BaseException | None = None) -> None:
        waiter, self.waiter = self.waiter, None
        if error is not None:
            self.usable = False
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def abort(self) -> None:
        self.usable = False
        self.aborted = True
        if self.transport is not None:
            self.transport.abort()

    def _closed_by_peer(self) -> None:
        if self.waiter is None and self.idle_since and not self.aborted and self.transport is not None:
            now = asyncio.get_running_loop().time()
            self._keep_alive.peer_closed(now, now - self.idle_since)
            self.idle_since = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports have asyncio.Transport's methods without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection's state is unknown
            self.abort()
            return
        if self.in_head and self.line + len(data) > MAX_LINE and data.rfind(b"\n") < 0:
            self._break(f"a header line longer than {MAX_LINE:,} bytes")  # checked before httptools grows it
            return
        self.fed = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort()
            self._done(_Answer(f"a malformed answer: {describe(exc)}"))
            return
        if self.whole and self.broken is None:
            return  # the answer is complete: the usual case, one read for the whole answer
        self._count(data)

    def _count(self, data: bytes) -> None:
        """
        Count the bytes just fed against the limits.
        """
        size, newline = len(data), data.rfind(b"\n")
        if self.broken is not None:
            self._break(self.broken)
        elif self.waiter is None:  # the answer is complete
            return
        elif self.in_head:
            self.head_bytes += size
            self.line = size - newline - 1 if newline >= 0 else self.line + size
            if self.head_bytes > MAX_HEAD:
                self._break(f"a head larger than {MAX_HEAD:,} bytes")
        elif (outside := size - self.fed) > 0:
            # Chunk framing or trailers (or the end of the head, in the bytes that completed it).
            self.framing += outside
            self.line = self.line + size if newline < 0 and outside == size else 0
            if self.line > MAX_LINE:
                self._break(f"a line longer than {MAX_LINE:,} bytes after the head")
            elif self.framing > MAX_FRAMING:
                self._break(f"more than {MAX_FRAMING:,} bytes of chunk framing and trailers")

    def _break(self, limit: str) -> None:
        """
        The answer broke a limit: close the connection. Before the status, the answer is unknown; after it, the
        status stands and the rest is not read.
        """
        self.abort()
        if self.in_head:
            self._done(_Answer(f"the answer broke the SDK's limits ({limit}); the connection was closed"))
        else:
            self._done()

    def eof_received(self) -> bool:
        self.usable = False
        self._closed_by_peer()
        return False  # close the transport; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._closed_by_peer()
        if self.waiter is not None:
            self._done(_Answer(f"the connection closed before the answer was complete{_cause(exc)}"))

    # -- httptools callbacks --------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers += 1
        if self.headers > MAX_HEADERS:
            self.broken = f"more than {MAX_HEADERS} header fields"
        elif len(name) + len(value) > MAX_LINE:
            self.broken = f"a header line longer than {MAX_LINE:,} bytes"
        elif len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value
        elif len(name) == 10 and name.lower() == b"keep-alive":
            self.announced, self.most = parse_keep_alive(value)  # parsed once per answer

    def on_headers_complete(self) -> None:
        if self.waiter is None:  # a second answer to one request, in the same bytes
            self.abort()
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return
        self.status = status
        self.in_head = False
        self.line = 0
        if not self.parser.should_keep_alive():
            self.usable = False

    def on_body(self, body: bytes) -> None:
        self.fed += len(body)
        if self.status is None or self.waiter is None:
            return
        room = MAX_BODY_BYTES - len(self.body)
        if len(body) <= room:
            self.body += body
            return
        # More than is ever read: the status decides; the rest is not read, and the connection is not reused.
        self.body += body[:room]
        self.abort()
        self._done()

    def on_message_complete(self) -> None:
        if self.status is None or self.waiter is None:  # the end of an interim answer, or of one nobody asked for
            return
        self.whole = True
        self._done()


def _cause(exc: BaseException | None) -> str:
    return f" ({describe(exc)})" if exc is not None else ""


class FastTransport:
    """
    Posts to one Rehook base URL over keep-alive connections of its own, at most ``concurrency`` of them.
    """

    def __init__(
        self,
        base_url: URL,
        api_key: str,
        api_secret: str,
        *,
        request_timeout: float,
        concurrency: int,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # check_auth and anything else that is not a write: aiohttp, with the same settings.
        self._slow = AiohttpTransport(
            base_url,
            api_key,
            api_secret,
            request_timeout=request_timeout,
            concurrency=1,
            session=None,
            headers=headers,
            ssl_context=ssl_context,
        )
        self.credentials = credentials = Credentials(api_key, api_secret, headers)
        assert base_url.host is not None
        self._host = base_url.host
        self._port = base_url.port or (443 if base_url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if base_url.scheme == "https":
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._timeout = request_timeout
        self._concurrency = concurrency
        self._prefix = base_url.raw_path.rstrip("/")
        raw_host = base_url.raw_host or self._host
        if ":" in raw_host:  # an IPv6 literal
            raw_host = f"[{raw_host}]"
        host_header = raw_host if base_url.is_default_port() else f"{raw_host}:{self._port}"
        fixed = {"Host": host_header, **credentials.headers, "Content-Type": "application/json"}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("utf-8")
        self._heads: dict[str, bytes] = {}
        self._idle: list[_Connection] = []
        self._keep_alive = KeepAlive()
        # Deadlines: one sweep every _period while requests are in flight, rather than a timer per request (a
        # timer handle and a heap push, then a cancelled handle left in the loop's heap, on every request). A
        # request times out within _period after its deadline.
        self._busy: set[_Connection] = set()
        self._period = min(max(request_timeout / 8, 0.005), 0.1)
        self._sweep_handle: asyncio.TimerHandle | None = None
        # Writes wait for the end of the loop's turn and go out together. Senders resume one after another as their
        # answers come, each with some work before its next request; written one by one, each request would find
        # the server asleep again and pay for waking it (measured on these machines: a send() costs 4 us while the
        # server is busy, 20 us once 40 us pass between sends).
        self._outbox: list[tuple[_Connection, bytes]] = []

    def _head(self, path: str) -> bytes:
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = f"POST {self._prefix}{path} HTTP/1.1\r\n".encode() + self._fixed
        return head

    def post(self, request: Request, idempotency_key: str) -> Coroutine[Any, Any, Attempt]:
        body = request.body
        data = b"".join(
            (
                self._heads.get(request.path) or self._head(request.path),
                IDEMPOTENCY_HEADER.encode(),
                b": ",
                idempotency_key.encode("utf-8"),
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )
        return self._send(data)

    async def _send(self, data: bytes) -> Attempt:
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self._timeout
        taken = self._take_idle(now)
        busy = self._busy
        while True:
            if taken is not None:
                connection, taken = taken, None
                reused = True
            else:
                made = await self._connect_by(loop, deadline)
                if isinstance(made, Attempt):
                    return made
                connection, reused = made, False
            busy.add(connection)
            if self._sweep_handle is None:
                self._sweep_handle = loop.call_later(self._period, self._sweep, loop)
            try:
                answered = connection.expect(loop, deadline)
                if not self._outbox:
                    loop.call_soon(self._write_out)
                self._outbox.append((connection, data))
                await answered
            except (TimeoutError, _Answer) as exc:
                connection.abort()
                if reused and connection.status is None and not connection.written:
                    continue  # the kept-alive connection closed before the request was written: a new one
                return self._unanswered(connection, exc)
            except BaseException:
                connection.abort()  # cancelled mid-request: its state is unknown
                raise
            finally:
                busy.discard(connection)
            attempt = self._answer(connection)
            if connection.may_keep() and len(self._idle) < self._concurrency:
                connection.idle_since = loop.time()
                self._idle.append(connection)
            else:
                connection.abort()
            return attempt

    def _unanswered(self, connection: _Connection, exc: BaseException) -> Attempt:
        """
        What a request whose answer did not come whole came to (the connection is aborted already).
        """
        if connection.status is not None:
            # The status line and headers came, then the body was cut, garbled or too slow: the answer is known.
            return self._answer(connection)
        timed_out = isinstance(exc, TimeoutError)
        if not connection.written:  # nothing was sent
            if timed_out:  # the loop stalled past the deadline before the write
                return Attempt(error=f"not sent within {self._timeout} s: {describe(exc)}", unreachable=True)
            return Attempt(
                error=f"cannot connect: the connection closed before the request was sent{_cause(exc)}",
                unreachable=True,
            )
        if timed_out:
            return Attempt(
                error=f"no answer within {self._timeout} s after the request was sent: {describe(exc)}", maybe_sent=True
            )
        return Attempt(
            error=self.credentials.redact(f"connection lost after the request was sent: {exc}"), maybe_sent=True
        )

    async def _connect_by(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection | Attempt:
        if (weakened := unverified(self._ssl)) is not None:
            return Attempt(error=weakened, tls=True)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._connect(loop)
        except TimeoutError as exc:
            return Attempt(error=f"connect timed out: {describe(exc)} after {self._timeout} s", unreachable=True)
        except ssl.SSLCertVerificationError as exc:
            # Unknown CA, wrong host name, expired: the request never left, and every retry would meet it again.
            return Attempt(error=self.credentials.redact(f"cannot connect: {describe(exc)}"), tls=True)
        except Exception as exc:  # OSError, ssl.SSLError, socket.gaierror, a bad address
            # Refused, unreachable, DNS failure, TLS handshake: the request never left.
            return Attempt(error=self.credentials.redact(f"cannot connect: {describe(exc)}"), unreachable=True)

    def _write_out(self) -> None:
        outbox, self._outbox = self._outbox, []
        for connection, data in outbox:
            connection.write(data)  # not if it timed out or was cancelled meanwhile

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep_handle = None
        now = loop.time()
        for connection in [c for c in self._busy if c.deadline <= now]:
            connection.time_out()
        if self._busy:
            self._sweep_handle = loop.call_later(self._period, self._sweep, loop)

    def _answer(self, connection: _Connection) -> Attempt:
        status = connection.status
        assert status is not None
        raw = connection.retry_after
        retry_after = parse_retry_after(raw.decode("latin-1")) if raw is not None and status >= 300 else None
        body = self.credentials.body_text(connection.body) if connection.body else ""
        return Attempt(status=status, body=body, retry_after=retry_after)

    def _take_idle(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.reusable(now):
                return connection
            connection.abort()  # retired: idle too long, or closed (or spoken on) by the peer
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        host: str = self._host
        if exiting.draining:
            # During the exit drain, names are resolved in this thread: the loop's resolver needs an executor thread,
            # which Python 3.12 cannot start at interpreter exit (nothing else runs on this loop then).
            host = str(socket.getaddrinfo(host, self._port, type=socket.SOCK_STREAM)[0][4][0])
        keep_alive = self._keep_alive
        _, connection = await loop.create_connection(
            lambda: _Connection(keep_alive),
            host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        return connection  # asyncio sets TCP_NODELAY on every TCP connection

    async def get(self, path: str) -> Attempt:
        return await self._slow.get(path)

    def rebind(self) -> None:
        # Connections of a closed loop cannot be used (nor closed through it): forget them, and the sweep.
        self._idle.clear()
        self._busy.clear()
        self._outbox.clear()
        self._sweep_handle = None
        self._slow.rebind()

    async def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        idle, self._idle = self._idle, []
        for connection in idle:
            if connection.transport is not None:
                connection.transport.close()
        await self._slow.close()
