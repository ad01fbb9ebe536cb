"""
Failed calls do not stay in a spool forever (#26): a client removes its application's failed calls older than
``spool_retention``, with a count in the log, and ``rehook spool stats|purge`` shows and removes them, on SQLite and
a real PostgreSQL. Other applications' calls are never touched.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from rehook_sdk import ConfigurationError, RehookClient
from rehook_sdk._durable.spools.identity import application_identity
from rehook_sdk.testing import FakeRehook

from .helpers import wait_until
from .test_spool import fail_calls
from .test_spool_identity import apps, make_v1, other, run, spool, sql

__all__ = ["other", "spool"]  # fixtures of test_spool_identity, used here too

WEEK = 7 * 24 * 3600


def age(spool: str, seconds: int) -> None:
    """Make every row of the spool ``seconds`` older."""
    if spool.startswith("postgresql://"):
        sql(spool, f"UPDATE rehook_calls SET accepted = accepted - interval '{seconds} seconds'")
    else:
        sql(spool, "UPDATE rehook_calls SET accepted = accepted - ?", seconds)


async def test_a_client_removes_its_failed_calls_past_the_retention_and_says_so(
    fake: FakeRehook, other: FakeRehook, spool: str, caplog: pytest.LogCaptureFixture
) -> None:
    await fail_calls(fake, spool, rejected=2, lost=1)
    await fail_calls(other, spool, rejected=1, lost=0)
    age(spool, WEEK + 60)
    await fail_calls(fake, spool, rejected=1, lost=0)  # young: kept
    mine = application_identity(fake.url, fake.api_key)
    with caplog.at_level(logging.WARNING, logger="rehook_sdk"):
        async with fake.client(spool=spool, spool_lease=0.3):  # a heartbeat every 0.1 s
            await wait_until(lambda: len(apps(spool)) == 2, timeout=30)
    assert "removed 3 failed calls accepted more than 604800 s ago (spool_retention)" in caplog.text
    assert sorted(app == mine for app, _ in apps(spool)) == [False, True]  # the young one, and the other's


async def test_no_retention_keeps_failed_calls(fake: FakeRehook, tmp_path: Path) -> None:
    path = str(tmp_path / "spool.db")
    await fail_calls(fake, path, rejected=1, lost=0)
    age(path, 10 * WEEK)
    async with fake.client(spool=path, spool_lease=0.3, spool_retention=None):
        first = sql(path, "SELECT heartbeat FROM rehook_owners")
        await wait_until(lambda: sql(path, "SELECT heartbeat FROM rehook_owners") != first, timeout=30)  # it beat
    assert len(apps(path)) == 1
    with pytest.raises(ConfigurationError, match="spool_retention must be a number of seconds > 0 or None"):
        RehookClient("k", "s", spool=path, spool_retention=0)


async def test_rehook_spool_stats_and_purge(fake: FakeRehook, other: FakeRehook, spool: str) -> None:
    if not spool.startswith("postgresql://"):  # looking at a file that is not there creates none
        status, said = await run(fake, "spool stats", "--spool", spool)
        assert (status, said.strip()) == (2, f"rehook: {spool}: no spool there")
        assert not await asyncio.to_thread(Path(spool).exists)
    await fail_calls(fake, spool, rejected=2, lost=1)
    await fail_calls(other, spool, rejected=1, lost=0)
    age(spool, 3 * 86400)

    status, said = await run(fake, "spool stats", "--spool", spool)
    assert status == 0, said
    assert "  this application: 3 failed (the oldest 3.0 days old)" in said
    assert "  1 other application: 1 failed (the oldest 3.0 days old)" in said
    assert "bytes of calls" in said

    status, said = await run(fake, "spool purge", "--spool", spool)  # the default: 7 days
    assert status == 0, said
    assert "removed 0 calls of this application's failed calls accepted more than 7.0 days ago" in said
    status, said = await run(fake, "spool purge", "--spool", spool, "--older-than", "86400")
    assert status == 0, said
    assert "removed 3 calls of this application's failed calls accepted more than 24.0 h ago" in said
    assert len(apps(spool)) == 1  # the other application's

    status, said = await run(other, "spool stats", "--spool", spool)
    assert "  this application: 1 failed" in said
    assert "other application" not in said


async def test_rehook_spool_stats_counts_rows_that_name_no_application(fake: FakeRehook, spool: str) -> None:
    make_v1(spool, queued=2, failed=1)
    status, said = await run(fake, "spool stats", "--spool", spool)
    assert status == 0, said
    assert "  this application: nothing" in said
    assert "  no application (spooled before rows named one): 2 queued, 1 failed" in said
