"""
Large numbers of calls that end without reaching Rehook: bursts of drops, 401 storms, a backlog at the shutdown
deadline. Each call still gets exactly one outcome; the log stays readable; the loop is given back regularly.

Speed is measured by benchmarks/delivery.py, not here: these tests check structure (how many calls one loop
iteration ends, how many log lines a burst makes), which noise cannot flip.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
from pathlib import Path

import pytest

from rehook_sdk import Outcome, OutcomeStatus, Reason, RehookClient
from rehook_sdk._delivery.sender import QUICK_CALLS_PER_ITERATION
from rehook_sdk.testing import FakeRehook, LoopProbe

from .helpers import wait_until


def sdk_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rehook_sdk" and r.levelno >= level]


async def test_a_burst_of_drops_logs_once_then_a_count(fake: FakeRehook, caplog: pytest.LogCaptureFixture) -> None:
    """5,000 queue_full drops: every one reaches on_error and the counters, the log says it in two lines."""
    caplog.set_level(logging.WARNING, logger="rehook_sdk")
    seen: list[Outcome] = []
    fake.hang_next(1)
    client = fake.client(max_queue_size=1, concurrency=1, on_error=seen.append)
    await client.start()
    _ = client.track("held", user_id="u0")  # in flight, hanging
    await wait_until(lambda: client.stats().in_flight == 1)
    _ = client.track("queued", user_id="u1")  # fills the queue
    for i in range(5_000):
        _ = client.track("e", user_id=f"d{i}")
    await client.aclose(0)
    stats = client.stats()
    assert stats.dropped[Reason.QUEUE_FULL] == 5_000
    assert sum(1 for o in seen if o.reason is Reason.QUEUE_FULL) == 5_000
    lines = [line for line in sdk_lines(caplog) if "queue_full" in line]
    assert len(lines) == 2, lines
    assert lines[0].startswith("dropped track call (userId='d0'): queue_full:")
    assert lines[1] == lines[1].replace("rehook_sdk", "")  # the logger's name is not repeated in the message
    assert "4999 more calls dropped as queue_full" in lines[1]


async def test_every_reason_gets_its_first_line(client: RehookClient, caplog: pytest.LogCaptureFixture) -> None:
    """Aggregation is per reason: a burst of one kind does not hide the first call of another."""
    caplog.set_level(logging.WARNING, logger="rehook_sdk")
    for i in range(50):
        await client.track("e", anonymous_id=f"a{i}")
    await client.track("e")
    await client.track("e", {"x": float("nan")}, user_id="u1")
    lines = sdk_lines(caplog)
    assert [line.split(": ")[1] for line in lines] == ["anonymous_only", "missing_user_id", "invalid_payload"]


async def test_debug_logging_shows_every_call(client: RehookClient, caplog: pytest.LogCaptureFixture) -> None:
    """With DEBUG on the rehook_sdk logger, each call that was not delivered has its own line too."""
    caplog.set_level(logging.DEBUG, logger="rehook_sdk")
    for i in range(20):
        await client.track("e", anonymous_id=f"a{i}")
    debug = [r for r in caplog.records if r.name == "rehook_sdk" and r.levelno == logging.DEBUG]
    assert len(debug) == 20


async def outcomes_per_iteration(client: RehookClient, calls: int, **kwargs: object) -> collections.Counter[int]:
    """
    Queue ``calls`` tracks, then count how many of them end in each loop iteration.
    """
    probe = LoopProbe()
    per_iteration: collections.Counter[int] = collections.Counter()

    def note(_: Outcome) -> None:
        per_iteration[probe.iterations] += 1

    handles = [client.track("e", None, None, note, **kwargs) for _ in range(calls)]  # type: ignore[arg-type]
    with probe:
        await asyncio.gather(*handles)
    return per_iteration


async def test_rule_drops_give_the_loop_back(fake: FakeRehook) -> None:
    """3,000 calls dropped by a rule (no user id) end over many loop iterations, a bounded number in each."""
    async with fake.client() as client:
        counts = await outcomes_per_iteration(client, 3_000, anonymous_id="a")
    assert sum(counts.values()) == 3_000
    assert max(counts.values()) <= QUICK_CALLS_PER_ITERATION + 64  # the budget, and one call per sender at most
    assert len(counts) >= 3_000 // (QUICK_CALLS_PER_ITERATION + 64)


async def test_a_401_storm_gives_the_loop_back(fake: FakeRehook) -> None:
    """After a 401, 3,000 queued calls fail without a request, a bounded number per loop iteration."""
    async with RehookClient(fake.api_key, "wrong", base_url=fake.url) as client:
        first = await client.track("e", user_id="u0")
        assert first.http_status == 401
        counts = await outcomes_per_iteration(client, 3_000, user_id="u1")
        assert client.stats().failed[Reason.REJECTED] == 3_001
    assert max(counts.values()) <= QUICK_CALLS_PER_ITERATION + 64
    assert len([r for r in fake.requests if r.status == 401]) == 1


async def test_the_shutdown_deadline_holds_with_a_backlog(fake: FakeRehook, tmp_path: Path) -> None:
    """20,000 queued behind a silent Rehook: aclose(0.3) ends each once, keeps kept handles, and every line lands."""
    path = tmp_path / "dead.jsonl"
    fake.hang_next(64)
    client = fake.client(dead_letter=path, max_queue_size=20_000)
    await client.start()
    for i in range(19_990):
        _ = client.track("e", user_id=f"u{i}")
    kept = [client.track("kept", user_id=f"k{i}") for i in range(10)]
    await wait_until(lambda: client.stats().in_flight == 64)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.aclose(0.3)
    took = loop.time() - started
    assert took < 0.3 + 1.0  # the deadline, with room for a loaded machine; the benchmark measures it
    stats = client.stats()
    assert stats.failed == {Reason.SHUTDOWN_TIMEOUT: 20_000}
    assert all(h.outcome is not None and h.outcome.reason is Reason.SHUTDOWN_TIMEOUT for h in kept)
    # The writer thread goes on after aclose() if it had to return first; every line arrives, once.
    await wait_until(lambda: path.exists() and path.read_bytes().count(b"\n") == 20_000, timeout=30)
    users = collections.Counter(json.loads(line)["call"]["userId"] for line in path.read_bytes().splitlines())
    assert len(users) == 20_000
    assert set(users.values()) == {1}


async def test_aclose_says_when_dead_letter_lines_are_still_being_written(
    fake: FakeRehook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the deadline comes before the writer is done, aclose() returns and says how many lines are pending."""
    caplog.set_level(logging.WARNING, logger="rehook_sdk")
    path = tmp_path / "dead.jsonl"
    client = fake.client(dead_letter=path, max_queue_size=50_000)
    for i in range(50_000):  # never started: all of them are ended at the deadline, at once
        _ = client.track("e", user_id=f"u{i}")
    await client.aclose(0.001)
    written = path.read_bytes().count(b"\n") if path.exists() else 0
    warned = [line for line in sdk_lines(caplog) if "dead-letter lines still being written" in line]
    if written < 50_000:  # the writer was not done at the return (almost always, at this size): aclose() says so
        [line] = warned
        found = re.match(r"aclose\(\) returned at its deadline with (\d+) dead-letter lines", line)
        assert found is not None
        assert int(found.group(1)) > 0
    await wait_until(lambda: path.read_bytes().count(b"\n") == 50_000, timeout=30)
    assert client.stats().failed_total == 50_000
    assert all(
        OutcomeStatus(json.loads(line)["outcome"]["status"]) is OutcomeStatus.FAILED
        for line in path.read_bytes().splitlines()[:100]
    )
