"""
A tiny HTTP/1.1 server for the benchmark: answers every request ``200 {}`` after a fixed latency, keep-alive.

Raw asyncio, no framework, so that it costs as little CPU as possible; run it in its own process (pinned to its own
core) so that it does not steal the client's CPU:

    python benchmarks/server.py --port 0 --latency-ms 20 --cpu 1 [--tls server.pem server.key] [--limit 120]
        [--rate 800 [--burst 20]]

It prints ``listening on http://127.0.0.1:PORT`` once ready. ``GET /_count`` answers the number of POSTs so far.
Stop it with SIGTERM; pause it with SIGSTOP (requests then wait in flight) and resume with SIGCONT.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import selectors
import signal
import ssl

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Counter:
    posts = 0
    in_flight = 0
    limit: int | None = None  # --limit: more POSTs in flight than this are answered 429 at once
    rate: float | None = None  # --rate: POSTs over this many per second are answered 429 at once
    burst = 0.0  # --burst: how many POSTs above the rate may come at once (nginx limit_req's burst, nodelay)
    allowed_at = 0.0  # the rate limit's theoretical arrival time (GCRA): a POST before it - burst/rate is refused


def over_rate(now: float) -> bool:
    """
    Whether a POST at ``now`` exceeds the rate (the generic cell rate algorithm, as nginx's limit_req with nodelay).
    """
    rate = Counter.rate
    if rate is None:
        return False
    if now < Counter.allowed_at - Counter.burst / rate:
        return True
    Counter.allowed_at = max(Counter.allowed_at, now) + 1 / rate
    return False


TOO_MANY = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class HTTPProtocol(asyncio.Protocol):
    """
    Parses just enough HTTP/1.1: request line, Content-Length, body; one request at a time per connection.
    """

    def __init__(self, latency: float, loop: asyncio.AbstractEventLoop) -> None:
        self.latency = latency
        self.loop = loop
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            self.handle(head.split(" ", 2))

    def handle(self, request_line: list[str]) -> None:
        if request_line[0] == "GET" and request_line[1] == "/_count":
            body = str(Counter.posts).encode()
            self.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        if Counter.limit is not None and Counter.in_flight >= Counter.limit:
            self.write(TOO_MANY)
            return
        if over_rate(self.loop.time()):
            self.write(TOO_MANY)
            return
        Counter.posts += 1
        if self.latency:
            Counter.in_flight += 1
            self.loop.call_later(self.latency, self.answer)
        else:
            self.write(RESPONSE)

    def answer(self) -> None:
        Counter.in_flight -= 1
        self.write(RESPONSE)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(port: int, latency: float, tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HTTPProtocol(latency, loop), "127.0.0.1", port, backlog=1024, ssl=tls)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {'https' if tls else 'http'}://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


class PreciseSelector(selectors.EpollSelector):
    """
    Lets timers fire on time, so that "20 ms" means 20 ms.

    epoll waits whole milliseconds and Python rounds a wait *up*, so a loop with nothing else to do runs a timer up
    to 1 ms late: under the benchmark's load that made each answer ~0.7 ms late, and even a raw-socket client could
    not pass 0.96 of 64 / 0.020. This selector waits the whole milliseconds rounded *down* and polls without
    waiting for the rest: it spins for under 1 ms per timer, on the server's own core.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            timeout = math.floor(timeout * 1e3) / 1e3
        return super().select(timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU core")
    parser.add_argument("--limit", type=int, default=None, help="answer 429 above this many POSTs in flight")
    parser.add_argument("--rate", type=float, default=None, help="answer 429 above this many POSTs per second")
    parser.add_argument("--burst", type=float, default=0.0, help="with --rate: POSTs allowed above it at once")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), default=None, help="serve https with this pair")
    args = parser.parse_args()
    Counter.limit = args.limit
    Counter.rate = args.rate
    Counter.burst = args.burst
    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*args.tls)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    selector = PreciseSelector()  # Linux (epoll), like the benchmark's core pinning
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        runner.run(serve(args.port, args.latency_ms / 1000, tls))


if __name__ == "__main__":
    main()
