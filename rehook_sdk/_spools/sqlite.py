"""
The SQLite spool: one file (WAL mode) that the processes of one host share, written by one thread per process.

Each process registers as an owner with a heartbeat kept in the database (times from SQLite's clock). Calls it
accepts are appended to memory and written by its writer thread in groups: a group is committed once
``group_interval`` has passed since its first call, or at once when something waits for it (a mark before a first
request, an adoption, `sync`). A SIGKILL loses at most the calls of the group not yet committed.

Whoever opens the spool later, or any live process once an owner's heartbeat is older than ``lease``, adopts that
owner's calls (and calls let go at a clean shutdown) in SQLite's write transactions, which one process at a time
holds: a call is never adopted by two processes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from .._encoding import PayloadError
from .._exceptions import RehookError
from .base import Adopted, SpoolState, decode_record

__all__ = ["SpoolError", "SqliteSpool"]

logger = logging.getLogger("rehook_sdk")

T = TypeVar("T")

SCHEMA_VERSION = 1
# Unix time in seconds from SQLite's own clock (julianday has millisecond resolution).
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rehook_spool (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rehook_owners (
    owner TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rehook_calls (
    id INTEGER PRIMARY KEY,
    owner TEXT,
    state INTEGER NOT NULL,
    message_id TEXT,
    accepted REAL NOT NULL DEFAULT {_NOW},
    record TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS rehook_calls_owner ON rehook_calls (owner, state);
"""
_ADOPT = f"""
UPDATE rehook_calls SET owner = :me
WHERE id IN (
    SELECT id FROM rehook_calls
    WHERE state < {SpoolState.FAILED:d} AND (
        owner IS NULL
        OR owner NOT IN (SELECT owner FROM rehook_owners WHERE heartbeat >= {_NOW} - :lease)
    )
    ORDER BY id
    LIMIT :limit
)
RETURNING id, state, message_id, record
"""


class SpoolError(RehookError):
    """
    The spool cannot be opened or used: not a SQLite database, damaged, of a newer format, or unwritable.
    """


class _Op:
    __slots__ = ("args", "kind", "reply")

    def __init__(self, kind: str, args: tuple[Any, ...], reply: concurrent.futures.Future[Any] | None) -> None:
        self.kind = kind
        self.args = args
        self.reply = reply


class SqliteSpool(Generic[T]):
    """
    One process's handle on a spool file. Safe from any thread; the file is touched by its writer thread only.

    Args:
        path: The file (created if missing).
        encode: Makes an appended item's record, in the writer thread; `PayloadError` means it cannot be stored
            (``on_unwritable`` hears of it; the call is still delivered from memory).
        lease: Seconds after its last heartbeat that an owner is taken for dead and its calls adopted.
        group_interval: Seconds a group of appended calls waits for more before it is committed.
        synchronous: SQLite's ``synchronous`` pragma: ``"NORMAL"`` (a commit survives the process, not
            necessarily the machine losing power) or ``"FULL"`` (it survives both).
        on_unwritable: Called in the writer thread with the token and the reason of an item not stored.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encode: Callable[[T], str],
        *,
        lease: float = 30.0,
        group_interval: float = 0.005,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        on_unwritable: Callable[[int, str], None] | None = None,
        open_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._encode = encode
        self._lease = lease
        self._interval = group_interval
        self._synchronous = synchronous
        self._on_unwritable = on_unwritable
        self._pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"
        self._cond = threading.Condition()
        self._ops: list[_Op] = []
        self._first_at = 0.0  # monotonic time of the oldest op waiting, for the group interval
        self._urgent = False
        self._closed = False
        self._rows: dict[int, int] = {}  # token -> row id, in the writer thread only
        self.committed = 0  # calls written (commits done), for stats and tests
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(opened,), name="rehook-spool", daemon=True)
        self._thread.start()
        try:
            opened.result(open_timeout)
        except concurrent.futures.TimeoutError:
            raise SpoolError(f"{self.path}: the spool did not open within {open_timeout} s (locked?)") from None

    # -- any thread ---------------------------------------------------------------------------------------

    def append(self, token: int, item: T) -> None:
        """
        Spool ``item`` under ``token``: a memory append; it is on disk once its group is committed.
        """
        self._give(_Op("append", (token, item), None), urgent=False)

    def mark_sending(self, token: int, message_id: str) -> concurrent.futures.Future[None]:
        """
        Record that a request for ``token`` (with this messageId) is about to be written; done once committed.
        """
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._give(_Op("mark", (token, message_id), reply), urgent=True)
        return reply

    def settle(self, token: int, *, failed: str | None = None) -> None:
        """
        ``token``'s call ended: delivered or dropped (``failed=None``: its row goes), or failed and kept for the
        operator with ``failed`` as its reason.
        """
        self._give(_Op("settle", (token, failed), None), urgent=False)

    def adopt(self, limit: int, tokens: Callable[[], int]) -> concurrent.futures.Future[list[tuple[int, Adopted]]]:
        """
        Take over up to ``limit`` calls nobody live owns (let go, or of an owner whose lease expired), oldest
        first, each under a token from ``tokens``.
        """
        reply: concurrent.futures.Future[list[tuple[int, Adopted]]] = concurrent.futures.Future()
        self._give(_Op("adopt", (limit, tokens), reply), urgent=True)
        return reply

    def sync(self) -> concurrent.futures.Future[None]:
        """
        Commit everything appended so far; done when it is on disk (as far as ``synchronous`` makes it).
        """
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._give(_Op("sync", (), reply), urgent=True)
        return reply

    def depth(self) -> concurrent.futures.Future[int]:
        """
        How many calls the spool holds that are not failed (every owner's).
        """
        reply: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._give(_Op("depth", (), reply), urgent=True)
        return reply

    def close(self, *, release: bool = True, timeout: float | None = None) -> None:
        """
        Commit what is appended, let go of this process's calls still in the spool (``release``: another process
        or the next start takes them at once, without waiting for the lease), and end the writer thread.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._ops.append(_Op("close", (release,), None))
            self._urgent = True
            self._cond.notify()
        if os.getpid() == self._pid:
            self._thread.join(timeout)

    def _give(self, op: _Op, *, urgent: bool) -> None:
        if os.getpid() != self._pid:
            raise SpoolError("this spool was opened by the parent process: a forked child opens its own")
        with self._cond:
            if self._closed:
                raise SpoolError(f"{self.path}: the spool is closed")
            if not self._ops:
                self._first_at = time.monotonic()
            self._ops.append(op)
            if urgent:
                self._urgent = True
            self._cond.notify()

    # -- the writer thread --------------------------------------------------------------------------------

    def _run(self, opened: concurrent.futures.Future[None]) -> None:
        try:
            connection = self._open()
        except Exception as exc:
            opened.set_exception(exc)
            return
        opened.set_result(None)
        beat = max(min(self._lease / 3, 5.0), 0.01)
        next_beat = time.monotonic() + beat
        try:
            while True:
                with self._cond:
                    while True:
                        now = time.monotonic()
                        if self._urgent or (self._ops and now >= self._first_at + self._interval):
                            break
                        if now >= next_beat:
                            break
                        wake = next_beat if not self._ops else min(next_beat, self._first_at + self._interval)
                        self._cond.wait(wake - now)
                    ops, self._ops = self._ops, []
                    self._urgent = False
                if time.monotonic() >= next_beat:
                    self._heartbeat(connection)
                    next_beat = time.monotonic() + beat
                if ops and self._apply(connection, ops):
                    return
        finally:
            connection.close()

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise SpoolError(f"{self.path}: cannot open the spool: {exc}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise SpoolError(f"{self.path}: the spool needs WAL mode, and SQLite gave {mode!r}")
            connection.execute(f"PRAGMA synchronous={self._synchronous}")
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise SpoolError(f"{self.path}: the spool is damaged: {'; '.join(problems[:3])}")
            connection.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            row = connection.execute("SELECT value FROM rehook_spool WHERE key = 'schema'").fetchone()
            if row is None:
                connection.execute("INSERT INTO rehook_spool VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise SpoolError(
                    f"{self.path}: the spool's format is version {row[0]}; this SDK reads version {SCHEMA_VERSION}"
                )
            connection.execute(
                f"INSERT INTO rehook_owners VALUES (?, ?, ?, {_NOW})", (self.owner, self._pid, socket.gethostname())
            )
            connection.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise SpoolError(f"{self.path}: not a usable SQLite spool: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _heartbeat(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute(f"UPDATE rehook_owners SET heartbeat = {_NOW} WHERE owner = ?", (self.owner,))
        except sqlite3.Error as exc:
            logger.warning("spool %s: the heartbeat could not be written (%s)", self.path, exc)

    def _apply(self, connection: sqlite3.Connection, ops: list[_Op]) -> bool:
        """
        Write one group in one transaction, then answer its waiters; True once the spool is closed.
        """
        # Calls appended and settled within the group never reach the file.
        settled = {op.args[0] for op in ops if op.kind == "settle" and op.args[1] is None}
        inserts: dict[int, list[Any]] = {}
        replies: list[tuple[concurrent.futures.Future[Any], Any]] = []
        closing: bool | None = None
        rows = self._rows
        try:
            connection.execute("BEGIN IMMEDIATE")
            for op in ops:
                kind = op.kind
                if kind == "append":
                    token, item = op.args
                    if token in settled:
                        continue
                    try:
                        inserts[token] = [self._encode(item), int(SpoolState.QUEUED), None]
                    except PayloadError as exc:
                        if self._on_unwritable is not None:
                            self._on_unwritable(token, str(exc))
                elif kind == "mark":
                    token, message_id = op.args
                    pending = inserts.get(token)
                    if pending is not None:
                        pending[1:] = [int(SpoolState.SENDING), message_id]
                    elif token in rows:
                        connection.execute(
                            "UPDATE rehook_calls SET state = ?, message_id = ? WHERE id = ?",
                            (int(SpoolState.SENDING), message_id, rows[token]),
                        )
                    assert op.reply is not None
                    replies.append((op.reply, None))
                elif kind == "settle":
                    token, failed = op.args
                    self._flush_inserts(connection, inserts)
                    row = rows.pop(token, None)
                    if row is None:
                        continue
                    if failed is None:
                        connection.execute("DELETE FROM rehook_calls WHERE id = ?", (row,))
                    else:
                        connection.execute(
                            "UPDATE rehook_calls SET state = ?, reason = ? WHERE id = ?",
                            (int(SpoolState.FAILED), failed, row),
                        )
                elif kind == "adopt":
                    self._flush_inserts(connection, inserts)
                    limit, tokens = op.args
                    assert op.reply is not None
                    replies.append((op.reply, self._adopt(connection, limit, tokens)))
                elif kind == "depth":
                    self._flush_inserts(connection, inserts)
                    assert op.reply is not None
                    count = connection.execute(
                        f"SELECT count(*) FROM rehook_calls WHERE state < {SpoolState.FAILED:d}"
                    ).fetchone()[0]
                    replies.append((op.reply, count))
                elif kind == "sync":
                    assert op.reply is not None
                    replies.append((op.reply, None))
                else:
                    assert kind == "close"
                    closing = bool(op.args[0])
            self._flush_inserts(connection, inserts)
            if closing is not None:
                if closing:
                    connection.execute(
                        f"UPDATE rehook_calls SET owner = NULL WHERE owner = ? AND state < {SpoolState.FAILED:d}",
                        (self.owner,),
                    )
                connection.execute("DELETE FROM rehook_owners WHERE owner = ?", (self.owner,))
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            logger.error("spool %s: a group of %d operations could not be written (%s)", self.path, len(ops), exc)
            error = SpoolError(f"{self.path}: {exc}")
            for op in ops:
                if op.reply is not None and not op.reply.done():
                    op.reply.set_exception(error)
            return closing is not None
        self.committed += sum(1 for op in ops if op.kind == "append")
        for reply, value in replies:
            if not reply.done():
                reply.set_result(value)
        return closing is not None

    def _flush_inserts(self, connection: sqlite3.Connection, inserts: dict[int, list[Any]]) -> None:
        for token, (record, state, message_id) in inserts.items():
            cursor = connection.execute(
                "INSERT INTO rehook_calls (owner, state, message_id, record) VALUES (?, ?, ?, ?)",
                (self.owner, state, message_id, record),
            )
            assert cursor.lastrowid is not None
            self._rows[token] = cursor.lastrowid
        inserts.clear()

    def _adopt(
        self, connection: sqlite3.Connection, limit: int, tokens: Callable[[], int]
    ) -> list[tuple[int, Adopted]]:
        taken: list[tuple[int, Adopted]] = []
        for row, state, message_id, record in connection.execute(
            _ADOPT, {"me": self.owner, "lease": self._lease, "limit": limit}
        ).fetchall():
            try:
                call = decode_record(record, message_id)
            except (ValueError, KeyError, TypeError) as exc:
                logger.error(
                    "spool %s: row %d is not a call this SDK can read (%s); kept as failed", self.path, row, exc
                )
                connection.execute(
                    "UPDATE rehook_calls SET state = ?, reason = ? WHERE id = ?",
                    (int(SpoolState.FAILED), f"unreadable: {exc}", row),
                )
                continue
            token = tokens()
            self._rows[token] = row
            taken.append((token, Adopted(row, SpoolState(state), call)))
        connection.execute(
            f"DELETE FROM rehook_owners WHERE heartbeat < {_NOW} - ? AND owner NOT IN "
            "(SELECT owner FROM rehook_calls WHERE owner IS NOT NULL)",
            (self._lease,),
        )
        return taken
