"""
The two transports (#14): which one a client uses, and the fast one's HTTP/1.1 against a raw server on loopback that
answers exactly the bytes each test scripts (keep-alive, Connection: close, chunked, interim answers, bodies that
end with the connection, bytes nobody asked for). The fault suites run against both (tests/test_faults.py,
tests/test_network_faults.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rehook_sdk import ConfigurationError, Reason, RehookClient, RetryPolicy
from rehook_sdk._client import delivery_engine
from rehook_sdk._transports import AiohttpTransport, FastTransport
from rehook_sdk.testing import FakeRehook

from .helpers import ScriptedServer, read_request

FAST = RetryPolicy(max_attempts=3, time_scale=0)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


class RawServer(ScriptedServer):
    """
    Reads HTTP/1.1 requests (head + Content-Length body) and answers each with ``answer(n)``'s bytes (n counts
    requests from 0); ``None`` closes the connection without answering.
    """

    def __init__(self, answer: Callable[[int], bytes | None]) -> None:
        super().__init__(self._answer_each)
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def _answer_each(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            self.requests.append(await read_request(reader))
            answer = self.answer(len(self.requests) - 1)
            if answer is None:
                return
            writer.write(answer)
            await writer.drain()
            if b"connection: close" in answer.lower() or answer.startswith(b"HTTP/1.0"):
                return


@pytest.fixture
async def ok_server() -> AsyncIterator[RawServer]:
    async with RawServer(lambda _: OK) as server:
        yield server


def client_for(url: str, **settings: Any) -> RehookClient:
    settings.setdefault("retry", FAST)
    return RehookClient("k", "s", base_url=url, **settings)


# -- which transport --------------------------------------------------------------------------------------


async def test_the_fast_transport_serves_when_it_can(fake: FakeRehook, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: fast without proxy or session; aiohttp with either, or when asked (setting or REHOOK_TRANSPORT)."""
    assert isinstance(delivery_engine(fake.client()).transport, FastTransport)
    assert isinstance(delivery_engine(fake.client(transport="fast")).transport, FastTransport)
    assert isinstance(delivery_engine(fake.client(transport="aiohttp")).transport, AiohttpTransport)
    assert isinstance(delivery_engine(fake.client(proxy="http://127.0.0.1:3128")).transport, AiohttpTransport)
    monkeypatch.setenv("REHOOK_TRANSPORT", "aiohttp")
    assert isinstance(delivery_engine(fake.client()).transport, AiohttpTransport)
    assert isinstance(delivery_engine(fake.client(transport="auto")).transport, FastTransport)  # the setting wins


def test_bad_transport_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="transport must be one of auto, fast, aiohttp"):
        RehookClient("k", "s", transport="httpx")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cannot send through a proxy"):
        RehookClient("k", "s", transport="fast", proxy="http://proxy:3128")
    monkeypatch.setenv("REHOOK_TRANSPORT", "quick")
    with pytest.raises(ConfigurationError, match="REHOOK_TRANSPORT must be one of"):
        RehookClient("k", "s")


# -- the fast transport's HTTP/1.1 ------------------------------------------------------------------------


async def test_one_connection_carries_every_request(ok_server: RawServer) -> None:
    """Keep-alive: 50 calls on one sender, one connection; the request is what aiohttp would send."""
    async with client_for(ok_server.url, concurrency=1, headers={"X-Team": "growth"}) as client:
        outcomes = [await client.track("e", {"i": i}, user_id="u1", message_id=f"m-{i}") for i in range(50)]
    assert all(o.delivered for o in outcomes)
    assert ok_server.connections == 1
    head, _, body = ok_server.requests[7].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /events/invoke HTTP/1.1"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    port = ok_server.url.rsplit(":", 1)[1]
    assert headers[b"Host"] == f"127.0.0.1:{port}".encode()
    assert headers[b"Authorization"] == b"Basic azpz"  # k:s
    assert headers[b"Content-Type"] == b"application/json"
    assert headers[b"Idempotency-Key"] == b"m-7"
    assert headers[b"X-Team"] == b"growth"
    assert headers[b"User-Agent"].startswith(b"rehook-sdk-python/")
    assert int(headers[b"Content-Length"]) == len(body)
    assert body == b'{"event_name":"e","source_id":"u1","metadata":{"i":7}}'


async def test_a_base_url_path_prefixes_every_request(ok_server: RawServer) -> None:
    async with client_for(ok_server.url + "/api/v1/") as client:
        assert (await client.identify("u1")).delivered
    assert ok_server.requests[0].startswith(b"POST /api/v1/customers HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", 200, "{}"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 200, "abcde"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 201, "ok"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, "until the end"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, ""),
    ],
    ids=["connection-close", "chunked", "interim-100", "body-until-close", "no-content"],
)
async def test_answers_of_every_framing_are_read(answer: bytes, status: int, body: str) -> None:
    """Each framing gives its status and body, and a second request still goes through (reconnecting if needed)."""

    async with RawServer(lambda _: answer) as server, client_for(server.url, concurrency=1) as client:
        first = await client.track("e", user_id="u1")
        second = await client.track("e", user_id="u1")
    assert (first.http_status, first.response_body) == (status, body)
    assert second.http_status == status


async def test_a_body_that_ends_with_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """No length, no chunks: the body runs until the server closes; the status is the answer, the connection goes."""

    def until_close(n: int) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ntail"

    async with RawServer(until_close) as server, client_for(server.url, concurrency=1) as client:
        outcomes = [await client.track("e", user_id="u1") for _ in range(3)]
    assert [(o.http_status, o.response_body, o.attempts) for o in outcomes] == [(200, "tail", 1)] * 3
    assert server.connections == 3


async def test_a_second_answer_or_stray_bytes_retire_the_connection() -> None:
    """Bytes no request asked for (a second answer in the same packet) end the connection: the next call opens a
    new one and is answered by its own answer, never by the stray one."""

    def doubled(n: int) -> bytes:
        stray = b"HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n\r\n"
        return OK + stray if n == 0 else OK

    async with RawServer(doubled) as server, client_for(server.url, concurrency=1) as client:
        first = await client.track("e", user_id="u1")
        second = await client.track("e", user_id="u1")
    assert (first.http_status, second.http_status) == (200, 200)
    assert server.connections == 2


async def test_a_server_that_closes_without_answering_is_maybe_delivered() -> None:
    server = RawServer(lambda n: None if n == 0 else OK)
    async with server, client_for(server.url, delivery="at_most_once") as client:
        lost = await client.track("e", user_id="u1")
        then = await client.track("e", user_id="u1")
    assert lost.reason is Reason.RETRIES_EXHAUSTED
    assert lost.maybe_delivered
    assert "connection lost" in lost.message
    assert then.delivered


async def test_garbage_instead_of_an_answer_is_a_lost_connection() -> None:
    server = RawServer(lambda n: b"SMTP ready\r\n\r\n" if n == 0 else OK)
    async with server, client_for(server.url) as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.delivered
    assert outcome.attempts == 2  # the garbled answer was retried (at least once, the default)


async def test_refused_and_unresolvable_hosts_are_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
    async with client_for(f"http://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=1)) as client:
        outcome = await client.track("e", user_id="u1")
    assert not outcome.maybe_delivered
    assert "cannot connect" in outcome.message
    async with client_for("http://nowhere.localhost:9", retry=RetryPolicy(max_attempts=1)) as client:
        outcome = await client.track("e", user_id="u1")
    assert not outcome.maybe_delivered
    assert outcome.reason is Reason.RETRIES_EXHAUSTED


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = await asyncio.start_server(lambda r, w: None, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server.close()
    await server.wait_closed()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(OK)
        await writer.drain()
        writer.close()

    seen: list[bytes] = []
    six = await asyncio.start_server(serve, "::1", 0)
    port = six.sockets[0].getsockname()[1]
    try:
        async with client_for(f"http://[::1]:{port}") as client:
            outcome = await client.track("e", user_id="u1")
    finally:
        six.close()
        await six.wait_closed()
    assert outcome.delivered
    assert f"Host: [::1]:{port}\r\n".encode() in seen[0]


def test_the_fast_transport_on_uvloop() -> None:
    """uvloop (uvicorn's loop) gives transports that do not derive from asyncio's: the fast path works on it."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[bool, int, str]:
        async with FakeRehook() as fake, fake.client(retry=FAST) as client:
            assert isinstance(delivery_engine(client).transport, FastTransport)
            outcomes = [await client.track("e", {"i": i}, user_id="u1") for i in range(20)]
            lost = [await client.identify("u2")]
            return (
                all(o.delivered for o in outcomes + lost),
                len(fake.requests),
                type(asyncio.get_running_loop()).__module__,
            )

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        delivered, requests, loop_module = runner.run(main())
    assert loop_module.startswith("uvloop")
    assert (delivered, requests) == (True, 21)
