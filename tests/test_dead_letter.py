"""
The dead-letter file: what is written, in which format, and when it is on disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import stat
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from rehook_sdk import ConfigurationError, Reason, RetryPolicy, Stats
from rehook_sdk._durable.deadletter import MAX_BACKLOG
from rehook_sdk.testing import FakeRehook, FaultProxy

from .helpers import wait_until


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_failed_calls_are_written_on_aclose(fake: FakeRehook, tmp_path: Path) -> None:
    """Rejected, exhausted and queue_full calls are written; delivered and rule-dropped ones are not."""
    path = tmp_path / "dead.jsonl"
    fake.fail_next(1, status=400)
    async with fake.client(dead_letter=path, retry=RetryPolicy(max_attempts=2, time_scale=0)) as client:
        rejected = await client.track("purchase", {"price": 9.5}, user_id="u1", context={"ip": "1.2.3.4"})
        fake.fail_next(2, status=503)
        exhausted = await client.identify("u2", {"plan": "pro"}, message_id="m-2")
        await client.track("e")  # missing_user_id: not written
        await client.track("e", user_id="u3")  # delivered: not written

    lines = read_lines(path)
    assert [line["outcome"]["reason"] for line in lines] == ["rejected", "retries_exhausted"]
    first, second = lines
    assert first["v"] == 1
    assert first["call"] == {
        "type": "track",
        "userId": "u1",
        "event": "purchase",
        "properties": {"price": 9.5},
        "context": {"ip": "1.2.3.4"},
        "messageId": rejected.message_id,
    }
    assert first["outcome"]["status"] == "failed"
    assert first["outcome"]["http_status"] == 400
    assert "SCRIPTED_FAULT" in first["outcome"]["response_body"]
    assert first["outcome"]["attempts"] == 1
    assert dt.datetime.fromisoformat(first["outcome"]["time"]).tzinfo is not None
    assert second["call"] == {"type": "identify", "userId": "u2", "traits": {"plan": "pro"}, "messageId": "m-2"}
    assert second["outcome"]["message_id"] == exhausted.message_id == "m-2"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_queue_full_and_client_closed_are_written(fake: FakeRehook, tmp_path: Path) -> None:
    """Calls dropped for lack of room or time can be replayed, so they are written too."""
    path = tmp_path / "dead.jsonl"
    async with fake.client(dead_letter=path, max_queue_size=1, concurrency=1) as client:
        handles = [client.track("e", {"n": i}, user_id="u1") for i in range(3)]
    late = client.track("late", user_id="u1")

    assert [h.outcome.reason if h.outcome else None for h in handles] == [None, Reason.QUEUE_FULL, Reason.QUEUE_FULL]
    assert late.outcome is not None
    # The late call came after aclose() closed the file: it is logged, and its outcome says client_closed.
    assert [line["outcome"]["reason"] for line in read_lines(path)] == ["queue_full", "queue_full"]


async def test_shutdown_timeout_is_written(fake: FakeRehook, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A call still waiting at aclose()'s deadline is in the file once aclose() returns; or, when the deadline came
    before the writer finished (a busy machine), aclose() says so and the writer's thread writes it right after."""
    path = tmp_path / "dead.jsonl"
    fake.hang_next(1)
    client = fake.client(dead_letter=path, concurrency=1)
    _ = client.track("slow", user_id="u1")
    _ = client.track("queued", user_id="u2")
    await client.aclose(timeout=0.1)

    if "dead-letter lines still being written" in caplog.text:
        await wait_until(lambda: path.exists() and path.read_text().count("\n") == 2, timeout=30)
    lines = read_lines(path)
    assert [(line["call"]["event"], line["outcome"]["reason"]) for line in lines] == [
        ("slow", "shutdown_timeout"),
        ("queued", "shutdown_timeout"),
    ]
    assert lines[0]["outcome"]["maybe_delivered"] is True


async def test_unencodable_values_are_kept_as_repr(fake: FakeRehook, tmp_path: Path) -> None:
    """A value JSON cannot carry does not lose the line: it is written as repr and the line says so."""
    path = tmp_path / "dead.jsonl"
    async with fake.client(dead_letter=path, max_queue_size=1, concurrency=1) as client:
        _ = client.track("e", user_id="u1")
        _ = client.track("e", {"x": math.nan, "o": object()}, user_id="u1")  # queue_full

    [line] = read_lines(path)
    assert line["unencodable"].startswith("record.call.properties.x")
    assert line["call"]["properties"]["o"].startswith("<object object")


async def test_appends_to_an_existing_file(fake: FakeRehook, tmp_path: Path) -> None:
    """The file is appended to, never truncated."""
    path = tmp_path / "dead.jsonl"
    path.write_text('{"v": 1, "earlier": true}\n')
    fake.fail_next(1, status=422)
    async with fake.client(dead_letter=path) as client:
        await client.track("e", user_id="u1")

    assert [line.get("earlier") for line in read_lines(path)] == [True, None]


def test_unwritable_path_fails_at_construction(tmp_path: Path) -> None:
    """A dead-letter path that cannot be opened raises ConfigurationError when the client is made."""
    with pytest.raises(ConfigurationError, match="cannot open the dead-letter file"):
        FakeRehook().client(base_url="http://127.0.0.1:1", dead_letter=tmp_path / "missing-dir" / "dead.jsonl")


async def test_a_writer_slower_than_an_outage_holds_at_most_its_backlog_and_counts_the_rest(
    fake: FakeRehook, mute: FaultProxy, tmp_path: Path
) -> None:
    """The dead-letter file is a pipe nobody reads, so the writer blocks after 64 KB, as a disk far slower than the
    calls ending: 50,000 calls dropped queue_full while Rehook is silent. The writer holds at most its backlog
    (memory bounded), the rest are counted in stats().dead_letter_lost, and once the pipe is read every line given
    is either read from it or counted lost, none twice."""
    fifo = tmp_path / "dead-letter.jsonl"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, never read until the end: writes block
    calls = 50_000
    client = fake.client(base_url=mute.url, dead_letter=fifo, max_queue_size=10, concurrency=1, request_timeout=60)
    await client.start()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(calls):
            _ = client.track("viewed", {"i": i, "padding": "x" * 200}, user_id=f"u{i}")
            if i % 1_000 == 0:
                await asyncio.sleep(0)  # let the loop end the calls (their outcomes queue the lines)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    lines: list[bytes] = []

    def drain() -> None:
        os.set_blocking(reader, True)
        chunks = []
        while chunk := os.read(reader, 1 << 16):
            chunks.append(chunk)
        lines.extend(b"".join(chunks).splitlines())

    try:
        stats = client.stats()
        check_bounded(stats, calls, grown)
    finally:  # whatever happened, the writer is unblocked and the client closed
        draining = asyncio.create_task(asyncio.to_thread(drain))
        await client.aclose(timeout=5)
        await draining
        os.close(reader)
    final = client.stats()
    given = final.dropped[Reason.QUEUE_FULL] + final.failed_total  # each one line: written or lost
    assert len(lines) + final.dead_letter_lost == given
    assert len({json.loads(line)["call"]["properties"]["i"] for line in lines}) == len(lines)


def check_bounded(stats: Stats, calls: int, grown: int) -> None:
    dropped = stats.dropped[Reason.QUEUE_FULL]
    assert dropped >= calls - 20
    # At most MAX_BACKLOG lines held, the batch the writer holds while it is blocked (256 lines), and what the pipe
    # took (64 KB of lines of more than 200 bytes): the rest lost.
    assert stats.dead_letter_lost >= dropped - MAX_BACKLOG - 256 - 64 * 1024 // 200
    assert grown < 30 * 1024 * 1024, f"{grown / 2**20:.1f} MiB held"
