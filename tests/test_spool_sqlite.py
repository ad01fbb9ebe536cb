"""
The SQLite spool's store (#15, part 1): group commits, marks before a first request, adoption of a dead or departed
owner's calls by exactly one process, a real SIGKILL, damaged files and forks. The client does not use it yet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rehook_sdk._core.encoding import PayloadError, json_safe
from rehook_sdk._core.types import Call, CallType
from rehook_sdk._durable.spools import SpoolError, SpoolState, SqliteSpool, decode_record, encode_record
from rehook_sdk._durable.spools.base import _dumps
from rehook_sdk._mapping.event import call_to_segment

APP = "a1:tests"  # the application the spools here write rows for


def track(i: int, **fields: object) -> Call:
    return Call(type=CallType.TRACK, user_id=f"u{i}", event="signup", properties={"i": i, **fields})


def rows(path: Path, where: str = "1") -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute(f"SELECT state, message_id, record FROM rehook_calls WHERE {where}").fetchall()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


@pytest.fixture
def opened(path: Path) -> Iterator[list[SqliteSpool[Call]]]:
    spools: list[SqliteSpool[Call]] = []
    yield spools
    for spool in spools:
        spool.close()


def open_spool(path: Path, opened: list[SqliteSpool[Call]], **settings: object) -> SqliteSpool[Call]:
    spool: SqliteSpool[Call] = SqliteSpool(path, encode_record, app=APP, **settings)  # type: ignore[arg-type]
    opened.append(spool)
    return spool


def test_records_keep_the_call() -> None:
    """A record reads back as the call it was made from; the row's messageId wins over the record's."""
    call = Call(
        type=CallType.IDENTIFY,
        user_id="u1",
        traits={"plan": "pro", "n": [1, 2.5, None]},
        context={"ip": "1.2.3.4"},
        integrations={"All": True},
        timestamp="2026-12-02T10:00:00+00:00",
        message_id="m-1",
    )
    assert decode_record(encode_record(call), None) == call
    assert decode_record(encode_record(call), "m-2").message_id == "m-2"
    with pytest.raises(PayloadError):
        encode_record(track(1, bad=float("nan")))
    with pytest.raises(ValueError, match="not a spool record of version 1"):
        decode_record('{"v": 9, "call": {}}', None)


def test_a_group_is_committed_after_its_interval_and_settled_calls_go(
    path: Path, opened: list[SqliteSpool[Call]]
) -> None:
    """Appends reach the file once their group's interval passes; a settled call's row is deleted; a failed one is
    kept with its reason."""
    spool = open_spool(path, opened, group_interval=0.05)
    for i in range(3):
        spool.append(i, track(i))
    assert rows(path) == []  # still in the group
    deadline = time.monotonic() + 5
    while len(rows(path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r[0] for r in rows(path)] == [SpoolState.QUEUED] * 3
    spool.settle(0)
    spool.settle(1, failed="rejected: HTTP 400")
    spool.sync().result(5)
    assert sorted(int(str(r[0])) for r in rows(path)) == [SpoolState.QUEUED, SpoolState.FAILED]
    assert spool.depth().result(5) == 1


def test_calls_settled_within_their_group_never_reach_the_file(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    spool = open_spool(path, opened, group_interval=10)
    for i in range(100):
        spool.append(i, track(i))
        spool.settle(i)
    spool.sync().result(5)
    assert rows(path) == []
    assert spool.committed == 100


def test_marks_are_committed_at_once_and_reported_after_the_commit(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    """mark_sending cuts the group interval short and commits with the messageId the request carries; on_marked
    hears of the marks only once they are on disk."""
    reported: list[tuple[list[int], bool, list[tuple[object, ...]]]] = []
    done = threading.Event()

    def on_marked(tokens: list[int], ok: bool, lost: list[int]) -> None:
        reported.append((tokens, ok, rows(path)))
        done.set()

    spool = open_spool(path, opened, group_interval=3600, on_marked=on_marked)
    spool.append(7, track(7))
    spool.append(8, track(8))
    spool.mark_sending(7, "m-7")
    assert done.wait(5)
    record = encode_record(track(7))
    assert reported == [
        ([7], True, [(SpoolState.SENDING, "m-7", record), (SpoolState.QUEUED, None, encode_record(track(8)))])
    ]
    spool.mark_sending(8, "m-8")  # a call already on disk: its row is updated
    spool.sync().result(5)
    assert rows(path)[1][:2] == (SpoolState.SENDING, "m-8")


def test_sizes_are_counted_and_full_is_set_at_max_bytes(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    """rows and bytes follow every commit (failed rows count in bytes, not in rows); full at max_bytes."""
    record = encode_record(track(0, name="Zoë"))
    size = len(record.encode())
    spool = open_spool(path, opened, max_bytes=3 * size)
    for i in range(2):
        spool.append(i, track(0, name="Zoë"))
    spool.sync().result(5)
    assert (spool.rows, spool.bytes, spool.full) == (2, 2 * size, False)
    spool.append(2, track(0, name="Zoë"))
    spool.settle(0, failed="rejected")
    spool.sync().result(5)
    assert (spool.rows, spool.bytes, spool.full) == (2, 3 * size, True)
    spool.settle(1)
    spool.sync().result(5)
    assert (spool.rows, spool.bytes, spool.full) == (1, 2 * size, False)
    spool.close()
    again = open_spool(path, opened, max_bytes=3 * size)
    assert (again.rows, again.bytes) == (1, 2 * size)  # counted in the file at open


def test_a_clean_close_lets_calls_go_to_the_next_process_at_once(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    """Calls left at close are released: the next spool adopts them without waiting for a lease, exactly once."""
    first = open_spool(path, opened, lease=3600)
    for i in range(10):
        first.append(i, track(i))
    first.mark_sending(3, "m-3")
    first.close()

    second = open_spool(path, opened, lease=3600)
    tokens = count(100)
    taken = second.adopt(1000, tokens.__next__).result(5)
    assert [a.call for _, a in taken] == [track(i) if i != 3 else _with_id(track(3), "m-3") for i in range(10)]
    assert [a.state for _, a in taken] == [SpoolState.SENDING if i == 3 else SpoolState.QUEUED for i in range(10)]
    assert [token for token, _ in taken] == list(range(100, 110))
    assert second.adopt(1000, tokens.__next__).result(5) == []  # nothing is adopted twice
    for token, _ in taken:
        second.settle(token)
    assert second.depth().result(5) == 0


def _with_id(call: Call, message_id: str) -> Call:
    import attrs

    return attrs.evolve(call, message_id=message_id)


def test_a_live_owners_calls_are_not_adopted(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    """The heartbeat keeps an owner's lease: past the lease time, its calls are still its own."""
    owner = open_spool(path, opened, lease=0.3)
    owner.append(1, track(1))
    owner.sync().result(5)
    other = open_spool(path, opened, lease=0.3)
    time.sleep(0.6)  # two lease times, during which the owner beats about six times
    assert other.adopt(10, count().__next__).result(5) == []


CHILD = textwrap.dedent(
    """
    import sys, time
    from rehook_sdk._durable.spools import SqliteSpool, encode_record
    from rehook_sdk._core.types import Call, CallType
    spool = SqliteSpool(sys.argv[1], encode_record, app='a1:tests', lease=0.2, group_interval=0.002)
    for i in range(10_000):
        spool.append(i, Call(type=CallType.TRACK, user_id=f"u{i}", event="e", properties={"i": i}))
        if i == 4_999:
            spool.sync().result(10)
            print("committed 5000", flush=True)
    spool.mark_sending(9_999, "m-last")
    spool.sync().result(10)
    print("marked", flush=True)
    for i in range(10_000, 20_000):
        spool.append(i, Call(type=CallType.TRACK, user_id=f"u{i}", event="e", properties={"i": i}))
    print("appended 20000", flush=True)
    time.sleep(60)
    """
)


def test_after_a_sigkill_another_process_adopts_every_committed_call_once(path: Path) -> None:
    """A process SIGKILLed with 20,000 calls appended: what it committed (10,000 by its last mark, and any group
    committed since) is adopted once its lease expires, each call once, in the order accepted; only the calls of
    the uncommitted groups are lost."""
    with subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed 5000"
        assert child.stdout.readline().strip() == "marked"
        assert child.stdout.readline().strip() == "appended 20000"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL

    spools: list[SqliteSpool[Call]] = []
    try:
        survivor = open_spool(path, spools, lease=0.2)
        time.sleep(0.3)  # the dead owner's lease expires
        taken = survivor.adopt(100_000, count().__next__).result(10)
    finally:
        for spool in spools:
            spool.close()
    numbers = [a.call.properties["i"] for _, a in taken if a.call.properties is not None]
    assert numbers == list(range(len(numbers)))  # every call up to the last committed group, once, in order
    assert 10_000 <= len(numbers) <= 20_000
    assert [a.state for _, a in taken if a.state is SpoolState.SENDING] == [SpoolState.SENDING]
    assert taken[9_999][1].call.message_id == "m-last"


def test_two_processes_never_adopt_the_same_call(path: Path) -> None:
    """Two live spools adopting a departed owner's 2,000 calls at the same time, 50 at a time: each call once."""
    spools: list[SqliteSpool[Call]] = []
    try:
        first = open_spool(path, spools)
        for i in range(2_000):
            first.append(i, track(i))
        first.close()
        adopters = [open_spool(path, spools) for _ in range(2)]
        seen: list[list[int]] = [[], []]
        tokens = count()

        def adopt(n: int) -> None:
            while taken := adopters[n].adopt(50, tokens.__next__).result(10):
                seen[n].extend(a.row for _, a in taken)

        threads = [threading.Thread(target=adopt, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for spool in spools:
            spool.close(release=False)
    assert sorted(seen[0] + seen[1]) == sorted(set(seen[0] + seen[1]))
    assert len(seen[0]) + len(seen[1]) == 2_000


def test_a_call_that_cannot_be_stored_is_reported(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    told: list[tuple[int, str]] = []
    spool: SqliteSpool[Call] = SqliteSpool(
        path, encode_record, app=APP, on_unwritable=lambda t, why: told.append((t, why))
    )
    opened.append(spool)
    spool.append(1, track(1, bad=float("inf")))
    spool.append(2, track(2))
    spool.sync().result(5)
    assert [token for token, _ in told] == [1]
    assert "call.properties.bad" in told[0][1]
    assert len(rows(path)) == 1


def test_files_that_are_not_a_usable_spool_are_refused(tmp_path: Path) -> None:
    """Not SQLite, damaged, or of a newer format: a clear SpoolError at open, never a silent empty spool."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(SpoolError, match=r"garbage\.db: not a usable SQLite spool: file is not a database"):
        SqliteSpool(garbage, encode_record, app=APP)

    damaged = tmp_path / "damaged.db"
    spool = SqliteSpool(damaged, encode_record, app=APP)
    for i in range(2_000):
        spool.append(i, track(i, padding="x" * 200))
    spool.close(release=True)
    with contextlib.closing(sqlite3.connect(damaged)) as connection, connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(damaged.read_bytes())
    page = 4096
    data[page * 3 : page * 3 + 200] = b"\xff" * 200  # an index or table page, not the header
    damaged.write_bytes(bytes(data))
    with pytest.raises(SpoolError, match=r"damaged\.db: (the spool is damaged|not a usable SQLite spool)"):
        SqliteSpool(damaged, encode_record, app=APP)

    newer = tmp_path / "newer.db"
    SqliteSpool(newer, encode_record, app=APP).close()
    with contextlib.closing(sqlite3.connect(newer)) as connection, connection:
        connection.execute("UPDATE rehook_spool SET value = '3' WHERE key = 'schema'")
    with pytest.raises(SpoolError, match="format is version 3; this SDK reads version 2"):
        SqliteSpool(newer, encode_record, app=APP)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_its_parents_spool(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    spool = open_spool(path, opened)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy refuses every use
        try:
            spool.append(1, track(1))
            os.write(write, b"used")
        except SpoolError as exc:
            os.write(write, b"refused" if "forked child opens its own" in str(exc) else b"other")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    assert os.read(read, 100) == b"refused"
    os.close(read)
    spool.append(2, track(2))
    spool.sync().result(5)
    assert len(rows(path)) == 1


# Read through calls: the writer thread changes these between two reads.
def full(spool: SqliteSpool[Call]) -> bool:
    return spool.full


def problem(spool: SqliteSpool[Call]) -> str | None:
    return spool.problem


class Breakable(SqliteSpool[Call]):
    """A spool whose writes fail with SQLite's disk-full error while ``broken`` is set."""

    broken = threading.Event()

    def _begin(self, connection: sqlite3.Connection) -> None:
        if self.broken.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        super()._begin(connection)


def test_groups_that_cannot_be_written_are_kept_and_written_later(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A disk that is full: what waits is told at once (marks not stored, sync fails), the appends and settles are
    kept and written once the disk has room, and past max_pending the spool says it is full."""
    marked: list[tuple[list[int], bool]] = []
    Breakable.broken.set()
    spool = Breakable(path, encode_record, app=APP, max_pending=150, on_marked=lambda t, ok, _: marked.append((t, ok)))
    try:
        for i in range(100):
            spool.append(i, track(i))
        spool.settle(0)
        spool.mark_sending(1, "m-1")
        with pytest.raises(SpoolError, match="database or disk is full"):
            spool.sync().result(5)
        assert marked == [([1], False)]
        assert problem(spool) == "database or disk is full"
        assert rows(path) == []
        assert not full(spool)
        for i in range(100, 160):
            spool.append(i, track(i))
        with pytest.raises(SpoolError):
            spool.sync().result(5)
        assert full(spool)  # 160 appends and a settle wait: more than max_pending

        Breakable.broken.clear()
        spool.sync().result(10)
        assert problem(spool) is None
        assert not full(spool)
        # The newest 150 of the 161 ops were kept: appends 11-159 and the settle of 0 (the 11 oldest appends were
        # given up: those calls are delivered from memory only).
        assert len(rows(path)) == 149
    finally:
        Breakable.broken.clear()
        spool.close()
    assert "could not write (database or disk is full)" in caplog.text


def test_a_process_presumed_dead_leaves_what_was_taken_over(path: Path, opened: list[SqliteSpool[Call]]) -> None:
    """B takes A's calls over (A's heartbeat is older than B's lease); A, still alive, then marks one of them: the
    mark reports it lost (A must not send it), and A's later ends leave B's rows alone."""
    reported: list[tuple[list[int], bool, list[int]]] = []
    a = open_spool(path, opened, on_marked=lambda t, ok, lost: reported.append((t, ok, lost)))  # beats every 5 s
    for i in range(3):
        a.append(i, track(i))
    a.sync().result(5)
    b = open_spool(path, opened, lease=0.1)
    time.sleep(0.2)
    assert len(b.adopt(10, count(100).__next__).result(5)) == 3
    a.mark_sending(1, "m-1")
    a.settle(2)
    a.settle(0, failed="rejected")
    a.sync().result(5)
    assert reported == [([1], True, [1])]
    assert [r[0] for r in rows(path)] == [SpoolState.QUEUED] * 3  # B's, untouched


def test_a_process_never_adopts_its_own_calls_however_late_its_heartbeat(
    path: Path, opened: list[SqliteSpool[Call]]
) -> None:
    """Under load a process's own heartbeat can be older than the lease it judges others by; adopting its own
    calls then would hold each twice in its memory and could send it twice."""
    spool = open_spool(path, opened, lease=3600.0)
    for i in range(3):
        spool.append(i, track(i))
    spool.sync().result(5)
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE rehook_owners SET heartbeat = heartbeat - 7200")
    tokens = iter(range(100, 200))
    assert spool.adopt(10, lambda: next(tokens)).result(5) == []


class _Level(enum.IntEnum):
    GOLD = 3


class _Text(str):
    pass


def _senders_record(call: Call) -> Any:
    """The record as the sender's conversion (json_safe) makes it, or the PayloadError it raises."""
    try:
        return json.loads(_dumps({"v": 1, "call": json_safe(call_to_segment(call), "call")}))
    except PayloadError as exc:
        return str(exc)


def _record(call: Call) -> Any:
    try:
        return json.loads(encode_record(call))
    except PayloadError as exc:
        return str(exc)


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True, "x"]},
        {"set": {2, 1}},
        {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        {"nan": math.nan},
        {"inf": -math.inf},
        {"lone": "\udc80"},
        {"big": 10**30},
        {"level": _Level.GOLD},
        {"keys": {1: "x", 2: "y"}},
        {"text": _Text("y")},
        {"tuple": (1, 2)},
        {"decimal": Decimal("1.50")},
        {"é": "ü😀"},
    ],
)
def test_records_are_what_the_senders_conversion_makes(value: dict[str, Any]) -> None:
    """The C encoder first, the sender's conversion for what it refuses: the same record, or the same error."""
    call = Call(type=CallType.TRACK, user_id="u1", event="e", properties=value)
    assert _record(call) == _senders_record(call)


def test_keys_json_can_write_but_the_sender_refuses_are_stored_as_json_writes_them() -> None:
    """The one difference, kept for the speed of the C encoder: a float, bool or None key. The sender drops such a
    call (invalid_payload), which ends its row; only a call taken over after a crash is read back with the key as
    JSON wrote it ("2.5"), and then sent."""
    call = Call(type=CallType.TRACK, user_id="u1", event="e", properties={"keys": {2.5: "y"}})
    assert _senders_record(call) == "call.properties.keys: key 2.5 is a float; keys must be strings"
    assert _record(call)["call"]["properties"] == {"keys": {"2.5": "y"}}


def test_a_circular_value_is_not_stored() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    call = Call(type=CallType.TRACK, user_id="u1", event="e", properties=circular)
    with pytest.raises(PayloadError, match="contains itself"):
        encode_record(call)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.datetimes() | st.decimals(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.frozensets(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_any_properties_give_the_senders_record(properties: dict[str, Any]) -> None:
    call = Call(type=CallType.TRACK, user_id="u1", event="e", properties=properties)
    assert _record(call) == _senders_record(call)
