"""
What a spool's database supplies (SQLite, PostgreSQL): the connection and one statement of each kind. Each runs in
the spool's writer thread, inside the transaction `SpoolStore._begin` opened (see `SpoolWriter`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .base import Holdings

__all__ = ["Rows", "SpoolStore"]

C = TypeVar("C")

# A group's inserts: (record, state, message_id, reason).
Rows = list[tuple[str, int, str | None, str | None]]


class SpoolStore(Generic[C]):
    """
    The statements of one database, on connections of type ``C``; a store subclasses `SpoolWriter`, which is one.
    """

    # The database's own errors: logged without a traceback (anything else is a bug, logged with one).
    _errors: tuple[type[Exception], ...] = ()

    def _connect(self) -> C:
        """
        Open, check and prepare the spool, register this owner, count it (`_set_size`); raise `SpoolError`.
        """
        raise NotImplementedError

    def _disconnect(self, connection: C) -> None:
        raise NotImplementedError

    def _begin(self, connection: C) -> None:
        raise NotImplementedError

    def _commit(self, connection: C) -> None:
        raise NotImplementedError

    def _rollback(self, connection: C) -> None:
        raise NotImplementedError

    def _insert(self, connection: C, rows: Rows) -> list[int]:
        """
        Insert rows owned by this owner, of this application; their ids, in order.
        """
        raise NotImplementedError

    def _mark(self, connection: C, marks: list[tuple[str, int]]) -> list[int]:
        """
        Set (message_id, row id) rows this owner still holds to SENDING; return the ids of those it no longer
        holds (taken over by another process).
        """
        raise NotImplementedError

    def _delete(self, connection: C, ids: list[int]) -> None:
        """
        Delete the rows of these ids this owner still holds.
        """
        raise NotImplementedError

    def _fail(self, connection: C, fails: list[tuple[str, int]]) -> None:
        """
        Set (reason, row id) rows this owner still holds to FAILED.
        """
        raise NotImplementedError

    def _take(self, connection: C, limit: int) -> list[tuple[int, int, str | None, str]]:
        """
        Claim up to ``limit`` rows of this application nobody live owns, oldest first (and make unidentified ones
        this application's, with ``take_unidentified``): (id, state, message_id, record).
        """
        raise NotImplementedError

    def _failed_rows(self, connection: C, after: int, limit: int) -> list[tuple[int, str | None, str, str | None]]:
        """
        Up to ``limit`` failed rows of this application after the row ``after``, oldest first, locked for this
        transaction where the database can (skipping rows another transaction holds): (id, message_id, record,
        reason).
        """
        raise NotImplementedError

    def _claim(self, connection: C, claims: list[tuple[int, int]]) -> None:
        """
        Make (state, row id) failed rows this owner's calls again, in that state, of this application.
        """
        raise NotImplementedError

    def _count(self, connection: C) -> tuple[int, int]:
        """
        This application's rows not failed, and bytes of every record, in the spool.
        """
        raise NotImplementedError

    def _held(self, connection: C) -> Holdings:
        """
        See `held`.
        """
        raise NotImplementedError

    def _census(self, connection: C) -> list[tuple[str | None, int, int, int, float]]:
        """
        See `census`.
        """
        raise NotImplementedError

    def _purge(self, connection: C, older_than: float) -> int:
        """
        See `purge`.
        """
        raise NotImplementedError

    def _beat(self, connection: C) -> bool:
        """
        Renew this owner's heartbeat; False when its row was gone (it was presumed dead, and registered again).
        """
        raise NotImplementedError

    def _release(self, connection: C, let_go: bool) -> None:
        """
        Unregister this owner; with ``let_go``, first leave its calls to whoever comes next.
        """
        raise NotImplementedError

    def _is_lost(self, exc: Exception) -> bool:
        """
        Whether ``exc`` means the connection is gone (then a new one is made for the next group).
        """
        return False
