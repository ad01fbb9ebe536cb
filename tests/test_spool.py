"""
Durable delivery through the client (#15): ``spool=`` keeps every accepted call in a SQLite file until its outcome.
What a shutdown deadline leaves is delivered by the next client on the file; what a SIGKILLed process held is taken
over once its lease expires, re-sent calls flagged; at most once, a call that may be on the wire is not re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from rehook_sdk import (
    ConfigurationError,
    Outcome,
    OutcomeStatus,
    Reason,
    RehookClient,
    RetryPolicy,
    SpoolError,
    SyncRehookClient,
)
from rehook_sdk.testing import FakeRehook, FaultProxy

from .helpers import cli_env, wait_until


def spooled_rows(path: Path) -> list[tuple[int, str | None]]:
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute("SELECT state, reason FROM rehook_calls ORDER BY id").fetchall()


async def test_delivered_calls_leave_nothing_in_the_spool(fake: FakeRehook, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with fake.client(spool=path) as client:
        outcomes = [await client.track("viewed", {"i": i}, user_id=f"u{i}") for i in range(20)]
        for i in range(200):
            _ = client.track("e", {"i": i}, user_id=f"v{i}")
        assert await client.flush() == 0
        stats = client.stats()
    assert all(o.delivered and not o.resent for o in outcomes)
    assert stats.delivered == 220
    assert (stats.adopted, stats.resent) == (0, 0)
    assert len(fake.events) == 220
    assert spooled_rows(path) == []


async def test_what_a_shutdown_deadline_leaves_the_next_client_delivers(
    fake: FakeRehook, mute: FaultProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aclose() at its deadline with calls queued and in flight to a silent Rehook: they end 'spooled' (not
    failed), stay in the file, and the next client on it delivers every one, once. The log and on_error say
    'spooled' too, for the calls in flight as well (their log line said shutdown_timeout before)."""
    path = tmp_path / "spool.db"
    errors: list[Outcome] = []
    client = fake.client(base_url=mute.url, spool=path, concurrency=4, request_timeout=60, on_error=errors.append)
    await client.start()
    handles = [client.track("viewed", {"i": i}, user_id=f"u{i}") for i in range(300)]
    await wait_until(lambda: client.stats().in_flight == 4)
    with caplog.at_level(logging.WARNING, logger="rehook_sdk"):
        await client.aclose(timeout=0.2)
    outcomes = [h.outcome for h in handles]
    assert all(o is not None and o.status is OutcomeStatus.DROPPED and o.reason is Reason.SPOOLED for o in outcomes)
    assert client.stats().dropped == {Reason.SPOOLED: 300}
    assert [error.reason for error in errors] == [Reason.SPOOLED] * 300
    logged = {getattr(record, "rehook_reason", None) for record in caplog.records if record.name == "rehook_sdk"}
    assert logged - {None} == {"spooled"}
    assert len(spooled_rows(path)) == 300

    mute.clear()
    async with fake.client(base_url=mute.url, spool=path) as second:
        await wait_until(lambda: second.stats().delivered == 300)
        stats = second.stats()
    assert (stats.accepted, stats.adopted, stats.resent) == (300, 300, 4)  # the 4 in flight may have arrived
    users = Counter(event["source_id"] for event in fake.events)
    assert users == Counter(f"u{i}" for i in range(300))
    assert spooled_rows(path) == []


async def test_failed_calls_are_kept_in_the_spool_and_drops_are_not(fake: FakeRehook, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    fake.fail_next(1, status=400, body={"error": "bad"})
    async with fake.client(spool=path) as client:
        rejected = await client.track("e", user_id="u1")
        dropped = await client.track("e")  # no user id: dropped by a rule, never spooled for good
        assert await client.flush() == 0
    assert rejected.reason is Reason.REJECTED
    assert dropped.reason is Reason.MISSING_USER_ID
    rows = spooled_rows(path)
    assert len(rows) == 1
    assert rows[0][0] == 2
    assert rows[0][1] is not None
    failure = json.loads(rows[0][1])
    assert failure["reason"] == "rejected"
    assert failure["message"].startswith("Rehook rejected the call with 400")
    assert (failure["maybe_delivered"], failure["attempts"], failure["http_status"]) == (False, 1, 400)


async def test_a_full_spool_drops_calls_as_spool_full(silent: str, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    client = RehookClient(
        "k", "s", base_url=silent, spool=path, concurrency=1, request_timeout=60, max_spool_bytes=2_000
    )
    async with client:
        for i in range(30):
            _ = client.track("viewed", {"i": i}, user_id=f"u{i}")
        await wait_until(lambda: client.stats().spooled >= 30)
        late = client.track("late", user_id="u0")
        outcome = await late
        assert outcome.reason is Reason.SPOOL_FULL
        assert "max_spool_bytes" in outcome.message
        await client.aclose(timeout=0.1)
    assert len(spooled_rows(path)) == 30


async def test_spool_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="spool must be a file path"):
        RehookClient("k", "s", spool="mysql://db/app")
    with pytest.raises(ConfigurationError, match="spool_interval must be a number > 0"):
        RehookClient("k", "s", spool=tmp_path / "a.db", spool_interval=0)
    with pytest.raises(ConfigurationError, match="spool_lease must be a number > 0"):
        RehookClient("k", "s", spool=tmp_path / "a.db", spool_lease=-1)
    with pytest.raises(ConfigurationError, match="spool_synchronous must be 'normal' or 'full'"):
        RehookClient("k", "s", spool=tmp_path / "a.db", spool_synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_spool_bytes must be"):
        RehookClient("k", "s", spool=tmp_path / "a.db", max_spool_bytes=0)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    client = RehookClient("k", "s", spool=bad)  # nothing is opened before the client starts
    with pytest.raises(SpoolError, match="not a usable SQLite spool"):
        await client.start()
    assert bad.read_bytes() == b"not a database" * 100
    await client.aclose(timeout=0)


async def test_nothing_is_opened_before_a_client_starts_and_what_it_accepted_before_is_spooled_then(
    fake: FakeRehook, mute: FaultProxy, tmp_path: Path
) -> None:
    """A client with a spool, made and given calls (from a thread without a loop) before it starts: no file, no
    thread. Its start opens the spool and spools those calls first (Rehook is silent here: they stay), and the
    next client delivers them."""
    path = tmp_path / "spool.db"
    threads = set(threading.enumerate())  # (another test's may still be ending: only new ones count)
    client = fake.client(base_url=mute.url, spool=path, request_timeout=60)
    sync = SyncRehookClient(fake.api_key, fake.api_secret, base_url=mute.url, spool=path)
    handles = await asyncio.to_thread(lambda: [client.track("e", user_id=f"u{i}") for i in range(3)])
    assert not path.exists()
    assert [thread.name for thread in set(threading.enumerate()) - threads if thread.name.startswith("rehook")] == []
    await client.start()
    assert await handles[2].persisted() is True
    assert len(spooled_rows(path)) == 3
    await client.aclose(timeout=0.1)
    await asyncio.to_thread(sync.close)
    mute.clear()
    async with fake.client(base_url=mute.url, spool=path) as second:
        await wait_until(lambda: second.stats().delivered == 3, timeout=30)
    assert spooled_rows(path) == []


async def test_a_client_a_call_started_delivers_from_memory_when_its_spool_cannot_be_opened(
    fake: FakeRehook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only start() raises: a call never does. A client its first call started says why the spool cannot be opened
    and delivers from memory."""
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="rehook_sdk"):
        client = fake.client(spool=bad)
        handle = client.track("e", user_id="u1")
        assert (await handle).delivered  # its mark could not be written: sent all the same
        await client.aclose()
    assert "bad.db: cannot be opened (" in caplog.text
    assert "not a usable SQLite spool" in caplog.text


CRASHING = textwrap.dedent(
    """
    import asyncio, sys
    from rehook_sdk import RehookClient

    async def main() -> None:
        client = RehookClient(sys.argv[4], sys.argv[5], base_url=sys.argv[1], spool=sys.argv[2], concurrency=8,
                              request_timeout=60, delivery=sys.argv[3], max_queue_size=20_000)
        async with client:
            for i in range(10_000):
                _ = client.track("viewed", {"i": i}, user_id=f"u{i}")
            while client.stats().spooled < 10_000 or client.stats().in_flight < 8:
                await asyncio.sleep(0.01)
            print("spooled", client.stats().spooled, flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


def accept_then_die(fake: FakeRehook, silent: FaultProxy, spool: Path | str, delivery: str) -> None:
    """Run CRASHING on ``spool`` (a file or a database URL), as the fake's application behind ``silent`` (a proxy
    that answers nothing), and SIGKILL it once its 10,000 calls are spooled and 8 requests have reached the proxy
    (only then are they on the wire: a sender marks its call in the spool before it writes the request)."""
    argv = [sys.executable, "-c", CRASHING, silent.url, str(spool), delivery, fake.api_key, fake.api_secret]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["spooled", "10000"]
        deadline = time.monotonic() + 60
        while len(silent.requests) < 8 and time.monotonic() < deadline:  # the proxy runs on the test's loop
            time.sleep(0.01)
        assert len(silent.requests) == 8
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
async def test_a_sigkilled_processes_calls_are_delivered_by_the_next(
    fake: FakeRehook, mute: FaultProxy, tmp_path: Path, delivery: str
) -> None:
    """10,000 calls accepted by a process that Rehook never answers, then SIGKILL: a client opened on its spool
    takes them over once the dead process's lease expires and delivers each once. The 8 that were on the wire are
    re-sent and flagged (at least once), or failed as 'interrupted' and kept (at most once)."""
    path = tmp_path / "spool.db"
    await asyncio.to_thread(accept_then_die, fake, mute, path, delivery)

    mute.clear()
    failed: list[object] = []
    settings = {"spool": path, "spool_lease": 0.2, "delivery": delivery, "on_error": failed.append}
    async with fake.client(base_url=mute.url, **settings) as client:
        await wait_until(lambda: client.stats().delivered + client.stats().failed_total == 10_000, timeout=60)
        stats = client.stats()
    users = Counter(event["source_id"] for event in fake.events)
    assert stats.adopted == 10_000
    if delivery == "at_least_once":
        assert (stats.delivered, stats.resent) == (10_000, 8)
        assert users == Counter(f"u{i}" for i in range(10_000))
        assert spooled_rows(path) == []
    else:
        assert stats.delivered == 9_992
        assert stats.failed == {Reason.INTERRUPTED: 8}
        assert len(failed) == 8
        assert len(users) == 9_992
        assert max(users.values()) == 1
        assert [state for state, _ in spooled_rows(path)] == [2] * 8


DRAINING = textwrap.dedent(
    """
    import asyncio, sys
    from rehook_sdk import RehookClient

    async def main() -> None:
        client = RehookClient(sys.argv[2], sys.argv[3], base_url=sys.argv[1], spool=sys.argv[4], concurrency=8,
                              max_queue_size=20_000)
        async with client:
            for i in range(9_999):
                _ = client.track("viewed", {"i": i}, user_id=f"u{i}")
            assert await client.track("viewed", {"i": 9_999}, user_id="u9999").persisted()  # all 10,000 on disk
            while client.stats().delivered < 2_000:
                await asyncio.sleep(0.001)
            print("draining", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_process_sigkilled_while_draining_loses_nothing_and_flags_what_it_may_repeat(
    fake: FakeRehook, tmp_path: Path
) -> None:
    """A process delivering 10,000 spooled calls is SIGKILLed mid-drain: the next client on its spool delivers
    the rest. Every call reaches Rehook; the only ones that reach it twice were on the wire at the kill, and the
    next client flagged each of those as resent."""
    path = tmp_path / "spool.db"

    def drain_then_die() -> None:
        command = [sys.executable, "-c", DRAINING, fake.url, fake.api_key, fake.api_secret, str(path)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "draining"
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL

    await asyncio.to_thread(drain_then_die)
    delivered_before = len(fake.events)
    async with fake.client(spool=path, spool_lease=0.2) as client:
        await wait_until(lambda: not spooled_rows(path) and client.stats().in_flight == 0, timeout=60)
        stats = client.stats()
    users = Counter(event["source_id"] for event in fake.events)
    assert set(users) == {f"u{i}" for i in range(10_000)}
    twice = sum(count - 1 for count in users.values())
    # Flagged: the 8 requests on the wire at the kill, and calls delivered whose row's delete was still in the
    # uncommitted group (one spool_interval of deliveries); nothing else is sent twice.
    assert twice <= stats.resent
    assert 2_000 <= delivered_before < 10_000
    assert stats.adopted + delivered_before >= 10_000  # what the first had not delivered, all taken over


async def test_two_clients_on_one_spool_each_deliver_their_own_once(fake: FakeRehook, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with fake.client(spool=path) as first, fake.client(spool=path) as second:
        for i in range(500):
            _ = first.track("e", user_id=f"a{i}")
            _ = second.track("e", user_id=f"b{i}")
        assert await first.flush() == 0
        assert await second.flush() == 0
    users = Counter(event["source_id"] for event in fake.events)
    assert len(users) == 1_000
    assert max(users.values()) == 1
    assert spooled_rows(path) == []


async def test_adopted_calls_wait_for_room_in_the_queue(fake: FakeRehook, mute: FaultProxy, tmp_path: Path) -> None:
    """A spool holding more than the next client's max_queue_size is delivered in turns, all of it."""
    path = tmp_path / "spool.db"
    await leave_calls(fake, path, mute.url, 3_000, concurrency=1)

    mute.clear()
    async with fake.client(base_url=mute.url, spool=path, max_queue_size=500) as second:
        await wait_until(lambda: second.stats().delivered == 3_000, timeout=60)
    assert len(fake.events) == 3_000


async def test_a_handle_can_be_awaited_until_its_call_is_on_disk(fake: FakeRehook, silent: str, tmp_path: Path) -> None:
    """persisted() commits at once (here the group would wait an hour): the row is in the file when it returns."""
    path = tmp_path / "spool.db"
    async with RehookClient(
        "k", "s", base_url=silent, spool=path, spool_interval=3600, concurrency=1, request_timeout=60
    ) as client:
        handles = [client.track("viewed", user_id=f"u{i}") for i in range(3)]
        assert spooled_rows(path) == []
        assert await handles[2].persisted() is True
        assert len(spooled_rows(path)) == 3  # and every call accepted before it
        await client.aclose(timeout=0.1)
        assert await handles[0].persisted() is True  # ended (spooled): nothing left to wait for
    async with fake.client() as plain:
        assert await plain.track("viewed", user_id="u1").persisted() is False


def test_a_sync_clients_handle_can_wait_until_its_call_is_on_disk(
    fake: FakeRehook, silent: str, tmp_path: Path
) -> None:
    """wait_persisted() is persisted() for code without a loop: it blocks until the commit, at once."""
    path = tmp_path / "spool.db"
    with SyncRehookClient(
        "k", "s", base_url=silent, spool=path, spool_interval=3600, concurrency=1, request_timeout=60
    ) as client:
        handles = [client.track("viewed", user_id=f"u{i}") for i in range(3)]
        assert handles[2].wait_persisted(timeout=10) is True
        assert len(spooled_rows(path)) == 3
        client.close(timeout=0.1)
    with fake.memory_sync_client() as plain:
        assert plain.track("e", user_id="u").wait_persisted() is False


async def test_wait_persisted_refuses_to_block_the_event_loop(fake: FakeRehook, tmp_path: Path) -> None:
    async with fake.client(spool=tmp_path / "spool.db") as client:
        with pytest.raises(RuntimeError, match=r"await handle\.persisted"):
            client.track("viewed", user_id="u1").wait_persisted()


async def test_calls_taken_over_from_a_live_process_are_sent_by_one_of_them(fake: FakeRehook, tmp_path: Path) -> None:
    """Client A holds 5 calls (one on the wire for a second) when client B, whose lease is 0.1 s, takes them over
    (A's heartbeat comes every 5 s). B delivers all 5, the one on the wire flagged as re-sent; A does not send the
    4 it had not sent yet (taken_over); only the call that was on the wire reaches Rehook twice."""
    path = tmp_path / "spool.db"
    fake.delay_next(1, seconds=1.0)
    async with fake.client(spool=path, concurrency=1) as a:
        for i in range(5):
            _ = a.track("viewed", user_id=f"u{i}")
        await wait_until(lambda: fake.pending == 1)
        async with fake.client(spool=path, spool_lease=0.1) as b:
            await wait_until(lambda: b.stats().delivered == 5)
            assert (b.stats().adopted, b.stats().resent) == (5, 1)
        await wait_until(lambda: a.stats().in_queue + a.stats().in_flight == 0)
        assert a.stats().delivered == 1
        assert a.stats().dropped == {Reason.TAKEN_OVER: 4}
    assert Counter(event["source_id"] for event in fake.events) == Counter(["u0", "u0", "u1", "u2", "u3", "u4"])
    assert spooled_rows(path) == []


async def test_a_process_presumed_dead_does_not_retry_a_call_taken_over(fake: FakeRehook, tmp_path: Path) -> None:
    """A call waits to be retried (Retry-After) when another process takes it over, this one being presumed dead
    (its owner row gone): the retry finds the row no longer its own and the call ends as taken_over, unsent."""
    path = tmp_path / "spool.db"
    fake.fail_next(1, status=503, retry_after="0.5")
    async with fake.client(spool=path, spool_lease=0.3, retry=RetryPolicy(max_retry_after=0.5)) as a:
        handle = a.track("viewed", user_id="u0")
        await wait_until(lambda: a.stats().retried == 1)
        with (
            contextlib.closing(sqlite3.connect(path)) as connection,
            connection,
        ):  # what a process that took the call over leaves
            connection.execute(
                "INSERT INTO rehook_owners VALUES ('other', 1, 'elsewhere', julianday('now') * 86400 + 3600)"
            )
            connection.execute("UPDATE rehook_calls SET owner = 'other'")
            connection.execute("DELETE FROM rehook_owners WHERE owner != 'other'")
        outcome = await handle
    assert outcome.reason is Reason.TAKEN_OVER
    assert fake.events == []
    assert spooled_rows(path) == [(1, None)]  # the other process's, as it left it


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from rehook_sdk import RehookClient, RetryPolicy

    async def main() -> None:
        async with RehookClient(sys.argv[2], sys.argv[3], base_url=sys.argv[1], spool=sys.argv[4],
                                retry=RetryPolicy(time_scale=0)) as client:
            for i in range(2_000):
                _ = client.track("viewed", {"i": i}, user_id=f"{sys.argv[5]}-{i}")
            assert await client.flush() == 0
            assert client.stats().delivered == 2_000, client.stats()

    asyncio.run(main())
    """
)


async def test_worker_processes_sharing_one_file_deliver_each_call_once(fake: FakeRehook, tmp_path: Path) -> None:
    """Three processes (as gunicorn workers would) on one SQLite spool, 2,000 calls each: 6,000 delivered once,
    and the file empty at the end."""
    path = tmp_path / "spool.db"
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, fake.url, fake.api_key, fake.api_secret, str(path), f"w{n}"
        )
        for n in range(3)
    ]
    assert [await asyncio.wait_for(worker.wait(), 60) for worker in workers] == [0, 0, 0]
    users = Counter(event["source_id"] for event in fake.events)
    assert len(users) == 6_000
    assert max(users.values()) == 1
    assert spooled_rows(path) == []


async def leave_calls(fake: FakeRehook, path: Path | str, url: str, n: int, concurrency: int = 2) -> None:
    """A client of the fake's application at ``url`` that closes with ``n`` calls undelivered (Rehook silent): they
    stay in the spool, let go."""
    client = fake.client(base_url=url, spool=path, concurrency=concurrency, request_timeout=60)
    await client.start()
    for i in range(n):
        _ = client.track("viewed", user_id=f"u{i}")
    await client.aclose(timeout=0.1)


async def relay(fake: FakeRehook, *options: str, url: str | None = None) -> asyncio.subprocess.Process:
    """``rehook relay`` as the fake's application, at ``url`` (default the fake's)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "relay", "--base-url", url or fake.url, *options,
        stderr=asyncio.subprocess.PIPE, env=cli_env(fake),
    )  # fmt: skip


async def relay_once(fake: FakeRehook, spool: Path | str, url: str | None = None) -> bytes:
    """Run ``rehook relay --spool SPOOL --once`` to its end (exit 0); what it printed."""
    process = await relay(fake, "--spool", str(spool), "--once", url=url)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    return err


async def test_rehook_relay_once_delivers_what_a_spool_holds(
    fake: FakeRehook, mute: FaultProxy, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    await leave_calls(fake, path, mute.url, 300)
    mute.clear()
    err = await relay_once(fake, path, mute.url)
    assert "took over 300 (2 of them may have reached Rehook before); delivered 300; failed: none" in err.decode()
    assert sorted(event["source_id"] for event in fake.events) == sorted(f"u{i}" for i in range(300))
    assert spooled_rows(path) == []


async def test_rehook_relay_runs_until_sigterm(fake: FakeRehook, tmp_path: Path) -> None:
    """A relay keeps taking over what clients leave, and stops cleanly on SIGTERM."""
    path = tmp_path / "spool.db"
    process = await relay(fake, "--spool", str(path), "--lease", "0.2")
    fake.hang_next(2)  # the leaving client's two senders wait on these; the rest of its calls stay queued
    await leave_calls(fake, path, fake.url, 50)
    await wait_until(lambda: len(fake.events) == 50, timeout=30)
    fake.hang_next(2)
    await leave_calls(fake, path, fake.url, 20)
    await wait_until(lambda: len(fake.events) == 70, timeout=30)
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err
    assert "delivered 70" in err.decode()


async def test_rehook_relay_once_says_why_it_took_nothing(fake: FakeRehook, mute: FaultProxy, tmp_path: Path) -> None:
    """Calls a live process holds are not taken: the relay says whose they are and when their lease ends, and exits
    3 (not 0, which would read as "done"); once that process lets them go, the relay delivers them."""
    path = tmp_path / "spool.db"
    holder = fake.client(base_url=mute.url, spool=path, concurrency=2, request_timeout=60)
    await holder.start()
    for i in range(20):
        _ = holder.track("viewed", user_id=f"u{i}")
    await wait_until(lambda: holder.stats().spooled == 20)
    try:
        process = await relay(fake, "--spool", str(path), "--once", url=mute.url)
        _, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await holder.aclose(timeout=0.1)
    mute.clear()
    text = err.decode()
    assert process.returncode == 3, text
    assert "not taken: 20 calls are held by 1 other process with a live heartbeat, whose lease ends in " in text
    assert "--wait waits for their leases" in text
    assert fake.events == []
    assert "delivered 20" in (await relay_once(fake, path, mute.url)).decode()


async def test_rehook_relay_wait_takes_over_what_a_killed_process_held(
    fake: FakeRehook, mute: FaultProxy, tmp_path: Path
) -> None:
    """--once --wait after a SIGKILL: the relay waits for the dead process's lease, then takes over and delivers
    every call (exit 0) instead of leaving at once with nothing done."""
    path = tmp_path / "spool.db"
    await asyncio.to_thread(accept_then_die, fake, mute, path, "at_least_once")
    mute.clear()
    process = await relay(fake, "--spool", str(path), "--once", "--wait", "--lease", "5", url=mute.url)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    text = err.decode()
    assert process.returncode == 0, text
    assert "took over 10000 (8 of them may have reached Rehook before); delivered 10000" in text
    assert spooled_rows(path) == []


async def test_rehook_relay_refuses_a_file_that_is_not_a_spool(fake: FakeRehook, tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    process = await relay(fake, "--spool", str(bad), "--once")
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "not a usable SQLite spool" in err.decode()


async def fail_calls(fake: FakeRehook, path: Path | str, rejected: int, lost: int) -> None:
    """Leave ``rejected`` calls failed as rejected (Rehook answered 400) and ``lost`` failed with their request
    on the wire (the connection dropped before the answer, no retry)."""
    async with fake.client(spool=path, retry=RetryPolicy(max_attempts=1, time_scale=0), concurrency=1) as client:
        fake.fail_next(rejected, status=400, body={"error": "bad"})
        outcomes = [await client.track("e", {"i": i}, user_id=f"r{i}") for i in range(rejected)]
        fake.disconnect_next(lost)
        outcomes += [await client.track("e", {"i": i}, user_id=f"m{i}") for i in range(lost)]
    assert [o.maybe_delivered for o in outcomes] == [False] * rejected + [True] * lost
    assert all(o.status is OutcomeStatus.FAILED for o in outcomes)


async def rehook_send(fake: FakeRehook, *options: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "send", "--base-url", fake.url, *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(fake),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_rehook_send_from_spool_sends_failed_calls_again(fake: FakeRehook, tmp_path: Path) -> None:
    """Failed calls are sent again from the spool and leave it once delivered; those whose request may have
    reached Rehook wait for --resend-maybe-delivered."""
    path = tmp_path / "spool.db"
    await fail_calls(fake, path, rejected=5, lost=3)
    fake.events.clear()
    code, out, err = await rehook_send(fake, "--from-spool", str(path))
    assert code == 0, err
    assert "5 calls failed before, sent again from" in out
    assert "delivered 5; failed: none" in out
    assert "skipped 3 calls whose request may have reached Rehook" in out
    assert sorted(event["source_id"] for event in fake.events) == [f"r{i}" for i in range(5)]
    assert [state for state, _ in spooled_rows(path)] == [2, 2, 2]

    code, out, err = await rehook_send(fake, "--from-spool", str(path), "--resend-maybe-delivered")
    assert code == 0, err
    assert "3 calls failed before" in out
    assert "delivered 3" in out
    assert "skipped" not in out
    assert sorted(event["source_id"] for event in fake.events[5:]) == [f"m{i}" for i in range(3)]
    assert spooled_rows(path) == []
    code, out, err = await rehook_send(fake, "--from-spool", str(path))
    assert (code, "0 calls failed before" in out) == (0, True)


async def test_a_call_that_fails_again_stays_in_the_spool_with_its_new_outcome(
    fake: FakeRehook, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    await fail_calls(fake, path, rejected=2, lost=0)
    fake.fail_next(1, status=422, body={"error": "still bad"})
    code, out, err = await rehook_send(fake, "--from-spool", str(path), "--concurrency", "1")
    assert code == 1, err
    assert "delivered 1; failed: 1 rejected" in out
    [(state, reason)] = spooled_rows(path)
    assert state == 2
    assert json.loads(reason or "")["http_status"] == 422


async def test_ctrl_c_gives_the_calls_taken_back_to_the_spools_queue(fake: FakeRehook, tmp_path: Path) -> None:
    """Ctrl-C while Rehook holds the first requests: `send --from-spool` stops, and the calls it took but did not
    deliver within --drain-timeout go back to the spool's queue (no longer failed), where the next client delivers
    them; the 4 whose request was on the wire are flagged as maybe sent. Nothing is lost or kept as failed."""
    path = tmp_path / "spool.db"
    await fail_calls(fake, path, rejected=40, lost=0)
    fake.events.clear()
    fake.hang_next(4)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", "send", "--base-url", fake.url, "--from-spool", str(path),
        "--concurrency", "4", "--drain-timeout", "0.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(fake),
    )  # fmt: skip
    await wait_until(lambda: fake.pending == 4, timeout=30)
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, err
    assert "40 calls failed before, sent again from" in out.decode()
    assert "delivered 0" in out.decode()
    states = Counter(state for state, _ in spooled_rows(path))
    assert states == {0: 36, 1: 4}  # queued again, or on the wire when it stopped (sending); none failed

    err = await relay_once(fake, path)
    assert "took over 40 (4 of them may have reached Rehook before); delivered 40; failed: none" in err.decode()
    assert sorted(event["source_id"] for event in fake.events) == sorted(f"r{i}" for i in range(40))
    assert spooled_rows(path) == []


async def test_rehook_send_from_spool_usage_errors(fake: FakeRehook, tmp_path: Path) -> None:
    spool = str(tmp_path / "spool.db")
    for options, expected in [
        ((), "give the files to send"),
        (("--from-spool", spool, "calls.jsonl"), "no FILE with it"),
        (("--from-spool", spool, "--dry-run", "--skip", "3"), "--dry-run, --skip: not with --from-spool"),
    ]:
        code, _, err = await rehook_send(fake, *options)
        assert (code, expected in err) == (2, True), err
    assert not (tmp_path / "spool.db").exists()


BURST = textwrap.dedent(
    """
    import asyncio, sys
    from rehook_sdk import RehookClient

    async def main() -> None:
        url, key, secret, spool, mode = sys.argv[1:]
        client = RehookClient(key, secret, base_url=url, spool=spool, request_timeout=60, concurrency=4)
        await client.start()
        for i in range(3_000):  # never yields to the loop: the spool's thread gets only what the GIL lends it
            _ = client.track("viewed", {"i": i}, user_id=f"u{i}")
        print("burst", client.stats().unspooled, flush=True)
        while mode == "wait" and client.stats().unspooled:
            await asyncio.sleep(0.001)
        print("killable", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("mode", ["kill", "wait"])
async def test_a_burst_that_never_yields_loses_at_most_what_stats_call_unspooled(
    request: pytest.FixtureRequest, fake: FakeRehook, mute: FaultProxy, tmp_path: Path, store: str, mode: str
) -> None:
    """3,000 calls from a coroutine that never yields, Rehook silent, then SIGKILL: at once ("kill"), or once
    stats().unspooled is 0 ("wait", the documented way to know). The next client delivers every call the spool
    had committed: all 3,000 after the wait; after the kill, at least the 3,000 minus what stats() called
    unspooled at the burst's end."""
    spool = str(tmp_path / "spool.db") if store == "sqlite" else request.getfixturevalue("postgres_url")

    def burst_then_die() -> int:
        argv = [sys.executable, "-c", BURST, mute.url, fake.api_key, fake.api_secret, spool, mode]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            word, unspooled = child.stdout.readline().split()
            assert word == "burst"
            assert child.stdout.readline().strip() == "killable"
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL
        return int(unspooled)

    unspooled = await asyncio.to_thread(burst_then_die)
    mute.clear()
    process = await relay(fake, "--spool", spool, "--once", "--wait", "--lease", "1", url=mute.url)
    _, err = await asyncio.wait_for(process.communicate(), 50)
    assert process.returncode == 0, err
    users = {event["source_id"] for event in fake.events}
    assert users <= {f"u{i}" for i in range(3_000)}
    assert len(users) >= 3_000 - unspooled
    if mode == "wait":
        assert len(users) == 3_000
