"""
The SQLite spool: one file (WAL mode) that the processes of one host share, each writing through its own writer
thread (see `SpoolWriter`).

Each process registers as an owner with a heartbeat kept in the file (times from SQLite's clock). Whoever opens the
spool later, or any live process once an owner's heartbeat is older than the lease, adopts that owner's calls (and
calls let go at a clean shutdown) in SQLite's write transactions, which one process at a time holds: a call is
never adopted by two processes.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..._core.exceptions import SpoolError
from ..files import open_private, private_error
from .base import Holdings, SpoolState, others_by_kind
from .store import Rows
from .writer import SpoolWriter

__all__ = ["SqliteSpool"]

logger = logging.getLogger("rehook_sdk")

T = TypeVar("T")

SCHEMA_VERSION = 2  # 2: rows name their application (``app``)
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
    reason TEXT,
    app TEXT
);
CREATE INDEX IF NOT EXISTS rehook_calls_owner ON rehook_calls (owner, state);
"""
# Version 1 to 2: rows name their application; the rows already there have none (NULL: "unidentified").
_MIGRATE_1 = "ALTER TABLE rehook_calls ADD COLUMN app TEXT"
_APP_INDEX = "CREATE INDEX IF NOT EXISTS rehook_calls_app ON rehook_calls (app, state)"


# This application's rows (and, told to take them, rows that name none).
def _mine(column: str = "app") -> str:
    return f"({column} IS :app OR :legacy AND {column} IS NULL)"


_MINE = _mine()
_TAKE = f"""
UPDATE rehook_calls SET owner = :me, app = :app
WHERE id IN (
    SELECT id FROM rehook_calls
    WHERE state < {SpoolState.FAILED:d} AND {_MINE} AND (
        owner IS NULL
        OR owner != :me AND owner NOT IN (SELECT owner FROM rehook_owners WHERE heartbeat >= {_NOW} - :lease)
    )
    ORDER BY id
    LIMIT :limit
)
RETURNING id, state, message_id, record
"""


class SqliteSpool(SpoolWriter[T, sqlite3.Connection]):
    """
    A spool in a SQLite file (created if missing).

    Args:
        path: The file.
        synchronous: SQLite's ``synchronous`` pragma: ``"NORMAL"`` (a commit survives the process, not
            necessarily the machine losing power) or ``"FULL"`` (it survives both).
        settings: As for `SpoolWriter`.
    """

    _errors = (sqlite3.Error,)

    def __init__(
        self,
        path: str | os.PathLike[str],
        encode: Callable[[T], str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        **settings: Any,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        super().__init__(str(self.path), encode, **settings)

    def _connect(self) -> sqlite3.Connection:
        try:
            # A new spool is created here, 0600 (its -wal and -shm files take the same mode from SQLite): it
            # holds users' calls. An existing file keeps the mode its owner gave it.
            os.close(open_private(self.path, os.O_RDWR | os.O_EXCL))
        except FileExistsError:
            pass
        except OSError as exc:
            raise SpoolError(f"{self.path}: cannot create the spool: {private_error(exc)}") from None
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise SpoolError(f"{self.path}: cannot open the spool: {exc}") from None
        try:
            # Deleted calls' bytes are overwritten, not left in free pages (most SQLite builds have it off).
            connection.execute("PRAGMA secure_delete=ON")
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
            elif row[0] == "1":
                connection.execute(_MIGRATE_1)
                connection.execute("UPDATE rehook_spool SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
                logger.warning(
                    "spool %s: its format is now version %d (rows name their application); the calls it held "
                    "name none, and are taken only by a client or relay told to (spool_take_unidentified)",
                    self.path,
                    SCHEMA_VERSION,
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise SpoolError(
                    f"{self.path}: the spool's format is version {row[0]}; this SDK reads version {SCHEMA_VERSION}"
                )
            connection.execute(_APP_INDEX)
            connection.execute(
                f"INSERT OR REPLACE INTO rehook_owners VALUES (?, ?, ?, {_NOW})",
                (self.owner, os.getpid(), socket.gethostname()),
            )
            self._set_size(*self._count(connection))
            connection.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise SpoolError(f"{self.path}: not a usable SQLite spool: {exc}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _disconnect(self, connection: sqlite3.Connection) -> None:
        connection.close()

    def _begin(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")

    def _commit(self, connection: sqlite3.Connection) -> None:
        connection.execute("COMMIT")

    def _rollback(self, connection: sqlite3.Connection) -> None:
        if connection.in_transaction:
            connection.execute("ROLLBACK")

    def _insert(self, connection: sqlite3.Connection, rows: Rows) -> list[int]:
        # One executemany (a row's execute was most of the writer's time), then the new rows' ids: the write
        # transaction holds the whole file, so the rows after the largest id before are exactly these, in order.
        before = connection.execute("SELECT coalesce(max(id), 0) FROM rehook_calls").fetchone()[0]
        owner, app = self.owner, self.app
        connection.executemany(
            "INSERT INTO rehook_calls (owner, state, message_id, record, reason, app) VALUES (?, ?, ?, ?, ?, ?)",
            [(owner, state, message_id, record, reason, app) for record, state, message_id, reason in rows],
        )
        ids = [row for (row,) in connection.execute("SELECT id FROM rehook_calls WHERE id > ? ORDER BY id", (before,))]
        if len(ids) != len(rows):
            raise SpoolError(f"{self.path}: {len(ids)} rows found after inserting {len(rows)}")
        return ids

    def _mark(self, connection: sqlite3.Connection, marks: list[tuple[str, int]]) -> list[int]:
        lost = []
        for message_id, row in marks:
            cursor = connection.execute(
                f"UPDATE rehook_calls SET state = {SpoolState.SENDING:d}, message_id = ? WHERE id = ? AND owner = ?",
                (message_id, row, self.owner),
            )
            if cursor.rowcount == 0:
                lost.append(row)
        return lost

    def _delete(self, connection: sqlite3.Connection, ids: list[int]) -> None:
        connection.executemany(
            "DELETE FROM rehook_calls WHERE id = ? AND owner = ?", [(row, self.owner) for row in ids]
        )

    def _fail(self, connection: sqlite3.Connection, fails: list[tuple[str, int]]) -> None:
        connection.executemany(
            f"UPDATE rehook_calls SET state = {SpoolState.FAILED:d}, reason = ? WHERE id = ? AND owner = ?",
            [(reason, row, self.owner) for reason, row in fails],
        )

    def _take(self, connection: sqlite3.Connection, limit: int) -> list[tuple[int, int, str | None, str]]:
        taken: list[tuple[int, int, str | None, str]] = connection.execute(
            _TAKE, {**self._mine, "me": self.owner, "lease": self.lease, "limit": limit}
        ).fetchall()
        taken.sort()  # RETURNING gives no order
        connection.execute(
            f"DELETE FROM rehook_owners WHERE heartbeat < {_NOW} - ? AND owner NOT IN "
            "(SELECT owner FROM rehook_calls WHERE owner IS NOT NULL)",
            (self.lease,),
        )
        return taken

    def _failed_rows(
        self, connection: sqlite3.Connection, after: int, limit: int
    ) -> list[tuple[int, str | None, str, str | None]]:
        found: list[tuple[int, str | None, str, str | None]] = connection.execute(
            "SELECT id, message_id, record, reason FROM rehook_calls "
            f"WHERE state = {SpoolState.FAILED:d} AND {_MINE} AND id > :after ORDER BY id LIMIT :limit",
            {**self._mine, "after": after, "limit": limit},
        ).fetchall()
        return found  # (the write transaction holds the whole file)

    def _claim(self, connection: sqlite3.Connection, claims: list[tuple[int, int]]) -> None:
        connection.executemany(
            "UPDATE rehook_calls SET owner = ?, state = ?, reason = NULL, app = ? "
            f"WHERE id = ? AND state = {SpoolState.FAILED:d}",
            [(self.owner, state, self.app, row) for state, row in claims],
        )

    def _count(self, connection: sqlite3.Connection) -> tuple[int, int]:
        rows, size = connection.execute(
            f"SELECT count(*) FILTER (WHERE state < {SpoolState.FAILED:d} AND {_MINE}), "
            "coalesce(sum(length(CAST(record AS BLOB))), 0) FROM rehook_calls",
            self._mine,
        ).fetchone()
        return int(rows), int(size)

    def _held(self, connection: sqlite3.Connection) -> Holdings:
        calls, owners, left = connection.execute(
            f"SELECT count(*), count(DISTINCT c.owner), min(o.heartbeat) + :lease - {_NOW} "
            "FROM rehook_calls c JOIN rehook_owners o ON o.owner = c.owner "
            f"WHERE c.state < {SpoolState.FAILED:d} AND {_mine('c.app')} AND c.owner != :me "
            f"AND o.heartbeat >= {_NOW} - :lease",
            {**self._mine, "me": self.owner, "lease": self.lease},
        ).fetchone()
        others = connection.execute(
            f"SELECT app IS NULL, state = {SpoolState.FAILED:d}, count(*) FROM rehook_calls WHERE NOT {_MINE} "
            "GROUP BY 1, 2",
            self._mine,
        ).fetchall()
        return Holdings(int(calls), int(owners), max(0.0, float(left or 0.0)), *others_by_kind(others))

    @property
    def _mine(self) -> dict[str, object]:
        return {"app": self.app, "legacy": self.take_unidentified}

    def _census(self, connection: sqlite3.Connection) -> list[tuple[str | None, int, int, int, float]]:
        found: list[tuple[str | None, int, int, int, float]] = connection.execute(
            "SELECT app, state, count(*), coalesce(sum(length(CAST(record AS BLOB))), 0), "
            f"max(0.0, {_NOW} - min(accepted)) FROM rehook_calls GROUP BY app, state ORDER BY app, state"
        ).fetchall()
        return found

    def _purge(self, connection: sqlite3.Connection, older_than: float) -> int:
        cursor = connection.execute(
            f"DELETE FROM rehook_calls WHERE state = {SpoolState.FAILED:d} AND {_MINE} AND accepted < {_NOW} - :age",
            {**self._mine, "age": older_than},
        )
        return int(cursor.rowcount)

    def _beat(self, connection: sqlite3.Connection) -> bool:
        cursor = connection.execute(f"UPDATE rehook_owners SET heartbeat = {_NOW} WHERE owner = ?", (self.owner,))
        if cursor.rowcount:
            return True
        connection.execute(
            f"INSERT INTO rehook_owners VALUES (?, ?, ?, {_NOW})", (self.owner, os.getpid(), socket.gethostname())
        )
        return False

    def _release(self, connection: sqlite3.Connection, let_go: bool) -> None:
        if let_go:
            connection.execute(
                f"UPDATE rehook_calls SET owner = NULL WHERE owner = ? AND state < {SpoolState.FAILED:d}",
                (self.owner,),
            )
        connection.execute("DELETE FROM rehook_owners WHERE owner = ?", (self.owner,))
