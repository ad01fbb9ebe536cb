from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import attrs
from yarl import URL

from rehook_sdk import Delivery, EventHandle, Outcome, OutcomeStatus, Reason, RehookClient
from rehook_sdk.testing import FakeRehook

N = 300


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """
    Poll ``condition`` until it holds; fail the test after ``timeout`` seconds.

    For state that has no event to wait on (what the fake received, a counter).
    """
    async with asyncio.timeout(timeout):
        # Polling is right here: what the fake received or a counter has no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


def start_tracking_threads(
    track: Callable[..., EventHandle], threads: int, calls: int
) -> tuple[list[threading.Thread], list[EventHandle]]:
    """
    Start ``threads`` plain threads that each make ``calls`` track() calls; return them and (once they are
    joined) every handle. The caller joins them: blocking in sync tests, through ``asyncio.to_thread`` in async ones.
    """
    handles: list[EventHandle] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(calls):
            handle = track("e", {"i": i}, user_id=f"t{n}")
            with lock:
                handles.append(handle)

    started = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in started:
        thread.start()
    return started, handles


@attrs.define
class Run:
    """
    The calls of one scenario and how often each callback ran.
    """

    handles: list[EventHandle] = attrs.field(factory=list)
    callbacks: collections.Counter[int] = attrs.field(factory=collections.Counter)

    def send(self, client: RehookClient, n: int = N, event: str = "e", **kw: Any) -> None:
        start = len(self.handles)
        for i in range(start, start + n):
            self.handles.append(client.track(event, {"i": i}, None, self._callback(i), user_id=f"u{i}", **kw))

    def _callback(self, i: int) -> Any:
        def called(_: Outcome) -> None:
            self.callbacks[i] += 1

        return called

    @property
    def outcomes(self) -> list[Outcome]:
        return [h.outcome for h in self.handles if h.outcome is not None]

    def count(self, status: OutcomeStatus, reason: Reason | None = None) -> int:
        return sum(1 for o in self.outcomes if o.status is status and (reason is None or o.reason is reason))


def check_promises(run: Run, client: RehookClient, fake: FakeRehook | None, delivery: Delivery) -> None:
    """
    The invariants every scenario must keep.
    """
    stats = client.stats()
    assert (stats.in_queue, stats.in_flight) == (0, 0)
    assert stats.accepted == len(run.handles) == stats.delivered + stats.dropped_total + stats.failed_total
    assert all(h.done() for h in run.handles)
    assert run.callbacks == collections.Counter(range(len(run.handles)))
    assert stats.delivered == run.count(OutcomeStatus.DELIVERED)
    if fake is None:
        return
    delivered = {o.message_id for o in run.outcomes if o.delivered}
    maybe = {o.message_id for o in run.outcomes if o.maybe_delivered}
    received = fake.delivered_keys
    assert delivered <= received
    assert received - delivered <= maybe
    if delivery is Delivery.AT_MOST_ONCE:
        assert fake.duplicates == 0
    else:
        assert fake.duplicates <= stats.retried


def run_script(code: str, fake: FakeRehook | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """
    Run ``code`` as a script in a new interpreter with Python's default warning filters; with ``fake``, its URL and
    credentials are in the environment (``REHOOK_BASE_URL``, ``REHOOK_API_KEY``, ``REHOOK_API_SECRET``).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    if fake is not None:
        env.update(REHOOK_API_KEY=fake.api_key, REHOOK_API_SECRET=fake.api_secret, REHOOK_BASE_URL=fake.url)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


class ForwardProxy:
    """
    A forwarding HTTP proxy on loopback, as egress proxies work for plain http: the client sends each request in
    absolute form (``POST http://host:port/path``) with its Proxy-Authorization; the proxy checks it (407 when
    ``credentials`` are set and do not match), forwards the request to the origin, relays the answer and closes.
    It records what it forwarded. ``CONNECT host:port`` (https) opens a tunnel to the origin.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._credentials = credentials
        self.forwarded: list[tuple[str, str, str | None]] = []  # method, absolute target, Proxy-Authorization
        self.refused = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")[:-2]
            method, target, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            auth = headers.get("proxy-authorization")
            if self._credentials is not None:
                expected = "Basic " + base64.b64encode(":".join(self._credentials).encode()).decode()
                if auth != expected:
                    self.refused += 1
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                    return
            self.forwarded.append((method, target, auth))
            if method == "CONNECT":  # https: a tunnel to host:port, the TLS inside it is the client's and the origin's
                host, _, port = target.rpartition(":")
                upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
                return
            origin = URL(target)
            upstream_reader, upstream_writer = await asyncio.open_connection(origin.host, origin.port)
            kept = [
                line
                for line in header_lines
                if line.partition(":")[0].strip().lower() not in ("proxy-authorization", "connection")
            ]
            upstream_writer.write(
                f"{method} {origin.raw_path_qs} HTTP/1.1\r\n".encode("latin-1")
                + "".join(f"{line}\r\n" for line in kept).encode("latin-1")
                + b"Connection: close\r\n\r\n"
                + body
            )
            await upstream_writer.drain()
            writer.write(await upstream_reader.read())  # the whole answer: the origin closes after it
            upstream_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # One direction of a tunnel, until its end closes.
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()


class ScriptedServer:
    """
    A TCP server on loopback whose every connection runs ``play(reader, writer)`` (raw bytes, for answers no HTTP
    server would write); a connection the client closes ends its play quietly, and leaving the block closes all.
    """

    def __init__(self, play: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> None:
        self.play = play
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Any:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            await self.play(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client closed the connection
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request: its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    return head + await reader.readexactly(length)


def cli_env(fake: FakeRehook) -> dict[str, str]:
    """The environment a ``rehook`` subprocess runs in as ``fake``'s application: its credentials in the variables
    (as the docs recommend: a secret on the command line is readable by every local user)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_")}
    return {**env, "REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret}
