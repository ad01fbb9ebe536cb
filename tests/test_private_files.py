"""
Files that hold users' calls (#26, part): the dead-letter file, ``rehook send --dropped-to`` and a SQLite spool
with its -wal and -shm files are created 0600 (a stricter umask still wins), appends never follow a symbolic link,
and a spool overwrites what it deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rehook_sdk import ConfigurationError
from rehook_sdk._core.types import Call, CallType
from rehook_sdk._durable.spools import SqliteSpool, encode_record
from rehook_sdk.testing import FakeRehook

from .test_cli import rehook, write_lines

APP = "a1:tests"  # the application the spools here write rows for

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes and O_NOFOLLOW are POSIX")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask (022) for the test, whatever the runner's."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.usefixtures("umask")
async def test_the_dead_letter_file_is_private(fake: FakeRehook, tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    fake.fail_next(1, status=400)
    async with fake.client(dead_letter=path) as client:
        await client.track("e", user_id="u1")
    assert mode(path) == 0o600


@pytest.mark.usefixtures("umask")
def test_a_stricter_umask_still_wins(tmp_path: Path) -> None:
    os.umask(0o277)
    try:
        SqliteSpool(tmp_path / "spool.db", encode_record, app=APP).close()
    finally:
        os.umask(0o022)
    assert mode(tmp_path / "spool.db") == 0o400


def test_a_dead_letter_path_that_is_a_symbolic_link_is_refused(fake: FakeRehook, tmp_path: Path) -> None:
    """An attacker who can write to the folder cannot redirect the dead-letter lines into another file."""
    target = tmp_path / "other.txt"
    target.write_text("someone else's file\n")
    link = tmp_path / "dead.jsonl"
    link.symlink_to(target)
    with pytest.raises(ConfigurationError, match="it is a symbolic link"):
        fake.client(dead_letter=link)
    assert target.read_text() == "someone else's file\n"


@pytest.mark.usefixtures("umask")
async def test_the_cli_dropped_file_is_private_and_not_a_link(fake: FakeRehook, tmp_path: Path) -> None:
    calls = write_lines(tmp_path / "calls.jsonl", [{"type": "track", "event": "e"}])  # no userId: dropped
    dropped = tmp_path / "dropped.jsonl"
    code, _, err = await rehook(fake, "send", str(calls), "--dropped-to", str(dropped), "--no-progress", cwd=tmp_path)
    assert code == 0, err
    assert mode(dropped) == 0o600
    assert json.loads(dropped.read_text())["outcome"]["reason"] == "missing_user_id"

    target = tmp_path / "other.txt"
    target.write_text("keep\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    code, _, err = await rehook(fake, "send", str(calls), "--dropped-to", str(link), "--no-progress", cwd=tmp_path)
    assert code == 2
    assert "it is a symbolic link" in err
    assert target.read_text() == "keep\n"


@pytest.mark.usefixtures("umask")
async def test_a_sqlite_spool_and_its_wal_and_shm_are_private(fake: FakeRehook, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    async with fake.client(spool=path) as client:
        await client.track("e", user_id="u1")
        modes = {name: mode(tmp_path / name) for name in ("spool.db", "spool.db-wal", "spool.db-shm")}
    assert modes == {"spool.db": 0o600, "spool.db-wal": 0o600, "spool.db-shm": 0o600}


def test_a_spool_overwrites_what_it_deletes(tmp_path: Path) -> None:
    """A delivered call's bytes do not stay in the file's free pages (secure_delete)."""
    path = tmp_path / "spool.db"
    marker = "jane.doe.marker@example.com"
    spool: SqliteSpool[Call] = SqliteSpool(path, encode_record, app=APP, group_interval=0.0)
    try:
        spool.append(1, Call(type=CallType.TRACK, user_id="u1", event="e", properties={"email": marker}))
        spool.sync().result(5)
        spool.settle(1)
        spool.sync().result(5)
    finally:
        spool.close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert marker.encode() not in path.read_bytes()
