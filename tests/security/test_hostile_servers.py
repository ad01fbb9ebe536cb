"""
Hostile servers (#27, the audit's findings 2 and 9), against both transports: a server that answers with an
endless header, thousands of headers, endless interim heads, a trailer flood or endless chunk framing costs the
client bounded memory and ends the call with an outcome that says why (no request timeout is reached: each call
here would otherwise wait for a 60 s timeout, and the test's own 60 s limit would fail it); a 2xx whose chunked body
is malformed is one rule on both transports; credentials a hostile head echoes are never kept.

Memory is measured with tracemalloc over the call (the parser's buffers are Python bytes), against servers that
stream 24 MB: the bound asserted, 8 MB, is far below what an unbounded parser keeps.
"""

from __future__ import annotations

import asyncio
import base64
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from rehook_sdk import Outcome, OutcomeStatus, RehookClient, RetryPolicy

from ..helpers import ScriptedServer, read_request

STREAMED = 24 * 1024 * 1024
PIECE = 1024
MEMORY_BOUND = 8 * 1024 * 1024
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


async def stream(writer: asyncio.StreamWriter, head: bytes, piece: bytes, total: int = STREAMED) -> None:
    """Write ``head``, then ``piece`` over and over until ``total`` bytes or until the client goes away."""
    writer.write(head)
    sent = 0
    while sent < total:
        writer.write(piece)
        sent += len(piece)
        await writer.drain()


async def endless_header_value(writer: asyncio.StreamWriter) -> None:
    await stream(writer, OK_HEAD + b"X-Endless: ", b"a" * PIECE)


async def many_headers(writer: asyncio.StreamWriter) -> None:
    await stream(writer, OK_HEAD, b"".join(b"X-H%04d: v\r\n" % i for i in range(64)))


async def endless_interim_heads(writer: asyncio.StreamWriter) -> None:
    await stream(writer, b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 32)


async def trailer_flood(writer: asyncio.StreamWriter) -> None:
    head = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    await stream(writer, head, b"".join(b"X-T%04d: v\r\n" % i for i in range(64)))


async def endless_trailer_value(writer: asyncio.StreamWriter) -> None:
    await stream(writer, OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: ", b"t" * PIECE)


async def endless_empty_chunk_extensions(writer: asyncio.StreamWriter) -> None:
    await stream(writer, OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n1;", b"e" * PIECE)


async def tiny_chunks(writer: asyncio.StreamWriter) -> None:
    await stream(writer, OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n" * 200)


async def endless_body(writer: asyncio.StreamWriter) -> None:
    await stream(writer, OK_HEAD + b"Content-Length: 999999999999\r\n\r\n", b"{" * PIECE)


async def malformed_chunked_2xx(writer: asyncio.StreamWriter) -> None:
    writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZ-not-a-size\r\n\r\n")
    await writer.drain()


@pytest.fixture
def client_for(both_transports: str) -> Callable[[str], RehookClient]:
    def make(url: str) -> RehookClient:
        return RehookClient("key1", "secret1", base_url=url, retry=RetryPolicy(max_attempts=1), request_timeout=60)

    return make


async def call_through(
    script: Callable[[asyncio.StreamWriter], Any], make: Callable[[str], RehookClient]
) -> tuple[Outcome, int, int]:
    """One call against the script: its outcome, the memory it took at its peak, and the requests the server got."""
    requests = 0

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await read_request(reader)
        requests += 1
        await script(writer)

    async with ScriptedServer(play) as server, make(server.url) as client:
        tracemalloc.start()
        try:
            outcome = await client.track("e", user_id="u1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return outcome, peak, requests


# Past a limit before the status: the connection is closed, and the request may have been acted on. Past the status:
# the status stands, and the rest is not read.
BEFORE_THE_STATUS = [endless_header_value, many_headers, endless_interim_heads]
AFTER_THE_STATUS = [trailer_flood, endless_trailer_value, endless_empty_chunk_extensions, tiny_chunks, endless_body]


@pytest.mark.parametrize("script", BEFORE_THE_STATUS + AFTER_THE_STATUS, ids=lambda f: f.__name__)
async def test_a_hostile_answer_costs_bounded_memory_and_ends_by_the_attempt_rule(
    script: Callable[[asyncio.StreamWriter], Any], client_for: Callable[[str], RehookClient]
) -> None:
    outcome, peak, requests = await call_through(script, client_for)
    assert requests == 1
    assert peak < MEMORY_BOUND, peak
    if script in BEFORE_THE_STATUS:
        assert (outcome.status, outcome.maybe_delivered, outcome.http_status) == (OutcomeStatus.FAILED, True, None)
        assert "broke the SDK's limits" in outcome.message, outcome.message  # not the request timeout
    else:
        assert (outcome.status, outcome.http_status) == (OutcomeStatus.DELIVERED, 200), outcome.message


async def test_a_2xx_with_a_malformed_chunked_body_is_delivered_on_both_transports(
    client_for: Callable[[str], RehookClient],
) -> None:
    """The audit's finding 9: the fast transport said delivered, aiohttp retried (a duplicate). One rule: the status
    line and headers came, so the answer is known, however the body ends (docs/concepts.md's attempt table)."""
    outcome, _, requests = await call_through(malformed_chunked_2xx, client_for)
    assert requests == 1
    assert (outcome.status, outcome.http_status, outcome.attempts) == (OutcomeStatus.DELIVERED, 200, 1)


@pytest.mark.parametrize(
    "after", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"], ids=["closes", "answers-http"]
)
async def test_a_proxys_200_to_connect_is_never_taken_for_rehooks_answer(after: bytes) -> None:
    """The aiohttp transport reads answers' heads a second time; a proxy that opens the tunnel (200) and then closes
    it, or speaks HTTP where TLS should be, must not make the call look answered by Rehook."""

    async def tunnel_then_break(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n" + after)
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(tunnel_then_break, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        async with RehookClient(
            "key1",
            "secret1",
            base_url="https://rehook.invalid",
            proxy=f"http://127.0.0.1:{port}",
            retry=RetryPolicy(max_attempts=1),
        ) as client:
            outcome = await client.track("e", user_id="u1")
    finally:
        proxy.close()
        await proxy.wait_closed()
    assert outcome.status is OutcomeStatus.FAILED, outcome.message
    assert outcome.http_status is None


KEY, SECRET = "key1", "secret1-e4c2"
TOKEN = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()


def echo_head(raw: bytes) -> Callable[[asyncio.StreamWriter], Any]:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return script


ECHOES = {
    "reason-phrase": b"HTTP/1.1 400 Basic %s\r\nContent-Length: 0\r\n\r\n",
    "header": b"HTTP/1.1 400 Bad Request\r\nX-Echo: Basic %s\r\nContent-Length: 0\r\n\r\n",
    "long-header": b"HTTP/1.1 200 OK\r\nX-Echo: %s" + b"a" * 9000 + b"\r\n\r\n",
    "chunk-size-line": b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\n\r\n",
    "not-http": b"%s\r\n\r\n",
}


@pytest.mark.parametrize("where", list(ECHOES))
async def test_credentials_echoed_in_a_hostile_head_are_never_kept(where: str, both_transports: str) -> None:
    """Error messages quote what a server sent (aiohttp's parser quotes up to 100 bytes of a bad line): nothing a
    server echoes of the credentials reaches an outcome or a log line."""
    script = echo_head(ECHOES[where] % TOKEN.encode())

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await script(writer)

    async with (
        ScriptedServer(play) as server,
        RehookClient(KEY, SECRET, base_url=server.url, retry=RetryPolicy(max_attempts=1)) as client,
    ):
        outcome = await client.track("e", user_id="u1")
    for text in (outcome.message, outcome.response_body or "", repr(outcome)):
        for secret in (SECRET, TOKEN, TOKEN.rstrip("=")):
            assert secret not in text, (where, text)
