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

import collections
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
from .._exceptions import SpoolError
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
        max_bytes: `full` turns true once the records in the file (every owner's) reach this many bytes.
        on_unwritable: Called in the writer thread with the token and the reason of an item not stored.
        on_marked: Called in the writer thread after each commit that holds marks, with their tokens and
            whether the commit succeeded (when it did not, the marks are not on disk).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encode: Callable[[T], str],
        *,
        lease: float = 30.0,
        group_interval: float = 0.005,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        max_bytes: int | None = None,
        on_unwritable: Callable[[int, str], None] | None = None,
        on_marked: Callable[[list[int], bool], None] | None = None,
        open_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._encode = encode
        self._lease = lease
        self._interval = group_interval
        self._synchronous = synchronous
        self._max_bytes = max_bytes
        self._on_unwritable = on_unwritable
        self._on_marked = on_marked
        self._pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"
        # The callers' side is a deque append (atomic); the first op after the writer went idle wakes it, and an
        # op something waits for cuts its group short.
        self._ops: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._closed = False
        self._rows: dict[int, tuple[int, int]] = {}  # token -> (row id, record bytes), in the writer thread only
        self.committed = 0  # calls written, for stats and tests
        self.rows = 0  # calls in the file that are not failed, every owner's (as of the last commit or beat)
        self.bytes = 0  # bytes of the records in the file, every owner's
        self.full = False  # bytes >= max_bytes
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
        if self._closed or os.getpid() != self._pid:
            self._refuse()
        ops = self._ops
        ops.append(("append", token, item))
        if len(ops) == 1:
            self._wake.set()

    def settle(self, token: int, *, failed: str | None = None) -> None:
        """
        ``token``'s call ended: delivered or dropped (``failed=None``: its row goes), or failed and kept for the
        operator with ``failed`` as its reason.
        """
        if self._closed or os.getpid() != self._pid:
            self._refuse()
        ops = self._ops
        ops.append(("settle", token, failed))
        if len(ops) == 1:
            self._wake.set()

    def mark_sending(self, token: int, message_id: str) -> None:
        """
        Record that a request for ``token`` (with this messageId) is about to be written, at once: ``on_marked``
        hears when it is committed.
        """
        self._urgent(("mark", token, message_id))

    def adopt(self, limit: int, tokens: Callable[[], int]) -> concurrent.futures.Future[list[tuple[int, Adopted]]]:
        """
        Take over up to ``limit`` calls nobody live owns (let go, or of an owner whose lease expired), oldest
        first, each under a token from ``tokens``.
        """
        reply: concurrent.futures.Future[list[tuple[int, Adopted]]] = concurrent.futures.Future()
        self._urgent(("adopt", limit, tokens, reply))
        return reply

    def sync(self) -> concurrent.futures.Future[None]:
        """
        Commit everything appended so far; done when it is on disk (as far as ``synchronous`` makes it).
        """
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._urgent(("sync", reply))
        return reply

    def depth(self) -> concurrent.futures.Future[int]:
        """
        How many calls the spool holds that are not failed (every owner's), counted in the file.
        """
        reply: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._urgent(("depth", reply))
        return reply

    def close(self, *, release: bool = True, timeout: float | None = None) -> bool:
        """
        Commit what is appended, let go of this process's calls still in the spool (``release``: another process
        or the next start takes them at once, without waiting for the lease), and end the writer thread.

        Returns:
            Whether the writer thread ended within ``timeout``.
        """
        if self._closed:
            return not self._thread.is_alive()
        self._closed = True
        if os.getpid() != self._pid:
            return True  # a forked child's copy: the thread and the file are the parent's
        self._ops.append(("close", release))
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _urgent(self, op: tuple[Any, ...]) -> None:
        if self._closed or os.getpid() != self._pid:
            self._refuse()
        self._ops.append(op)
        self._hurry.set()
        self._wake.set()

    def _refuse(self) -> None:
        if os.getpid() != self._pid:
            raise SpoolError("this spool was opened by the parent process: a forked child opens its own")
        raise SpoolError(f"{self.path}: the spool is closed")

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
        ops, wake, hurry = self._ops, self._wake, self._hurry
        try:
            while True:
                if not ops:
                    wake.clear()
                    if not ops:  # nothing came between the check and the clear
                        wake.wait(max(0.0, next_beat - time.monotonic()))
                if ops and not hurry.is_set():
                    hurry.wait(self._interval)  # the group gathers; an op something waits for cuts it short
                hurry.clear()
                batch = [ops.popleft() for _ in range(len(ops))]
                if time.monotonic() >= next_beat:
                    self._heartbeat(connection)
                    next_beat = time.monotonic() + beat
                if batch and self._apply(connection, batch):
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
            self._count(connection)
            connection.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise SpoolError(f"{self.path}: not a usable SQLite spool: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _count(self, connection: sqlite3.Connection) -> None:
        rows, size = connection.execute(
            f"SELECT count(*) FILTER (WHERE state < {SpoolState.FAILED:d}), "
            "coalesce(sum(length(CAST(record AS BLOB))), 0) FROM rehook_calls"
        ).fetchone()
        self._set_size(rows, size)

    def _set_size(self, rows: int, size: int) -> None:
        self.rows, self.bytes = rows, size
        self.full = self._max_bytes is not None and size >= self._max_bytes

    def _heartbeat(self, connection: sqlite3.Connection) -> None:
        # Also recounts the file: other processes write to it too.
        try:
            connection.execute(f"UPDATE rehook_owners SET heartbeat = {_NOW} WHERE owner = ?", (self.owner,))
            self._count(connection)
        except sqlite3.Error as exc:
            logger.warning("spool %s: the heartbeat could not be written (%s)", self.path, exc)

    def _apply(self, connection: sqlite3.Connection, ops: list[tuple[Any, ...]]) -> bool:
        """
        Write one group in one transaction, then answer its waiters; True once the spool is closed.
        """
        # Calls appended and settled within the group never reach the file.
        settled = {op[1] for op in ops if op[0] == "settle" and op[2] is None}
        inserts: dict[int, list[Any]] = {}
        replies: list[tuple[concurrent.futures.Future[Any], Any]] = []
        marked: list[int] = []
        closing: bool | None = None
        rows = self._rows
        changes = [0, 0]  # rows, bytes
        try:
            connection.execute("BEGIN IMMEDIATE")
            for op in ops:
                kind = op[0]
                if kind == "append":
                    _, token, item = op
                    if token in settled:
                        self.committed += 1
                        continue
                    try:
                        inserts[token] = [self._encode(item), int(SpoolState.QUEUED), None]
                    except PayloadError as exc:
                        if self._on_unwritable is not None:
                            self._on_unwritable(token, str(exc))
                elif kind == "mark":
                    _, token, message_id = op
                    marked.append(token)
                    pending = inserts.get(token)
                    if pending is not None:
                        pending[1:] = [int(SpoolState.SENDING), message_id]
                    elif token in rows:
                        connection.execute(
                            "UPDATE rehook_calls SET state = ?, message_id = ? WHERE id = ?",
                            (int(SpoolState.SENDING), message_id, rows[token][0]),
                        )
                elif kind == "settle":
                    _, token, failed = op
                    self._flush_inserts(connection, inserts, changes)
                    found = rows.pop(token, None)
                    if found is None:
                        continue
                    row, size = found
                    changes[0] -= 1
                    if failed is None:
                        connection.execute("DELETE FROM rehook_calls WHERE id = ?", (row,))
                        changes[1] -= size
                    else:
                        connection.execute(
                            "UPDATE rehook_calls SET state = ?, reason = ? WHERE id = ?",
                            (int(SpoolState.FAILED), failed, row),
                        )
                elif kind == "adopt":
                    self._flush_inserts(connection, inserts, changes)
                    _, limit, tokens, reply = op
                    replies.append((reply, self._adopt(connection, limit, tokens)))
                elif kind == "depth":
                    self._flush_inserts(connection, inserts, changes)
                    count = connection.execute(
                        f"SELECT count(*) FROM rehook_calls WHERE state < {SpoolState.FAILED:d}"
                    ).fetchone()[0]
                    replies.append((op[1], count))
                elif kind == "sync":
                    replies.append((op[1], None))
                else:
                    assert kind == "close"
                    closing = bool(op[1])
            self._flush_inserts(connection, inserts, changes)
            if closing is not None:
                if closing:
                    connection.execute(
                        f"UPDATE rehook_calls SET owner = NULL WHERE owner = ? AND state < {SpoolState.FAILED:d}",
                        (self.owner,),
                    )
                connection.execute("DELETE FROM rehook_owners WHERE owner = ?", (self.owner,))
            connection.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error (disk full, I/O), or a bug: the thread must live on
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            self._failed(ops, marked, exc)
            return closing is not None
        self._set_size(self.rows + changes[0], self.bytes + changes[1])
        if marked and self._on_marked is not None:
            self._on_marked(marked, True)
        for reply, value in replies:
            if not reply.done():
                reply.set_result(value)
        return closing is not None

    def _failed(self, ops: list[tuple[Any, ...]], marked: list[int], exc: Exception) -> None:
        # The group is lost to the file (the calls are still delivered from memory); whoever waits is told.
        logger.error(
            "spool %s: a group of %d operations could not be written (%s)",
            self.path,
            len(ops),
            exc,
            exc_info=not isinstance(exc, sqlite3.Error),
        )
        error = SpoolError(f"{self.path}: {exc}")
        for op in ops:
            reply = op[-1]
            if isinstance(reply, concurrent.futures.Future) and not reply.done():
                reply.set_exception(error)
        if marked and self._on_marked is not None:
            self._on_marked(marked, False)

    def _flush_inserts(self, connection: sqlite3.Connection, inserts: dict[int, list[Any]], changes: list[int]) -> None:
        for token, (record, state, message_id) in inserts.items():
            cursor = connection.execute(
                "INSERT INTO rehook_calls (owner, state, message_id, record) VALUES (?, ?, ?, ?)",
                (self.owner, state, message_id, record),
            )
            assert cursor.lastrowid is not None
            size = len(record.encode("utf-8", "surrogatepass")) if not record.isascii() else len(record)
            self._rows[token] = (cursor.lastrowid, size)
            changes[0] += 1
            changes[1] += size
            self.committed += 1
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
                logger.error("spool %s: row %d is not a call this SDK reads (%s); kept as failed", self.path, row, exc)
                connection.execute(
                    "UPDATE rehook_calls SET state = ?, reason = ? WHERE id = ?",
                    (int(SpoolState.FAILED), f"unreadable: {exc}", row),
                )
                continue
            token = tokens()
            self._rows[token] = (row, len(record.encode("utf-8", "surrogatepass")))
            taken.append((token, Adopted(row, SpoolState(state), call)))
        connection.execute(
            f"DELETE FROM rehook_owners WHERE heartbeat < {_NOW} - ? AND owner NOT IN "
            "(SELECT owner FROM rehook_calls WHERE owner IS NOT NULL)",
            (self._lease,),
        )
        return taken
