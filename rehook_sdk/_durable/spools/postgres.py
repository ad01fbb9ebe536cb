"""
The PostgreSQL spool: three tables in the connection's schema (``search_path``), shared by any number of processes
on any number of hosts, each writing through its own writer thread (see `SpoolWriter`) with psycopg 3.

Coordination is the database's: calls are claimed with ``FOR UPDATE SKIP LOCKED`` in short transactions, owners'
heartbeats and leases use the database's clock (``now()``), and the tables are created under an advisory lock. A
lost connection is made again for the next group; until then the groups wait (see `SpoolWriter`).

Calls that nobody owns (written in an application's transaction by `rehook_sdk.outbox`, or let go by a client that
closed) come with a ``NOTIFY`` on `CHANNEL`: a listener thread with a connection of its own hears it and calls
`on_new_calls`, so that the client takes them over at once rather than at its next look (every half lease).

psycopg is imported when a PostgreSQL spool is opened: the ``postgres`` extra.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..._core.exceptions import ConfigurationError, SpoolError
from ..._core.redaction import looks_like_conninfo, redact_location
from .base import Holdings, SpoolState, others_by_kind
from .store import Rows
from .writer import SpoolWriter

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "APP_INDEX",
    "CHANNEL",
    "MIGRATION_STATEMENTS",
    "SCHEMA_STATEMENTS",
    "SCHEMA_VERSION",
    "TABLES_LOCK",
    "PostgresSpool",
    "is_postgres_url",
    "need_psycopg",
]

logger = logging.getLogger("rehook_sdk")

T = TypeVar("T")

SCHEMA_VERSION = 2  # 2: rows name their application (``app``)
# pg_advisory_xact_lock's key while the tables are created: any fixed 64-bit number ("rehook" in ASCII).
TABLES_LOCK = 0x7265686F6F6B
# NOTIFY's channel for calls nobody owns.
CHANNEL = "rehook_calls"
# How long the listener waits for a notification before it looks whether the spool was closed, in seconds.
_LISTEN_POLL = 0.2
SCHEMA_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS rehook_spool (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE IF NOT EXISTS rehook_owners (
        owner text PRIMARY KEY,
        pid integer NOT NULL,
        host text NOT NULL,
        heartbeat timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS rehook_calls (
        id bigserial PRIMARY KEY,
        owner text,
        state smallint NOT NULL,
        message_id text,
        accepted timestamptz NOT NULL DEFAULT now(),
        record text NOT NULL,
        reason text,
        app text
    )""",
    "CREATE INDEX IF NOT EXISTS rehook_calls_owner ON rehook_calls (owner, state)",
)
# Version 1 to 2 (rows name their application; those already there have none: NULL, "unidentified"), then what
# version 2 adds to either. Each statement may run again.
MIGRATION_STATEMENTS = (
    "ALTER TABLE rehook_calls ADD COLUMN IF NOT EXISTS app text",
    f"UPDATE rehook_spool SET value = '{SCHEMA_VERSION}' WHERE key = 'schema' AND value = '1'",
)
APP_INDEX = "CREATE INDEX IF NOT EXISTS rehook_calls_app ON rehook_calls (app, state)"


# This application's rows (and, told to take them, rows that name none).
def _mine(column: str = "app") -> str:
    return f"({column} = %(app)s OR %(legacy)s AND {column} IS NULL)"


_MINE = _mine()
_LIVE = "SELECT owner FROM rehook_owners WHERE heartbeat >= now() - make_interval(secs => %(lease)s)"
_TAKE = f"""
UPDATE rehook_calls SET owner = %(me)s, app = %(app)s
WHERE id IN (
    SELECT id FROM rehook_calls
    WHERE state < {SpoolState.FAILED:d} AND {_MINE} AND (owner IS NULL OR owner <> %(me)s AND owner NOT IN ({_LIVE}))
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, state, message_id, record
"""


def is_postgres_url(value: str) -> bool:
    """
    Whether ``value`` names a PostgreSQL database: a ``postgresql://`` URL or a libpq ``keyword=value`` string.
    """
    return value.startswith(("postgresql://", "postgres://")) or looks_like_conninfo(value)


def need_psycopg() -> Any:
    """
    The psycopg module.

    Raises:
        ConfigurationError: it is not installed (the ``postgres`` extra).
    """
    try:
        import psycopg
    except ImportError:
        raise ConfigurationError("a PostgreSQL spool needs psycopg 3: pip install 'rehook-sdk[postgres]'") from None
    return psycopg


class PostgresSpool(SpoolWriter[T, "psycopg.Connection[Any]"]):
    """
    A spool in PostgreSQL.

    Args:
        url: A libpq connection URL (``postgresql://user@host/db``; ``?options=-csearch_path%3Dname`` picks the
            schema the tables live in).
        settings: As for `SpoolWriter`.
    """

    def __init__(self, url: str, encode: Callable[[T], str], **settings: Any) -> None:
        self._psycopg = need_psycopg()
        self._errors = (self._psycopg.Error,)
        try:
            self._psycopg.conninfo.conninfo_to_dict(url)
        except self._psycopg.Error:
            # libpq's message is not repeated: it may quote a piece of the password.
            raise SpoolError(
                f"{redact_location(url)}: not a PostgreSQL URL or connection string libpq can read "
                "(keyword=value pairs; quote a value that holds spaces: password='a b')"
            ) from None
        self.url = url
        self.listening = threading.Event()  # set while the listener hears notifications (for tests)
        super().__init__(redact_location(url), encode, **settings)
        self.listener_name = self._application_name("listener")
        self._listener = threading.Thread(target=self._listen, name="rehook-spool-listener", daemon=True)
        self._listener.start()

    def close(self, *, release: bool = True, timeout: float | None = None) -> bool:
        ended = super().close(release=release, timeout=timeout)
        if os.getpid() == self._pid and self._listener.is_alive():
            self._listener.join(1.0)  # it looks every _LISTEN_POLL; a daemon, should a connect be hanging
        return ended

    def _listen(self) -> None:
        """
        The listener thread: ``LISTEN`` on its own autocommit connection, and `on_new_calls` for each
        notification, until the spool is closed. A lost connection is made again after a second, and then
        `on_new_calls` once, for what was notified meanwhile.
        """
        pg = self._psycopg
        while not self._closed:
            try:
                with pg.connect(
                    self.url, connect_timeout=10, autocommit=True, application_name=self.listener_name
                ) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._heard()  # what was notified while this connection was being made again
                    while not self._closed:
                        for _ in connection.notifies(timeout=_LISTEN_POLL, stop_after=1):
                            self._heard()
            except pg.Error as exc:
                logger.debug("spool listener: %s; listening again in 1 s", _first_line(exc))
            except Exception:  # a bug: said loudly, and the client still looks every half lease meanwhile
                logger.exception("the spool's listener failed; listening again in 1 s")
            finally:
                self.listening.clear()
            if not self._closed:
                self._stopped.wait(1.0)

    def _application_name(self, role: str) -> str:
        # Which process's connection (pg_stat_activity), unique however long the host name: for operators, tests.
        host, pid, token = self.owner.rsplit(":", 2)
        return f"rehook-sdk {role} {pid}:{token} {host}"[:63]

    @property
    def writer_name(self) -> str:
        return self._application_name("spool")

    def _connect(self) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            connection: psycopg.Connection[Any] = pg.connect(
                self.url, connect_timeout=10, autocommit=False, application_name=self.writer_name
            )
        except pg.Error as exc:
            raise SpoolError(f"{self.where}: cannot connect to the spool: {_first_line(exc)}") from None
        try:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (TABLES_LOCK,))
            for statement in SCHEMA_STATEMENTS:
                connection.execute(statement)
            row = connection.execute("SELECT value FROM rehook_spool WHERE key = 'schema'").fetchone()
            if row is None:
                connection.execute("INSERT INTO rehook_spool VALUES ('schema', %s)", (str(SCHEMA_VERSION),))
            elif row[0] == "1":
                for statement in MIGRATION_STATEMENTS:
                    connection.execute(statement)
                logger.warning(
                    "spool %s: its format is now version %d (rows name their application); the calls it held "
                    "name none, and are taken only by a client or relay told to (spool_take_unidentified)",
                    self.where,
                    SCHEMA_VERSION,
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise SpoolError(
                    f"{self.where}: the spool's format is version {row[0]}; this SDK reads version {SCHEMA_VERSION}"
                )
            connection.execute(APP_INDEX)
            connection.execute(
                "INSERT INTO rehook_owners (owner, pid, host) VALUES (%s, %s, %s) "
                "ON CONFLICT (owner) DO UPDATE SET heartbeat = now()",
                (self.owner, os.getpid(), socket.gethostname()),
            )
            self._set_size(*self._count(connection))
            connection.commit()
        except pg.Error as exc:
            connection.close()
            raise SpoolError(f"{self.where}: not a usable spool: {_first_line(exc)}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _heard(self) -> None:
        callback = self.on_new_calls
        if callback is not None:
            callback()

    def _disconnect(self, connection: psycopg.Connection[Any]) -> None:
        connection.close()

    def _begin(self, connection: psycopg.Connection[Any]) -> None:
        pass  # psycopg opens a transaction with the first statement

    def _commit(self, connection: psycopg.Connection[Any]) -> None:
        connection.commit()

    def _rollback(self, connection: psycopg.Connection[Any]) -> None:
        if not connection.closed:
            connection.rollback()

    def _insert(self, connection: psycopg.Connection[Any], rows: Rows) -> list[int]:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO rehook_calls (owner, state, message_id, record, reason, app) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                [
                    (self.owner, state, message_id, record, reason, self.app)
                    for record, state, message_id, reason in rows
                ],
                returning=True,
            )
            ids: list[int] = []
            while True:
                found = cursor.fetchone()
                assert found is not None
                ids.append(int(found[0]))
                if not cursor.nextset():
                    return ids

    def _mark(self, connection: psycopg.Connection[Any], marks: list[tuple[str, int]]) -> list[int]:
        marked = {
            int(row)
            for (row,) in connection.execute(
                f"UPDATE rehook_calls SET state = {SpoolState.SENDING:d}, message_id = m.message_id "
                "FROM unnest(%s::text[], %s::bigint[]) AS m(message_id, id) "
                "WHERE rehook_calls.id = m.id AND rehook_calls.owner = %s RETURNING rehook_calls.id",
                ([message_id for message_id, _ in marks], [row for _, row in marks], self.owner),
            ).fetchall()
        }
        return [row for _, row in marks if row not in marked]

    def _delete(self, connection: psycopg.Connection[Any], ids: list[int]) -> None:
        connection.execute("DELETE FROM rehook_calls WHERE id = ANY(%s) AND owner = %s", (ids, self.owner))

    def _fail(self, connection: psycopg.Connection[Any], fails: list[tuple[str, int]]) -> None:
        connection.execute(
            f"UPDATE rehook_calls SET state = {SpoolState.FAILED:d}, reason = f.reason "
            "FROM unnest(%s::text[], %s::bigint[]) AS f(reason, id) "
            "WHERE rehook_calls.id = f.id AND rehook_calls.owner = %s",
            ([reason for reason, _ in fails], [row for _, row in fails], self.owner),
        )

    def _take(self, connection: psycopg.Connection[Any], limit: int) -> list[tuple[int, int, str | None, str]]:
        taken = [
            (int(row), int(state), message_id, record)
            for row, state, message_id, record in connection.execute(
                _TAKE, {**self._mine, "me": self.owner, "lease": self.lease, "limit": limit}
            ).fetchall()
        ]
        taken.sort()  # RETURNING gives no order
        connection.execute(
            "DELETE FROM rehook_owners WHERE heartbeat < now() - make_interval(secs => %(lease)s) AND owner NOT IN "
            "(SELECT owner FROM rehook_calls WHERE owner IS NOT NULL)",
            {"lease": self.lease},
        )
        return taken

    def _failed_rows(
        self, connection: psycopg.Connection[Any], after: int, limit: int
    ) -> list[tuple[int, str | None, str, str | None]]:
        return [
            (int(row), message_id, record, reason)
            for row, message_id, record, reason in connection.execute(
                "SELECT id, message_id, record, reason FROM rehook_calls "
                f"WHERE state = {SpoolState.FAILED:d} AND {_MINE} AND id > %(after)s "
                "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
                {**self._mine, "after": after, "limit": limit},
            ).fetchall()
        ]

    def _claim(self, connection: psycopg.Connection[Any], claims: list[tuple[int, int]]) -> None:
        connection.execute(
            "UPDATE rehook_calls SET owner = %s, state = c.state, reason = NULL, app = %s "
            "FROM unnest(%s::smallint[], %s::bigint[]) AS c(state, id) WHERE rehook_calls.id = c.id",
            (self.owner, self.app, [state for state, _ in claims], [row for _, row in claims]),
        )

    def _count(self, connection: psycopg.Connection[Any]) -> tuple[int, int]:
        row = connection.execute(
            f"SELECT count(*) FILTER (WHERE state < {SpoolState.FAILED:d} AND {_MINE}), "
            "coalesce(sum(octet_length(record)), 0) FROM rehook_calls",
            self._mine,
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def _held(self, connection: psycopg.Connection[Any]) -> Holdings:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT c.owner), "
            "extract(epoch FROM min(o.heartbeat) + make_interval(secs => %(lease)s) - now()) "
            "FROM rehook_calls c JOIN rehook_owners o ON o.owner = c.owner "
            f"WHERE c.state < {SpoolState.FAILED:d} AND {_mine('c.app')} AND c.owner != %(me)s "
            "AND o.heartbeat >= now() - make_interval(secs => %(lease)s)",
            {**self._mine, "me": self.owner, "lease": self.lease},
        ).fetchone()
        assert row is not None
        others = connection.execute(
            f"SELECT app IS NULL, state = {SpoolState.FAILED:d}, count(*) FROM rehook_calls "
            "WHERE NOT coalesce(app = %(app)s, %(legacy)s) GROUP BY 1, 2",
            self._mine,
        ).fetchall()
        return Holdings(int(row[0]), int(row[1]), max(0.0, float(row[2] or 0.0)), *others_by_kind(others))

    @property
    def _mine(self) -> dict[str, object]:
        return {"app": self.app, "legacy": self.take_unidentified}

    def _census(self, connection: psycopg.Connection[Any]) -> list[tuple[str | None, int, int, int, float]]:
        return [
            (app, int(state), int(calls), int(size), max(0.0, float(age)))
            for app, state, calls, size, age in connection.execute(
                "SELECT app, state, count(*), coalesce(sum(octet_length(record)), 0), "
                "extract(epoch FROM now() - min(accepted)) FROM rehook_calls GROUP BY app, state ORDER BY app, state"
            ).fetchall()
        ]

    def _purge(self, connection: psycopg.Connection[Any], older_than: float) -> int:
        cursor = connection.execute(
            f"DELETE FROM rehook_calls WHERE state = {SpoolState.FAILED:d} AND {_MINE} "
            "AND accepted < now() - make_interval(secs => %(age)s)",
            {**self._mine, "age": older_than},
        )
        return int(cursor.rowcount)

    def _beat(self, connection: psycopg.Connection[Any]) -> bool:
        cursor = connection.execute("UPDATE rehook_owners SET heartbeat = now() WHERE owner = %s", (self.owner,))
        if cursor.rowcount:
            return True
        connection.execute(
            "INSERT INTO rehook_owners (owner, pid, host) VALUES (%s, %s, %s) ON CONFLICT (owner) DO NOTHING",
            (self.owner, os.getpid(), socket.gethostname()),
        )
        return False

    def _release(self, connection: psycopg.Connection[Any], let_go: bool) -> None:
        if let_go:
            cursor = connection.execute(
                f"UPDATE rehook_calls SET owner = NULL WHERE owner = %s AND state < {SpoolState.FAILED:d}",
                (self.owner,),
            )
            if cursor.rowcount:  # the clients still running take them at once
                connection.execute(f"NOTIFY {CHANNEL}")
        connection.execute("DELETE FROM rehook_owners WHERE owner = %s", (self.owner,))

    def _is_lost(self, exc: Exception) -> bool:
        pg = self._psycopg
        return isinstance(exc, pg.OperationalError | pg.InterfaceError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
