"""
Kept-alive connections are reused only while that is safe: not after the peer closed them (checked just before the
write, and a request whose connection closed before it was written goes out on a new one), not past a server's
``Keep-Alive`` header, and not past the idle age at which the peer was seen to close connections.

The server here is a blocking HTTP/1.1 server in a thread of its own, so that it can close a connection while the
client's event loop is held and has not seen the close yet: the race a proxy's idle timeout makes.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from rehook_sdk import Delivery, RehookClient, RetryPolicy
from rehook_sdk._transports import KeepAlive, parse_keep_alive
from rehook_sdk._transports.keepalive import CHECK_AFTER

_OK = b'{"status": "ok"}'


class ThreadServer:
    """
    Answers 200 to every request on kept-alive connections, with ``headers`` added; records each request's
    Idempotency-Key and each connection; `close_idle` sends a FIN on every connection waiting for a request.
    """

    def __init__(self, headers: bytes = b"") -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
            len(_OK),
            headers,
            _OK,
        )
        self._lock = threading.Lock()
        self._idle: dict[socket.socket, int] = {}  # connection -> the client's port
        self._open: list[socket.socket] = []
        self.keys: list[str] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, address = self._listener.accept()
                with self._lock:
                    self.connections += 1
                    self._open.append(connection)
                threading.Thread(target=self._serve, args=(connection, address[1]), daemon=True).start()

    def _serve(self, connection: socket.socket, client_port: int) -> None:
        buffered = b""
        with contextlib.suppress(OSError), connection:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                with self._lock:
                    self._idle.pop(connection, None)
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                fields = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                }
                length = int(fields.get(b"content-length", b"0"))
                while len(buffered) < length:
                    buffered += connection.recv(65536)
                buffered = buffered[length:]
                self.keys.append(fields.get(b"idempotency-key", b"").decode())
                with self._lock:  # idle from the answer on: the client may send its next request at once
                    self._idle[connection] = client_port
                connection.sendall(self._answer)

    def close_idle(self) -> list[int]:
        """
        Close every idle connection with a FIN; the client ports they were connected to.
        """
        with self._lock:
            idle = list(self._idle.items())
        for connection, _ in idle:
            connection.shutdown(socket.SHUT_RDWR)
        return [port for _, port in idle]

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[ThreadServer]:
    running = ThreadServer()
    yield running
    running.close()


def at_most_once_client(url: str, transport: Literal["fast", "aiohttp"] = "fast") -> RehookClient:
    return RehookClient(
        "key",
        "secret",
        base_url=url,
        transport=transport,
        delivery=Delivery.AT_MOST_ONCE,
        retry=RetryPolicy(max_attempts=1, time_scale=0),
    )


def wait_for_close_wait(port: int, limit: float = 5.0) -> None:
    """
    Block (the event loop too, on purpose) until the kernel has the peer's FIN for the client socket on ``port``:
    the socket is in CLOSE_WAIT, while the loop has not yet read the EOF.
    """
    until = time.monotonic() + limit
    while time.monotonic() < until:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "08":  # 08: CLOSE_WAIT
                return
        time.sleep(0.001)
    raise AssertionError(f"the client socket on port {port} never saw the FIN")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads socket states from /proc/net/tcp")
@pytest.mark.parametrize("transport", ["fast", "aiohttp"])
async def test_a_connection_the_peer_closed_unseen_is_not_written_to(
    server: ThreadServer, transport: Literal["fast", "aiohttp"]
) -> None:
    """The server closes an idle kept-alive connection while the client's loop is busy and has not read the EOF: the
    next call, at most once, goes out on a new connection and is delivered, not lost as maybe delivered."""
    async with at_most_once_client(server.url, transport) as client:
        first = await client.track("e", user_id="u1")
        (port,) = server.close_idle()
        wait_for_close_wait(port)  # the loop is held here: it has not seen the close
        # Connections idle less than CHECK_AFTER (5 ms) are reused unchecked (no server closes one that soon); on a
        # fast machine the close above is seen sooner than that, so the idle time is made long enough here.
        time.sleep(CHECK_AFTER)  # noqa: ASYNC251 - held on purpose: a turn of the loop would read the close
        second = await client.track("e", user_id="u2")
    assert (first.delivered, second.delivered, second.attempts) == (True, True, 1)
    assert server.keys == [first.message_id, second.message_id]
    assert server.connections == 2


@pytest.mark.parametrize(
    ("headers", "connections"),
    [(b"", 1), (b"Keep-Alive: timeout=5, max=100\r\n", 1), (b"Keep-Alive: timeout=5, max=0\r\n", 3),
     (b"Keep-Alive: timeout=0\r\n", 3)],
)  # fmt: skip
async def test_the_servers_keep_alive_header_is_honoured(headers: bytes, connections: int) -> None:
    """Three calls one after another share one connection, unless the server's Keep-Alive says it ends: max=0 (no
    more requests), timeout=0 (no idle time at all)."""
    server = ThreadServer(headers)
    try:
        async with at_most_once_client(server.url) as client:
            for i in range(3):
                assert (await client.track("e", user_id=f"u{i}")).delivered
    finally:
        server.close()
    assert (len(server.keys), server.connections) == (3, connections)


def test_the_idle_limit_is_learned_from_the_peers_closes() -> None:
    """Closes after 0.2 s idle make the limit 0.15 s; an earlier close (a reload) does not lower it; closes within
    10 ms teach nothing; what was learned is forgotten after 5 minutes."""
    keep_alive = KeepAlive(4.0)
    assert keep_alive.limit(0.0) == 4.0
    keep_alive.peer_closed(10.0, 0.005)
    assert keep_alive.limit(10.0) == 4.0
    keep_alive.peer_closed(10.0, 0.2)
    keep_alive.peer_closed(11.0, 0.05)
    assert keep_alive.limit(11.0) == pytest.approx(0.15)
    assert keep_alive.limit(11.0, announced=0.1) == pytest.approx(0.075)
    assert keep_alive.limit(311.0) == pytest.approx(0.0375)  # the first close is forgotten, the second is not
    assert keep_alive.limit(312.0) == 4.0


def test_closes_found_later_bound_the_limit_from_above() -> None:
    """A transport that finds closes only when it looks (aiohttp's) learns that the peer's timeout is at most the
    shortest idle age a close was found at; an exact close still counts by the longest."""
    keep_alive = KeepAlive(4.0)
    keep_alive.peer_closed_within(10.0, 0.2)
    keep_alive.peer_closed_within(11.0, 10.0)  # found only after a long pause: says little
    assert keep_alive.limit(11.0) == pytest.approx(0.15)
    keep_alive.peer_closed(12.0, 0.1)
    assert keep_alive.limit(12.0) == pytest.approx(0.075)
    assert keep_alive.limit(313.0) == 4.0


def test_a_servers_announced_timeout_leaves_a_margin() -> None:
    """Keep-Alive: timeout=N allows N - 1 s of idle (a quarter less below 4 s), never more than the default."""
    keep_alive = KeepAlive(4.0)
    assert keep_alive.limit(0.0, announced=2.0) == 1.5
    assert keep_alive.limit(0.0, announced=4.0) == 3.0
    assert keep_alive.limit(0.0, announced=75.0) == 4.0


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(b"timeout=5, max=100", (5.0, 100)), (b"max=0", (None, 0)), (b"Timeout = 2.5", (2.5, None)),
     (b"timeout=nan, max=x", (None, None)), (b"timeout=-1", (None, None)), (b"", (None, None)),
     (b"garbage,,=,timeout", (None, None))],
)  # fmt: skip
def test_keep_alive_headers_are_parsed_warily(value: bytes, parsed: tuple[float | None, int | None]) -> None:
    assert parse_keep_alive(value) == parsed
