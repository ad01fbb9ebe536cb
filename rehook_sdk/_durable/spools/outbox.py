"""
Writing a call into a PostgreSQL spool from the application's own database transaction (the outbox pattern): the
row commits, or rolls back, with the application's rows, and a ``NOTIFY`` sent in the same transaction tells the
clients on the spool when it commits, so that one of them takes the call over at once rather than at its next look.

A row written here has no owner and is queued, like a call a closing client let go, and names the application it is
for: only a client of that application takes it. The delivering side needs nothing new but the notification (see
`PostgresSpool`). Any DB-API connection whose parameters are ``%s`` works
(psycopg 3, psycopg2, Django's ``connection``); `write_async` takes psycopg 3's ``AsyncConnection``.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any, NamedTuple

from ..._core.encoding import PayloadError
from ..._core.types import Call
from .base import SpoolState, encode_record
from .postgres import APP_INDEX, CHANNEL, MIGRATION_STATEMENTS, SCHEMA_STATEMENTS, SCHEMA_VERSION, TABLES_LOCK

__all__ = ["Write", "prepare", "write_async", "write_sync"]

# Whether the tables are there in this version (rows name their application): false without tables, or with a
# spool of version 1.
_EXISTS = (
    "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('rehook_calls') AND attname = 'app' "
    "AND NOT attisdropped)"
)
# The tables, or their migration, when a write finds neither: made in the application's transaction, under the
# lock clients take (a migration holds the table until that transaction ends: once).
_CREATE: list[tuple[str, tuple[Any, ...] | None]] = [
    ("SELECT pg_advisory_xact_lock(%s)", (TABLES_LOCK,)),
    *((statement, None) for statement in SCHEMA_STATEMENTS),
    ("INSERT INTO rehook_spool VALUES ('schema', %s) ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION),)),
    *((statement, None) for statement in MIGRATION_STATEMENTS),
    (APP_INDEX, None),
]
# One round trip: the row, and the notification PostgreSQL sends when (and only if) the transaction commits.
_INSERT = (
    "WITH written AS (INSERT INTO rehook_calls (owner, state, message_id, record, app) VALUES (NULL, %s, %s, %s, %s) "
    f"RETURNING id) SELECT id, pg_notify('{CHANNEL}', '') FROM written"
)


class Write(NamedTuple):
    message_id: str
    params: tuple[Any, ...]


def prepare(call: Call, app: str) -> Write:
    """
    The row of ``call`` for the application ``app`` (`application_identity`), with its message id: the one given,
    or a new one (its Idempotency-Key from now on).

    Raises:
        ValueError: a value the SDK cannot send (what ``invalid_payload`` would say), named by its key path.
    """
    message_id = call.message_id or secrets.token_hex(16)
    try:
        record = encode_record(call)
    except PayloadError as exc:
        raise ValueError(f"this call cannot be sent: {exc}") from None
    return Write(message_id, (int(SpoolState.QUEUED), message_id, record, app))


def write_sync(connection: Any, write: Write) -> None:
    with contextlib.closing(connection.cursor()) as cursor:
        cursor.execute(_EXISTS)
        if not cursor.fetchone()[0]:
            for statement, params in _CREATE:
                cursor.execute(statement, params)
        cursor.execute(_INSERT, write.params)
        cursor.fetchone()


async def write_async(connection: Any, write: Write) -> None:
    cursor = connection.cursor()
    try:
        await cursor.execute(_EXISTS)
        if not (await cursor.fetchone())[0]:
            for statement, params in _CREATE:
                await cursor.execute(statement, params)
        await cursor.execute(_INSERT, write.params)
        await cursor.fetchone()
    finally:
        await cursor.close()
