"""
The PostgreSQL spool (#15) against a real server (tests/conftest.py's ``postgres_url``: a schema of each test's
own): claims with FOR UPDATE SKIP LOCKED shared by concurrent adopters, a SIGKILLed process's calls adopted once its
lease expires, a connection the server kills made again without losing a group, and the client on top of it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from rehook_sdk import Reason, SpoolError
from rehook_sdk._client import delivery_engine
from rehook_sdk._core.types import Call, CallType
from rehook_sdk._durable.spools import PostgresSpool, SpoolState, SqliteSpool, encode_record
from rehook_sdk.testing import FakeRehook, FaultProxy

from .helpers import wait_until
from .test_connections import free_port
from .test_spool import accept_then_die, fail_calls, rehook_send

APP = "a1:tests"  # the application the spools here write rows for


def track(i: int) -> Call:
    return Call(type=CallType.TRACK, user_id=f"u{i}", event="viewed", properties={"i": i})


def connection_names(url: str) -> set[str]:
    """The application_name of every rehook-sdk connection to the server."""
    rows = query(url, "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'rehook-sdk %'")
    return {name for (name,) in rows}


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description is not None else []


@pytest.fixture
def opened() -> Iterator[list[PostgresSpool[Call]]]:
    spools: list[PostgresSpool[Call]] = []
    yield spools
    for spool in spools:
        spool.close()


def open_spool(url: str, opened: list[PostgresSpool[Call]], **settings: Any) -> PostgresSpool[Call]:
    spool: PostgresSpool[Call] = PostgresSpool(url, encode_record, app=APP, **settings)
    opened.append(spool)
    return spool


def test_groups_marks_and_ends_are_stored(postgres_url: str, opened: list[PostgresSpool[Call]]) -> None:
    spool = open_spool(postgres_url, opened, group_interval=3600)
    for i in range(5):
        spool.append(i, track(i))
    spool.mark_sending(1, "m-1")  # rides on its insert
    spool.sync().result(10)
    spool.mark_sending(2, "m-2")  # a stored row
    spool.settle(0)
    spool.settle(3, failed="rejected: HTTP 400")
    spool.sync().result(10)
    rows = query(postgres_url, "SELECT state, message_id, reason FROM rehook_calls ORDER BY id")
    assert rows == [
        (SpoolState.SENDING, "m-1", None),
        (SpoolState.SENDING, "m-2", None),
        (SpoolState.FAILED, None, "rejected: HTTP 400"),
        (SpoolState.QUEUED, None, None),
    ]
    assert spool.depth().result(10) == 3
    assert (spool.rows, spool.full) == (3, False)


def test_concurrent_adopters_each_take_a_call_once(postgres_url: str) -> None:
    """Three spools adopting a departed owner's 3,000 calls at once, 100 at a time: SKIP LOCKED shares them out,
    each call to one adopter."""
    spools: list[PostgresSpool[Call]] = []
    try:
        first = open_spool(postgres_url, spools)
        for i in range(3_000):
            first.append(i, track(i))
        first.close()
        adopters = [open_spool(postgres_url, spools) for _ in range(3)]
        seen: list[list[int]] = [[], [], []]
        tokens = count()

        def adopt(n: int) -> None:
            while taken := adopters[n].adopt(100, tokens.__next__).result(30):
                seen[n].extend(a.row for _, a in taken)

        threads = [threading.Thread(target=adopt, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for spool in spools:
            spool.close(release=False)
    every = seen[0] + seen[1] + seen[2]
    assert len(every) == len(set(every)) == 3_000
    assert sum(1 for part in seen if part) >= 2  # the work was shared, not taken by one


def test_a_connection_the_server_kills_is_made_again(postgres_url: str, opened: list[PostgresSpool[Call]]) -> None:
    """pg_terminate_backend on the spool's connection: the next group fails, is kept, and is written on a new
    connection; nothing appended is lost."""
    spool = open_spool(postgres_url, opened)
    for i in range(10):
        spool.append(i, track(i))
    spool.sync().result(10)
    killed = query(
        postgres_url,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{spool.writer_name}'",
    )
    assert killed == [(True,)]
    for i in range(10, 20):
        spool.append(i, track(i))
    with pytest.raises(SpoolError):
        spool.sync().result(10)  # the group that found the connection gone
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            spool.sync().result(10)
            break
        except SpoolError:
            time.sleep(0.05)
    assert query(postgres_url, "SELECT count(*) FROM rehook_calls") == [(20,)]
    assert spool.problem is None


def test_an_unreachable_server_or_a_newer_format_is_refused(postgres_url: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(SpoolError, match="cannot connect to the spool"):
        PostgresSpool(f"postgresql://postgres:secret@127.0.0.1:{port}/test", encode_record, app=APP)
    PostgresSpool(postgres_url, encode_record, app=APP).close()
    query(postgres_url, "UPDATE rehook_spool SET value = '3' WHERE key = 'schema'")
    with pytest.raises(SpoolError, match="format is version 3; this SDK reads version 2"):
        PostgresSpool(postgres_url, encode_record, app=APP)


def test_the_password_is_not_in_messages(postgres_url: str) -> None:
    with pytest.raises(SpoolError) as raised:
        PostgresSpool("postgresql://postgres:hunter2@127.0.0.1:1/test", encode_record, app=APP)
    assert "hunter2" not in str(raised.value)
    assert "postgres:***@127.0.0.1:1/test" in str(raised.value)


# -- the client -------------------------------------------------------------------------------------------------


async def test_clients_on_one_database_deliver_each_call_once(fake: FakeRehook, postgres_url: str) -> None:
    async with fake.client(spool=postgres_url) as first, fake.client(spool=postgres_url) as second:
        for i in range(500):
            _ = first.track("e", user_id=f"a{i}")
            _ = second.track("e", user_id=f"b{i}")
        assert await first.flush() == 0
        assert await second.flush() == 0
    users = Counter(event["source_id"] for event in fake.events)
    assert len(users) == 1_000
    assert max(users.values()) == 1
    assert await asyncio.to_thread(query, postgres_url, "SELECT count(*) FROM rehook_calls") == [(0,)]


async def test_a_sigkilled_processes_calls_are_delivered_by_another(
    fake: FakeRehook, postgres_url: str, mute: FaultProxy
) -> None:
    """10,000 calls accepted by a process Rehook never answers, then SIGKILL: a client on the same database takes
    them over once the lease expires and delivers each once; the 8 on the wire are re-sent, flagged."""
    await asyncio.to_thread(accept_then_die, fake, mute, postgres_url, "at_least_once")
    mute.clear()
    async with fake.client(base_url=mute.url, spool=postgres_url, spool_lease=0.2) as client:
        await wait_until(lambda: client.stats().delivered == 10_000, timeout=60)
        stats = client.stats()
    assert (stats.adopted, stats.resent) == (10_000, 8)
    assert Counter(event["source_id"] for event in fake.events) == Counter(f"u{i}" for i in range(10_000))
    assert await asyncio.to_thread(query, postgres_url, "SELECT count(*) FROM rehook_calls") == [(0,)]


async def test_a_shutdown_leaves_calls_for_the_next_client(
    fake: FakeRehook, postgres_url: str, mute: FaultProxy
) -> None:
    client = fake.client(base_url=mute.url, spool=postgres_url, concurrency=2, request_timeout=60)
    await client.start()
    for i in range(100):
        _ = client.track("viewed", user_id=f"u{i}")
    await client.aclose(timeout=0.2)
    assert client.stats().dropped == {Reason.SPOOLED: 100}
    mute.clear()
    async with fake.client(base_url=mute.url, spool=postgres_url) as second:
        await wait_until(lambda: second.stats().delivered == 100)
    assert len(fake.events) == 100


def test_a_process_presumed_dead_leaves_what_was_taken_over(postgres_url: str) -> None:
    reported: list[tuple[list[int], bool, list[int]]] = []
    spools: list[PostgresSpool[Call]] = []
    try:
        a = open_spool(postgres_url, spools, on_marked=lambda t, ok, lost: reported.append((t, ok, lost)))
        for i in range(3):
            a.append(i, track(i))
        a.sync().result(10)
        b = open_spool(postgres_url, spools, lease=0.1)
        time.sleep(0.2)
        assert len(b.adopt(10, count(100).__next__).result(10)) == 3
        a.mark_sending(1, "m-1")
        a.mark_sending(5, "m-5")  # never appended: nothing to mark, nothing lost
        a.settle(2)
        a.sync().result(10)
    finally:
        for spool in spools:
            spool.close(release=False)
    assert reported == [([1, 5], True, [1])]
    assert query(postgres_url, "SELECT count(*) FROM rehook_calls WHERE state = 0") == [(3,)]


async def test_two_replays_at_once_send_each_failed_call_once(fake: FakeRehook, postgres_url: str) -> None:
    """Two ``rehook send --from-spool`` on one database (FOR UPDATE SKIP LOCKED): each failed call sent once."""
    await fail_calls(fake, postgres_url, rejected=300, lost=0)
    fake.events.clear()
    results = await asyncio.gather(*(rehook_send(fake, "--from-spool", postgres_url) for _ in range(2)))
    assert [code for code, _, _ in results] == [0, 0], results
    assert sum(int(out.split(" call")[0].rsplit(" ", 1)[-1]) for _, out, _ in results) == 300  # "N calls failed"
    assert Counter(event["source_id"] for event in fake.events) == Counter(f"r{i}" for i in range(300))
    assert query(postgres_url, "SELECT count(*) FROM rehook_calls") == [(0,)]


def test_a_process_never_adopts_its_own_calls_however_late_its_heartbeat(
    postgres_url: str, opened: list[PostgresSpool[Call]]
) -> None:
    spool = open_spool(postgres_url, opened, lease=3600.0)
    for i in range(3):
        spool.append(i, track(i))
    spool.sync().result(10)
    query(postgres_url, "UPDATE rehook_owners SET heartbeat = heartbeat - interval '2 hours'")
    tokens = iter(range(100, 200))
    assert spool.adopt(10, lambda: next(tokens)).result(10) == []


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_held_counts_what_live_owners_hold(
    store: str, postgres_url: str, tmp_path: Path, opened: list[PostgresSpool[Call]]
) -> None:
    """held(): the calls other processes with a live heartbeat hold, how many processes, and when the first lease
    ends; nothing of its own, nothing failed."""
    where: Any = str(tmp_path / "spool.db") if store == "sqlite" else postgres_url
    make = SqliteSpool if store == "sqlite" else PostgresSpool
    holder = make(where, encode_record, app=APP, lease=30.0, group_interval=0.0)
    other = make(where, encode_record, app=APP, lease=30.0, group_interval=0.0)
    try:
        for i in range(3):
            holder.append(i, track(i))
        holder.settle(2, failed="rejected: HTTP 400")
        holder.sync().result(10)
        other.append(10, track(10))
        other.sync().result(10)
        held = other.held().result(10)
        assert (held.calls, held.processes) == (2, 1)
        assert 25.0 < held.seconds <= 30.0
        assert holder.held().result(10)[:2] == (1, 1)
    finally:
        holder.close()
        other.close()


async def test_a_client_connects_when_it_starts_and_not_before(fake: FakeRehook, postgres_url: str) -> None:
    """Made, a client holds no connection; started, its writer's and its listener's; closed, none. A database that
    cannot be reached fails start(), and the client stays unstarted. (Connections are told apart by the name each
    carries, so that those of earlier tests, which the server may still be ending, do not count.)"""
    before = await asyncio.to_thread(connection_names, postgres_url)
    client = fake.client(spool=postgres_url)
    assert await asyncio.to_thread(connection_names, postgres_url) <= before
    await client.start()
    spool: Any = delivery_engine(client).spooling.spool  # type: ignore[union-attr]
    mine = {spool.writer_name, spool.listener_name}
    await wait_until(lambda: connection_names(postgres_url) & mine == mine, timeout=30)
    await client.aclose()
    await wait_until(lambda: not connection_names(postgres_url) & mine, timeout=30)

    port = free_port()  # nothing listens there
    unreachable = fake.client(spool=f"postgresql://postgres@127.0.0.1:{port}/test")
    with pytest.raises(SpoolError, match="cannot connect to the spool"):
        await unreachable.start()
    await unreachable.aclose()
