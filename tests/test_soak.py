"""
Soak: many calls through a fake Rehook (in its own process) failing 10% of requests with 5xx and resetting 1%.

The promises hold at volume, resident memory returns to within 10% of where it started after aclose(), and no task
is left. CI runs a small N; ``REHOOK_SOAK_N=200000 pytest tests/test_soak.py -s`` runs the full soak and prints
its figures.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from rehook_sdk import Outcome, RehookClient, RetryPolicy
from rehook_sdk.testing import DEFAULT_API_KEY, DEFAULT_API_SECRET, key_digest

N = int(os.environ.get("REHOOK_SOAK_N", "3000"))
BATCH = 5_000


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")  # pragma: no cover


@pytest.fixture
async def faulty_fake() -> AsyncIterator[str]:
    """A fake Rehook in another process (so its memory is not ours), 10% 500s, 1% resets; yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk.testing", "--port", "0", "--no-record",
        "--error-rate", "0.10", "--reset-rate", "0.01", "--seed", "5",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    try:
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        await proc.wait()


async def summary(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_fake/summary") as response:
        data: dict[str, int] = await response.json()
        return data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
async def test_soak(faulty_fake: str) -> None:
    """N calls under random 5xx and resets: books balance, the fake acted on exactly the delivered set, no leak."""

    def client() -> RehookClient:
        policy = RetryPolicy(max_attempts=10, time_scale=0)
        return RehookClient(DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=faulty_fake, retry=policy)

    # First use allocates what later runs reuse (imports, pools, caches, the allocator's arenas at full batches).
    async with client() as warm:
        for i in range(min(N, BATCH)):
            _ = warm.track("warm", {"i": i}, user_id="w")
        await warm.flush()
    baseline = await summary(faulty_fake)
    gc.collect()
    tasks_before, rss_before = len(asyncio.all_tasks()), rss_kib()

    statuses: collections.Counter[str] = collections.Counter()
    digest = 0

    def count(outcome: Outcome) -> None:
        nonlocal digest
        statuses[f"{outcome.status}:{outcome.reason}"] += 1
        if outcome.delivered:
            assert outcome.message_id is not None
            digest = (digest + key_digest(outcome.message_id)) % 2**64

    started = time.monotonic()
    rehook = client()
    async with rehook:
        for start in range(0, N, BATCH):
            for i in range(start, min(N, start + BATCH)):
                _ = rehook.track("soak", {"i": i, "price": i / 100}, None, count, user_id=f"u{i % 1000}")
            await rehook.flush()
        stats = rehook.stats()
    elapsed = time.monotonic() - started
    del rehook
    gc.collect()
    rss_after, tasks_after = rss_kib(), len(asyncio.all_tasks())
    seen = await summary(faulty_fake)

    assert stats.accepted == N == stats.delivered + stats.dropped_total + stats.failed_total
    assert sum(statuses.values()) == N  # every callback ran, once
    assert seen["delivered"] - baseline["delivered"] == stats.delivered
    assert (seen["delivered_digest"] - baseline["delivered_digest"]) % 2**64 == digest
    assert seen["duplicates"] == 0  # resets here drop requests unread, so nothing is ever acted on twice
    assert tasks_after == tasks_before
    assert rss_after <= rss_before * 1.10, (rss_before, rss_after)
    print(
        f"\nsoak: {N} calls in {elapsed:.1f} s ({N / elapsed:.0f}/s), {seen['requests'] - baseline['requests']} "
        f"requests, {stats.retried} retries, outcomes {dict(statuses)}, RSS {rss_before} -> {rss_after} KiB "
        f"({(rss_after - rss_before) / rss_before:+.1%}), tasks {tasks_before} -> {tasks_after}"
    )
