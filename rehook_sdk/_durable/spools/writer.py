"""
What every spool store shares: the callers' side (a deque append; a wake-up for the first op of a group, a hurry for
an op something waits for), and one writer thread that turns each group of ops into one transaction of bulk
statements. A store (SQLite, PostgreSQL) supplies the connection and the statements (`SpoolStore`); `Group` sorts a
group's ops for its transaction.

When a group cannot be written (the database is down or the disk full), its appends and settles are kept and
retried, the next group after a pause, while what waits (marks, adoptions, syncs) is told at once. Past
``max_pending`` ops waiting like that, `full` turns true: the client then refuses calls (``spool_full``) rather
than accept calls it cannot keep.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from ..._core.exceptions import SpoolError
from .base import Adopted, Holdings, Replay, SpoolState, decode_record, failure_maybe_delivered, failure_text
from .group import Group
from .store import SpoolStore

__all__ = ["SpoolWriter"]

logger = logging.getLogger("rehook_sdk")

T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")

# This process's id, kept by an at-fork hook: os.getpid() is a system call (0.2 us here) on every append.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class SpoolWriter(SpoolStore[C], Generic[T, C]):
    """
    One process's handle on a spool. Safe from any thread; the database is touched by its writer thread only.

    Args:
        where: The file or the database, for messages.
        app: The identity of the application whose calls these are (`application_identity`): rows are written
            with it, and only rows with it are taken over, replayed and counted as this spool's.
        take_unidentified: Also take over (and replay) rows written before rows named their application, and make
            them this application's: only for a spool no other application has used.
        encode: Makes an appended item's record, in the writer thread; `PayloadError` means it cannot be stored
            (``on_unwritable`` hears of it; the call is still delivered from memory).
        lease: Seconds after its last heartbeat that an owner is taken for dead and its calls adopted.
        group_interval: Seconds a group of appended calls waits for more before it is committed.
        max_bytes: `full` turns true once the records in the spool (every owner's) reach this many bytes.
        max_pending: `full` turns true once this many ops wait for a database that cannot be written.
        on_unwritable: Called in the writer thread with the token and the reason of an item not stored.
        on_marked: Called in the writer thread after each commit that holds marks, with their tokens, whether
            the commit succeeded (when it did not, the marks are not stored), and the tokens among them whose calls
            another process has taken over meanwhile (this one was presumed dead): those must not be sent.
        open_timeout: Seconds the constructor waits for the spool to open (with ``wait``).
        wait: Open the spool before returning, raising `SpoolError` when it cannot be; otherwise `opened` tells.
        retention: Seconds this application's failed calls are kept (from their acceptance): older ones are
            removed by the heartbeat, once a minute, with a count in the log. ``None`` keeps them.
    """

    def __init__(
        self,
        where: str,
        encode: Callable[[T], str],
        *,
        app: str,
        take_unidentified: bool = False,
        lease: float = 30.0,
        group_interval: float = 0.005,
        max_bytes: int | None = None,
        max_pending: int = 100_000,
        on_unwritable: Callable[[int, str], None] | None = None,
        on_marked: Callable[[list[int], bool, list[int]], None] | None = None,
        open_timeout: float = 30.0,
        wait: bool = True,
        retention: float | None = None,
    ) -> None:
        self.where = where
        self.retention = retention
        self._next_purge = 0.0  # monotonic time of the next removal of expired failed calls
        self.app = app
        self.take_unidentified = take_unidentified
        self._encode = encode
        self.lease = lease
        self._interval = group_interval
        self._max_bytes = max_bytes
        self._max_pending = max_pending
        self._on_unwritable = on_unwritable
        self._on_marked = on_marked
        self._pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"
        self._ops: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._closed = False
        self._stopped = threading.Event()  # set by close(), for threads of a store that wait
        # Called from another thread when calls nobody owns were written to the spool (a store that can hear of
        # them: PostgreSQL's NOTIFY); the client then takes them over without waiting for its next look.
        self.on_new_calls: Callable[[], None] | None = None
        self._rows: dict[int, tuple[int, int]] = {}  # token -> (row id, record bytes), in the writer thread only
        self._retry: list[tuple[Any, ...]] = []  # appends and settles of groups that could not be written
        self.problem: str | None = None  # why the last group could not be written, until one is
        # Calls appended, and of those the ones that need no more writing (committed, ended before their commit,
        # or not storable): their difference is what a crash now would lose. ``+= 1`` on an attribute does not
        # switch threads in CPython (no call or backward jump between its load and store): callers of any thread
        # may count.
        self.appended = 0
        self.committed = 0
        self.unstorable = 0
        self.rows = 0  # this application's calls in the spool that are not failed (as of the last commit or beat)
        self.bytes = 0  # bytes of the records in the spool, every application's
        self.full = False
        self.presumed_dead = False  # a heartbeat found this owner gone: others may have taken its calls
        self._told = False  # whether the calls that name no application were counted and told
        # Done once the first connection is made (or failed: its SpoolError). Without ``wait``, a spool that cannot
        # be opened goes on as one that cannot be written: appends kept and retried, waiters told at once.
        self.opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._wait = wait
        self._thread = threading.Thread(target=self._run, name="rehook-spool", daemon=True)
        self._thread.start()
        if wait:
            self.wait_opened(open_timeout)

    def wait_opened(self, timeout: float) -> None:
        """
        Block until the spool is open.

        Raises:
            SpoolError: it cannot be opened, or did not open within ``timeout`` seconds.
        """
        try:
            self.opened.result(timeout)
        except concurrent.futures.TimeoutError:
            raise SpoolError(f"{self.where}: the spool did not open within {timeout} s (locked?)") from None

    # -- any thread ---------------------------------------------------------------------------------------

    def append(self, token: int, item: T) -> None:
        """
        Spool ``item`` under ``token``: a memory append; it is stored once its group is committed.
        """
        if self._closed or self._pid != _pid:
            self._refuse()
        self.appended += 1
        ops = self._ops
        ops.append(("append", token, item))
        if len(ops) == 1:
            self._wake.set()

    def settle(self, token: int, *, failed: str | None = None) -> None:
        """
        ``token``'s call ended: delivered or dropped (``failed=None``: its row goes), or failed and kept for the
        operator with ``failed`` as its reason.
        """
        if self._closed or self._pid != _pid:
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

    def adopt(
        self, limit: int, tokens: Callable[[], int], *, replay: Replay | None = None
    ) -> concurrent.futures.Future[list[tuple[int, Adopted]]]:
        """
        Take over up to ``limit`` calls nobody live owns (let go, or of an owner whose lease expired), oldest
        first, each under a token from ``tokens``. With ``replay``: the failed calls after ``replay.after``
        instead (a call whose request may have reached Rehook only with ``replay.resend_maybe_delivered``; it is
        then adopted as ``SENDING``), and ``replay`` says how far that got.
        """
        reply: concurrent.futures.Future[list[tuple[int, Adopted]]] = concurrent.futures.Future()
        self._urgent(("adopt", limit, tokens, reply, replay))
        return reply

    def sync(self) -> concurrent.futures.Future[None]:
        """
        Commit everything appended so far; done when it is stored.
        """
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._urgent(("sync", reply))
        return reply

    def depth(self) -> concurrent.futures.Future[int]:
        """
        How many calls the spool holds that are not failed (every owner's), counted in the database.
        """
        return self._query(lambda connection: self._count(connection)[0])

    def census(self) -> concurrent.futures.Future[list[tuple[str | None, int, int, int, float]]]:
        """
        What the spool holds, every application's: (application, state, calls, bytes, age of the oldest in
        seconds) for each application and state.
        """
        return self._query(self._census)

    def purge(self, older_than: float) -> concurrent.futures.Future[int]:
        """
        Remove this application's failed calls accepted more than ``older_than`` seconds ago; how many.
        """
        return self._query(lambda connection: self._purge(connection, older_than))

    def held(self) -> concurrent.futures.Future[Holdings]:
        """
        What the spool holds that this process may not take now: this application's calls that other processes
        still alive hold, and other applications' calls (see `Holdings`).
        """
        return self._query(self._held)

    def _query(self, run: Callable[[C], R]) -> concurrent.futures.Future[R]:
        # ``run`` in the next group's transaction, after its writes; its result answers the future once committed.
        reply: concurrent.futures.Future[R] = concurrent.futures.Future()
        self._urgent(("query", run, reply))
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
        self._stopped.set()
        if os.getpid() != self._pid:
            return True  # a forked child's copy: the thread and the connection are the parent's
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
        raise SpoolError(f"{self.where}: the spool is closed")

    @property
    def uncommitted(self) -> int:
        """
        Calls appended and not yet committed (nor ended, nor found unstorable): what a crash now would lose.
        """
        return max(0, self.appended - self.committed - self.unstorable)

    def _set_size(self, rows: int, size: int) -> None:
        # Never below zero: rows ended here that another process had counted away already (a count is as of its
        # beat or commit) are not this spool's to go negative for.
        self.rows, self.bytes = max(0, rows), max(0, size)
        self.full = (self._max_bytes is not None and size >= self._max_bytes) or len(self._retry) >= self._max_pending

    # -- the writer thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        connection: C | None = None
        try:
            connection = self._connect()
        except Exception as exc:
            if not self.opened.done():
                self.opened.set_exception(exc)
            if self._wait:
                return  # the constructor raises it
            self.problem = str(exc)
            logger.error(
                "spool %s: cannot be opened (%s); the calls are still delivered from memory, and written when it "
                "can be opened",
                self.where,
                exc,
                exc_info=not isinstance(exc, SpoolError),
            )
        else:
            if not self.opened.done():
                self.opened.set_result(None)
            self._tell_unidentified(connection)
        beat = max(min(self.lease / 3, 5.0), 0.01)
        next_beat = time.monotonic() + beat
        pause = 0.0  # after a group that could not be written
        ops, wake, hurry = self._ops, self._wake, self._hurry
        try:
            while True:
                if not ops:
                    wake.clear()
                    if not ops:  # nothing came between the check and the clear
                        wake.wait(max(0.0, min(next_beat - time.monotonic(), pause or 3600)))
                if ops and not hurry.is_set():
                    hurry.wait(max(self._interval, pause))  # the group gathers; an op something waits for cuts it
                hurry.clear()
                batch = self._retry + [ops.popleft() for _ in range(len(ops))]
                self._retry = []
                if connection is None:
                    connection = self._reconnect()
                if connection is not None and time.monotonic() >= next_beat:
                    connection = self._heartbeat(connection)
                    next_beat = time.monotonic() + beat
                if not batch:
                    continue
                if connection is None:
                    marked = [op[1] for op in batch if op[0] == "mark"]  # told at once, as when a write fails
                    closing = self._failed(batch, marked, self.problem or "no connection")
                else:
                    closing, connection = self._apply(connection, batch)
                if closing:
                    return
                pause = min(max(pause * 2, 0.05), 2.0) if self._retry else 0.0
        finally:
            if connection is not None:
                try:
                    self._disconnect(connection)
                except Exception:
                    logger.debug("spool %s: closing the connection failed", self.where, exc_info=True)

    def _tell_unidentified(self, connection: C) -> None:
        # Once, when the spool opens: calls from before rows named their application are not taken unless told.
        self._told = True
        if self.take_unidentified:
            return
        try:
            self._begin(connection)
            holdings = self._held(connection)
            self._commit(connection)
        except Exception:
            with contextlib.suppress(Exception):
                self._rollback(connection)
            logger.debug("spool %s: could not count the calls that name no application", self.where, exc_info=True)
            return
        unidentified = holdings.unidentified + holdings.unidentified_failed
        if unidentified:
            logger.warning(
                "spool %s: %d calls were spooled before rows named their application; this client does not take "
                "them (spool_take_unidentified=True, or rehook relay/send --take-unidentified, delivers them as "
                "its application's: only where no other application has used this spool)",
                self.where,
                unidentified,
            )

    def _reconnect(self) -> C | None:
        try:
            connection = self._connect()
        except Exception as exc:
            self.problem = str(exc)
            return None
        logger.warning("spool %s: connected again", self.where)
        if not self._told:  # opened now, after it could not be at first
            self._tell_unidentified(connection)
        return connection

    def _heartbeat(self, connection: C) -> C | None:
        # Also recounts the spool: other processes write to it too.
        try:
            self._begin(connection)
            alive = self._beat(connection)
            due = self.retention is not None and time.monotonic() >= self._next_purge
            removed = self._purge(connection, self.retention) if self.retention is not None and due else 0
            size = self._count(connection)
            self._commit(connection)
            if due:
                self._next_purge = time.monotonic() + 60.0
            if removed:
                logger.warning(
                    "spool %s: removed %d failed calls accepted more than %g s ago (spool_retention)",
                    self.where,
                    removed,
                    self.retention,
                )
            if not alive:
                self.presumed_dead = True
                logger.error(
                    "spool %s: this process was presumed dead (no heartbeat for the lease) and its calls may have "
                    "been taken over: the ones it does not send yet it leaves to the process that took them, but a "
                    "call it was already sending may reach Rehook twice (its retries check first)",
                    self.where,
                )
        except Exception as exc:
            try:
                self._rollback(connection)
            except Exception:
                logger.debug("spool %s: rollback failed", self.where, exc_info=True)
            logger.warning("spool %s: the heartbeat could not be written (%s)", self.where, exc)
            return self._after(connection, exc)
        self._set_size(*size)
        return connection

    def _after(self, connection: C, exc: Exception) -> C | None:
        if not self._is_lost(exc):
            return connection
        try:
            self._disconnect(connection)
        except Exception:
            logger.debug("spool %s: closing the lost connection failed", self.where, exc_info=True)
        return None

    def _apply(self, connection: C, ops: list[tuple[Any, ...]]) -> tuple[bool, C | None]:
        """
        Write one group in one transaction, then answer its waiters; whether the spool is closed, and the
        connection to go on with.
        """
        group = Group(ops, self._rows, self._encode)
        for token, why in group.unstorable:
            self.unstorable += 1
            if self._on_unwritable is not None:
                self._on_unwritable(token, why)
        replays = [
            (replay, (replay.after, replay.skipped, replay.done)) for *_, replay in group.adopts if replay is not None
        ]
        try:
            written = self._write(connection, group)
        except Exception as exc:  # the database (down, disk full) or a bug: the thread must live on
            try:
                self._rollback(connection)
            except Exception:
                logger.debug("spool %s: rollback failed", self.where, exc_info=True)
            for token in group.inserts:  # rolled back (the ended rows were not changed: they are settled again)
                self._rows.pop(token, None)
            for replay, (after, skipped, done) in replays:  # nothing it looked at was claimed: it goes on from there
                replay.after, replay.skipped, replay.done = after, skipped, done
            return self._failed(ops, group.marked, exc), self._after(connection, exc)
        self._answer(group, written)
        return group.closing is not None, connection

    def _write(self, connection: C, group: Group) -> _Written:
        """
        One group's statements, in one transaction, committed; what to answer with.
        """
        rows = self._rows
        size_rows, size_bytes = self.rows, self.bytes
        self._begin(connection)
        order = list(group.inserts)
        if order:
            values = [tuple(group.inserts[token]) for token in order]
            for token, row, value in zip(order, self._insert(connection, values), values, strict=True):
                size = _size(value[0])
                size_bytes += size
                if value[1] != SpoolState.FAILED:
                    rows[token] = (row, size)
                    size_rows += 1
        lost: list[int] = []
        if group.marks:
            by_row = {rows[token][0]: token for token in group.marks}
            taken_over = self._mark(
                connection, [(message_id, rows[token][0]) for token, message_id in group.marks.items()]
            )
            lost = [by_row[row] for row in taken_over]
        ends = group.ends
        gone = [token for token, failed in ends.items() if failed is None]
        if gone:
            self._delete(connection, [rows[token][0] for token in gone])
            size_bytes -= sum(rows[token][1] for token in gone)
        kept = [(failed, rows[token][0]) for token, failed in ends.items() if failed is not None]
        if kept:
            self._fail(connection, kept)
        size_rows -= len(ends)
        adopted = [
            (reply, self._adopt(connection, limit, tokens, replay)) for limit, tokens, reply, replay in group.adopts
        ]
        if group.adopts:
            # Counted again: calls taken over may have been written by other connections since the last count
            # (the outbox's, in the application's transactions), and ending them must not count below zero.
            size_rows, size_bytes = self._count(connection)
        answers = [(reply, run(connection)) for run, reply in group.queries]
        if group.queries:  # (a purge removes rows)
            size_rows, size_bytes = self._count(connection)
        if group.closing is not None:
            self._release(connection, group.closing)
        self._commit(connection)
        return _Written(size_rows, size_bytes, lost, adopted, answers)

    def _answer(self, group: Group, written: _Written) -> None:
        """
        After a group's commit: forget the rows it ended, count, and answer what waits.
        """
        for token in [*group.ends, *written.lost]:
            self._rows.pop(token, None)  # (a call taken over is the other process's: nothing more to record for it)
        self.committed += len(group.inserts) + group.skipped
        if self.problem is not None:
            logger.warning("spool %s: written again", self.where)
            self.problem = None
        self._set_size(written.rows, written.bytes)
        if group.marked and self._on_marked is not None:
            self._on_marked(group.marked, True, written.lost)
        for reply, taken in written.adopted:
            if not reply.done():
                reply.set_result(taken)
        for future in group.synced:
            if not future.done():
                future.set_result(None)
        for reply, result in written.answers:
            if not reply.done():
                reply.set_result(result)

    def _failed(self, ops: list[tuple[Any, ...]], marked: list[int], exc: Exception | str) -> bool:
        """
        A group not written: its appends and settles are kept for the next group; what waits is told now.
        Whether the spool is closed (a close in the group ends the thread: what is kept is given up).
        """
        closing = any(op[0] == "close" for op in ops)
        kept = [op for op in ops if op[0] in ("append", "settle")]
        first = self.problem is None
        self.problem = str(exc)
        if closing:
            logger.error(
                "spool %s: closed with %d operations that could not be written (%s)", self.where, len(kept), exc
            )
        else:
            self._retry = kept[-self._max_pending :] if len(kept) > self._max_pending else kept
            if first:
                logger.error(
                    "spool %s: could not write (%s); the calls are still delivered from memory, and written when "
                    "the spool can be written again",
                    self.where,
                    exc,
                    exc_info=isinstance(exc, Exception) and not isinstance(exc, self._errors),
                )
        self._set_size(self.rows, self.bytes)
        error = SpoolError(f"{self.where}: {exc}")
        for op in ops:
            reply = op[-1]
            if isinstance(reply, concurrent.futures.Future) and not reply.done():
                reply.set_exception(error)
        if marked and self._on_marked is not None:
            self._on_marked(marked, False, [])
        return closing

    def _adopt(
        self, connection: C, limit: int, tokens: Callable[[], int], replay: Replay | None
    ) -> list[tuple[int, Adopted]]:
        taken: list[tuple[int, Adopted]] = []
        unreadable: list[tuple[str, int]] = []
        found = self._take(connection, limit) if replay is None else self._take_failed(connection, limit, replay)
        for row, state, message_id, record in found:
            try:
                call = decode_record(record, message_id)
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("spool %s: row %d is not a call this SDK reads (%s); kept as failed", self.where, row, exc)
                maybe = state == SpoolState.SENDING
                failure = failure_text("unreadable", str(exc), maybe_delivered=maybe, attempts=0, http_status=None)
                unreadable.append((failure, row))
                continue
            token = tokens()
            self._rows[token] = (row, _size(record))
            taken.append((token, Adopted(row, SpoolState(state), call)))
        if unreadable:
            self._fail(connection, unreadable)
        return taken

    def _take_failed(self, connection: C, limit: int, replay: Replay) -> list[tuple[int, int, str | None, str]]:
        found = self._failed_rows(connection, replay.after, limit)
        replay.done = len(found) < limit
        claims: list[tuple[int, int, str | None, str]] = []
        for row, message_id, record, reason in found:
            replay.after = row
            maybe = failure_maybe_delivered(reason)
            if maybe and not replay.resend_maybe_delivered:
                replay.skipped += 1
                continue
            claims.append((row, int(SpoolState.SENDING if maybe else SpoolState.QUEUED), message_id, record))
        if claims:
            self._claim(connection, [(state, row) for row, state, _, _ in claims])
        return claims


def _size(record: str) -> int:
    return len(record) if record.isascii() else len(record.encode("utf-8", "surrogatepass"))


class _Written(NamedTuple):
    """
    What a committed group comes to: the spool's size after it, the marked calls another process had taken over,
    and the answers to its adoptions and queries.
    """

    rows: int
    bytes: int
    lost: list[int]
    adopted: list[tuple[concurrent.futures.Future[Any], list[tuple[int, Adopted]]]]
    answers: list[tuple[concurrent.futures.Future[Any], Any]]
