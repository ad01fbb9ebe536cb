"""
`FaultProxy`: a TCP proxy on loopback between a client and an HTTP/1.1 server that breaks the network on purpose.

It reads each request off a (keep-alive) client connection, applies the next scripted fault, and forwards or not.
Faults act on the bytes, below any HTTP library, so a client's handling of them is checked against the network
rather than against a server's own idea of a failure. Every request is recorded with what the proxy did, so a test
can keep exact books: which requests the server processed, which of those the client never heard the answer to.

Only the framing the proxy needs is parsed: request and response heads, ``Content-Length`` bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Literal, Self

import attrs
from yarl import URL

__all__ = ["FaultKind", "FaultProxy", "ProxiedRequest", "ProxyFault"]

FaultKind = Literal[
    "pass",
    "latency",
    "reset_before",
    "silence_before",
    "reset_after",
    "silence_after",
    "garbage",
    "head_cut",
    "body_cut",
    "drip",
    "huge_body",
    "endless_body",
    "gateway_timeout",
    "bad_gateway",
    "unavailable",
]

# The faults after which the server has processed (or is processing) the request but the client cannot know the
# answer: the only ones that can make an at-least-once client send the same call twice.
AMBIGUOUS: frozenset[str] = frozenset(
    {"reset_after", "silence_after", "garbage", "head_cut", "gateway_timeout", "bad_gateway"}
)
# What a gateway answers in place of the server: HAProxy's and nginx's error pages say as much, and close.
_GATEWAY_ANSWERS = {
    "gateway_timeout": b"504 Gateway Time-out",
    "bad_gateway": b"502 Bad Gateway",
    "unavailable": b"503 Service Unavailable",
}

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_KEY = re.compile(rb"\r\nidempotency-key:[ \t]*([^\r\n]*)", re.IGNORECASE)
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")
_FRAMING = re.compile(rb"\r\n(?:content-length|transfer-encoding):[^\r\n]*", re.IGNORECASE)
_CHUNK = 64 * 1024
# An endless body stops by itself after this long, so that no test can run forever.
_ENDLESS_LIMIT = 30.0


@attrs.frozen(kw_only=True)
class ProxyFault:
    """
    What the proxy does to one request.

    Attributes:
        kind: ``pass``; ``latency`` (wait ``seconds``, then pass); ``reset_before`` / ``silence_before`` (reset the
            client's connection, or say nothing, without forwarding: the server never sees the request);
            ``reset_after`` / ``silence_after`` / ``garbage`` / ``head_cut`` (forward, then reset, say nothing,
            answer bytes that are not HTTP, or half the answer's head: the server processed it, the client cannot
            know); ``body_cut`` (the answer's head and half its body, then close); ``drip`` (the answer one byte
            every ``seconds``); ``huge_body`` (the answer's status with a body of ``size`` bytes); ``endless_body``
            (the answer's status with a chunked body that never ends). A gateway's own answers, as HAProxy and nginx
            give them: ``gateway_timeout`` (forward, then answer 504 if the server has not answered within
            ``seconds``, as ``timeout server`` or ``proxy_read_timeout`` do: the server goes on processing it),
            ``bad_gateway`` (forward, then answer 502 in place of the server's answer, as after an answer the
            gateway could not read), ``unavailable`` (answer 503 without forwarding, as when no server is up or a
            rate limit refuses it); each closes the client's connection.
        seconds: For ``latency``, ``drip`` and ``gateway_timeout``.
        size: For ``huge_body``.
    """

    kind: FaultKind
    seconds: float = 0.001
    size: int = 100 * 1024 * 1024


@attrs.frozen(kw_only=True)
class ProxiedRequest:
    """
    One request the proxy read, and what it did with it.

    Attributes:
        fault: The fault applied.
        key: The request's ``Idempotency-Key``, if any.
        forwarded: Whether the server got the request.
        status: The server's status, when it was forwarded and answered.
        bytes_to_client: Bytes of answer the client accepted before the proxy stopped writing.
        finished: Whether the proxy is done with the request (until then ``bytes_to_client`` may still grow).
    """

    fault: str
    key: str | None
    forwarded: bool
    status: int | None
    bytes_to_client: int
    finished: bool = True


class FaultProxy:
    """
    A loopback TCP proxy to ``upstream`` (``host``, ``port``) that applies scripted faults per request.

    Use ``async with FaultProxy(host, port) as proxy`` and point the client at ``proxy.url``. `script` queues
    faults for the next requests, `random_faults` draws one per request, `down`/`up` refuse connections for a while.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._script: deque[ProxyFault] = deque()
        self._rates: list[tuple[ProxyFault, float]] = []
        self._rng = random.Random(0)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._late: set[asyncio.Task[None]] = set()  # upstream answers a gateway stopped waiting for
        self.requests: list[ProxiedRequest] = []

    @classmethod
    def for_url(cls, url: str) -> FaultProxy:
        """
        A proxy to the server at ``url`` (``http://host:port``), such as ``FakeRehook.url``.
        """
        parsed = URL(url)
        if parsed.host is None or parsed.port is None:
            raise ValueError(f"FaultProxy needs an http://host:port URL, got {url!r}")
        return cls(parsed.host, parsed.port)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """
        Listen on ``host:port`` (port 0: a free one, kept for `up` after `down`).
        """
        self._server = await asyncio.start_server(self._accept, self._host, self._port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """
        Stop listening and cut every open connection.
        """
        await self.down()
        for task in [*self._tasks, *self._late]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._late, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def down(self) -> None:
        """
        Refuse new connections and reset the open ones, as a host that went away.
        """
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            _reset(writer)

    async def up(self) -> None:
        """
        Accept connections again on the same port.
        """
        if self._server is None:
            await self.start()

    @property
    def url(self) -> str:
        """
        ``http://host:port`` of the proxy.
        """
        return f"http://{self._host}:{self._port}"

    # -- faults ------------------------------------------------------------------------------------------

    def script(self, fault: ProxyFault | FaultKind, count: int = 1) -> None:
        """
        Apply ``fault`` to the next ``count`` requests (after those already scripted).
        """
        item = fault if isinstance(fault, ProxyFault) else ProxyFault(kind=fault)
        self._script.extend([item] * count)

    def random_faults(self, rates: Iterable[tuple[ProxyFault | FaultKind, float]], *, seed: int = 0) -> None:
        """
        Once the script is used up, apply each fault to a share of requests (``rates``: fault and probability).
        """
        self._rates = [(f if isinstance(f, ProxyFault) else ProxyFault(kind=f), rate) for f, rate in rates]
        self._rng = random.Random(seed)

    def clear(self) -> None:
        """
        Pass every request from now on.
        """
        self._script.clear()
        self._rates = []

    def _next_fault(self) -> ProxyFault:
        if self._script:
            return self._script.popleft()
        draw = self._rng.random() if self._rates else 1.0
        for fault, rate in self._rates:
            if draw < rate:
                return fault
            draw -= rate
        return _PASS

    # -- books -------------------------------------------------------------------------------------------

    def finished(self) -> bool:
        """
        Whether the proxy is done with every request it has read.
        """
        return all(r.finished for r in self.requests)

    def ambiguous_keys(self) -> frozenset[str]:
        """
        Keys of requests the server answered while the client was kept from reading the answer whole.
        """
        return frozenset(r.key for r in self.requests if r.fault in AMBIGUOUS and r.forwarded and r.key)

    # -- the proxy ---------------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message(reader)
                if request is None:
                    return
                fault = self._next_fault()
                if upstream is None and fault.kind not in ("reset_before", "silence_before", "unavailable"):
                    upstream = await asyncio.open_connection(*self._upstream)
                if fault.kind in _GATEWAY_ANSWERS:
                    upstream = await self._gateway(fault, request, writer, upstream)
                    return
                keep = await self._apply(fault, request, reader, writer, upstream)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if upstream is not None:
                upstream[1].close()
            writer.close()

    async def _gateway(
        self,
        fault: ProxyFault,
        request: tuple[bytes, bytes],
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """
        Answer as a gateway would (see `ProxyFault`); the upstream connection is handed to a task that reads the
        server's late answer and closes it (``None`` is returned: the caller must not close it).
        """
        head, body = request
        found = _KEY.search(head)
        key = found.group(1).decode("latin-1").strip() if found else None
        kind = fault.kind
        answer: tuple[bytes, bytes] | None = None
        forwarded = upstream is not None and kind != "unavailable"
        if forwarded:
            assert upstream is not None
            upstream[1].write(head + body)
            await upstream[1].drain()
            reading = asyncio.ensure_future(_read_message(upstream[0]))
            if kind == "gateway_timeout":
                done, _ = await asyncio.wait([reading], timeout=fault.seconds)
                if done and not reading.exception():
                    answer = reading.result()
            if answer is None:
                late = asyncio.ensure_future(_finish_late(reading, upstream[1]))
                self._late.add(late)
                late.add_done_callback(self._late.discard)
                upstream = None
        if answer is not None:  # the server answered in time: passed on as it is
            a_head, a_body = answer
            match = _STATUS.match(a_head)
            status = int(match.group(1)) if match else None
            self.requests.append(
                ProxiedRequest(fault="pass", key=key, forwarded=True, status=status, bytes_to_client=len(a_head))
            )
            writer.write(a_head + a_body)
            await writer.drain()
            if upstream is not None:
                upstream[1].close()
            writer.close()
            return None
        text = _GATEWAY_ANSWERS[kind]
        page = b"<html><body><h1>%s</h1></body></html>\n" % text
        reply = b"HTTP/1.1 %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
            text,
            len(page),
            page,
        )
        self.requests.append(
            ProxiedRequest(fault=kind, key=key, forwarded=forwarded, status=None, bytes_to_client=len(reply))
        )
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(reply)
            await writer.drain()
        if upstream is not None:
            upstream[1].close()
        return None

    async def _apply(
        self,
        fault: ProxyFault,
        request: tuple[bytes, bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> bool:
        """
        Apply one fault; return whether the client connection stays open for another request.
        """
        head, body = request
        found = _KEY.search(head)
        key = found.group(1).decode("latin-1").strip() if found else None
        kind = fault.kind
        if kind == "latency":
            await asyncio.sleep(fault.seconds)
        if kind in ("reset_before", "silence_before"):
            self.requests.append(ProxiedRequest(fault=kind, key=key, forwarded=False, status=None, bytes_to_client=0))
            if kind == "reset_before":
                _reset(writer)
            else:
                await _until_closed(reader)
            return False
        assert upstream is not None
        upstream[1].write(head + body)
        await upstream[1].drain()
        answer = await _read_message(upstream[0])
        if answer is None:
            raise ConnectionError("the server closed the connection without an answer")
        a_head, a_body = answer
        match = _STATUS.match(a_head)
        status = int(match.group(1)) if match else None
        # Recorded now, before the answer goes out: the client may have its outcome before the proxy is done.
        index = len(self.requests)
        self.requests.append(
            ProxiedRequest(fault=kind, key=key, forwarded=True, status=status, bytes_to_client=0, finished=False)
        )
        progress = _Progress()
        try:
            keep = await _ANSWERS[kind](fault, a_head, a_body, reader, writer, progress)
            await writer.drain()
        except (ConnectionError, OSError):
            keep = False
        finally:
            self.requests[index] = attrs.evolve(self.requests[index], bytes_to_client=progress.sent, finished=True)
        if not keep and kind != "reset_after":
            writer.close()
        return keep


_PASS = ProxyFault(kind="pass")


class _Progress:
    """
    The bytes of an answer sent to the client so far (recorded also when sending it fails halfway).
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0


async def _answer_as_is(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    # pass, latency: the faults that act before the answer (or not at all)
    writer.write(head + body)
    p.sent = len(head) + len(body)
    return True


async def _reset_after(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    _reset(writer)
    return False


async def _silence_after(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    await _until_closed(reader)
    return False


async def _garbage(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    writer.write(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n\x01\x02")
    return False


async def _head_cut(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    writer.write(head[: len(head) // 2])
    p.sent = len(head) // 2
    return False


async def _body_cut(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    cut = head + body[: len(body) // 2]
    writer.write(cut)
    p.sent = len(cut)
    return False


async def _drip(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    answer = head + body
    for i in range(len(answer)):
        writer.write(answer[i : i + 1])
        await writer.drain()
        p.sent += 1
        await asyncio.sleep(fault.seconds)
    return True


async def _huge_body(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    new_head = _reframe(head, b"Content-Length: %d" % fault.size)
    writer.write(new_head + body)
    p.sent = len(new_head) + len(body)
    left = fault.size - len(body)
    pad = b" " * _CHUNK
    while left > 0:
        piece = pad[: min(left, _CHUNK)]
        writer.write(piece)
        await writer.drain()
        p.sent += len(piece)
        left -= len(piece)
    return True


async def _endless_body(
    fault: ProxyFault,
    head: bytes,
    body: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    p: _Progress,
) -> bool:
    new_head = _reframe(head, b"Transfer-Encoding: chunked")
    first = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    writer.write(new_head + first)
    p.sent = len(new_head) + len(first)
    piece = b"%x\r\n%s\r\n" % (_CHUNK, b" " * _CHUNK)
    loop = asyncio.get_running_loop()
    until = loop.time() + _ENDLESS_LIMIT
    while loop.time() < until:
        writer.write(piece)
        await writer.drain()
        p.sent += len(piece)
    return False


# How the answer is sent under each fault that reaches the server; whether the client connection stays open after.
_ANSWERS = {
    "pass": _answer_as_is,
    "latency": _answer_as_is,
    "reset_after": _reset_after,
    "silence_after": _silence_after,
    "garbage": _garbage,
    "head_cut": _head_cut,
    "body_cut": _body_cut,
    "drip": _drip,
    "huge_body": _huge_body,
    "endless_body": _endless_body,
}


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """
    One HTTP/1.1 message (head, Content-Length body) off ``reader``; None at a clean end of the stream.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    found = _CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(found.group(1))) if found else b""
    return head, body


async def _finish_late(reading: asyncio.Future[tuple[bytes, bytes] | None], upstream: asyncio.StreamWriter) -> None:
    """
    Let the server finish a request the gateway gave up on (its answer is read and dropped), then hang up.
    """
    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        await reading
    upstream.close()


def _reframe(head: bytes, framing: bytes) -> bytes:
    """
    ``head`` with its body framing headers replaced by ``framing``.
    """
    bare = _FRAMING.sub(b"", head[: -len(b"\r\n\r\n")])
    return bare + b"\r\n" + framing + b"\r\n\r\n"


def _reset(writer: asyncio.StreamWriter) -> None:
    """
    Close with a TCP reset (SO_LINGER 0) rather than a clean FIN.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """
    Say nothing until the client gives up and closes.
    """
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(_CHUNK):
            pass
