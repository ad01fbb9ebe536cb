"""
The dead-letter file: one JSON line per call that did not reach Rehook but could be sent again later.

Format version 1, one object per line::

    {"v": 1,
     "call": {"type": "track", "userId": "u1", "event": "signup", "properties": {...}, "messageId": "...", ...},
     "outcome": {"status": "failed", "reason": "retries_exhausted", "message": "...", "http_status": 503,
                 "response_body": "...", "attempts": 8, "maybe_delivered": false, "message_id": "...",
                 "time": "2026-11-26T18:00:00.123456+00:00"}}

``call`` is the Segment-spec call as it was made (only the keys it had), so ``rehook send`` can replay a
dead-letter file like any file of Segment calls. A value JSON cannot carry is written as readable text (its
``repr()``, or a description when even that fails) and the line gets ``"unencodable": "<key path>: <problem>"``; a
lone surrogate is written as its JSON escape (``\\udc80``), so the line is UTF-8 and reads back as it was given.

Written lines: every ``failed`` call (``rejected``, ``retries_exhausted``, ``shutdown_timeout``,
``internal_error``) and the calls dropped for lack of room or time (``queue_full``, ``client_closed``). Calls
dropped by a rule (no user id, no referral code, no mapping, invalid payload) are not written: sending them again
would drop them again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._core.constants import MAX_NESTING_DEPTH
from .._core.encoding import PayloadError, json_safe, safe_repr
from .._core.entry import Data, Meta, entry_call
from .._core.exceptions import ConfigurationError
from .._core.outcome import Outcome, OutcomeStatus, Reason, outcome_for
from .._mapping.event import call_to_segment
from .files import open_private, private_error

__all__ = ["DEAD_LETTER_VERSION", "MAX_BACKLOG", "DeadLetterWriter", "outcome_line"]

logger = logging.getLogger("rehook_sdk")

DEAD_LETTER_VERSION = 1
_REPLAYABLE_DROPS = frozenset({Reason.QUEUE_FULL, Reason.CLIENT_CLOSED})
_STOP = object()
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
# Lines written with one write() at most: O_APPEND keeps each write whole, so whole lines stay whole.
_BATCH = 256
# Seconds without work after which the writer thread ends (the next line starts it again).
_IDLE = 0.5
# Outcomes given one by one and not yet taken by the writer, past which new ones are counted as lost rather than
# held in memory (a writer slower than the calls ending: a sustained outage with a full queue, a slow disk); about
# 1 KB each. The lines of the calls still queued at a shutdown are not counted: they refer to calls the queue holds
# already, and the writer builds them 256 at a time.
MAX_BACKLOG = 10_000
# Seconds between two log lines about lines lost past the backlog.
_LOST_EVERY = 10.0


def outcome_line(outcome: Outcome) -> bytes:
    """
    The line for ``outcome``. Never raises: what strict JSON cannot carry is written as readable text instead.
    """
    record: dict[str, Any] = {"v": DEAD_LETTER_VERSION}
    try:
        call = call_to_segment(outcome.call)
        if outcome.message_id is not None and "messageId" not in call:
            call["messageId"] = outcome.message_id  # replaying with the same id lets a deduplicating Rehook see it
        record["call"] = call
        record["outcome"] = {
            "status": outcome.status.value,
            "reason": outcome.reason.value if outcome.reason else None,
            "message": outcome.message,
            "http_status": outcome.http_status,
            "response_body": outcome.response_body,
            "attempts": outcome.attempts,
            "maybe_delivered": outcome.maybe_delivered,
            "message_id": outcome.message_id,
            "time": dt.datetime.now(dt.UTC).isoformat(),
        }
        try:
            # The C encoder first: most calls hold plain values. What it refuses (a set, a datetime, NaN, a huge
            # int) takes the documented conversion.
            text = _dumps(record)
        except (TypeError, ValueError):
            text = _dumps(json_safe(record, "record"))
    except Exception as exc:
        record["unencodable"] = str(exc) if isinstance(exc, PayloadError) else safe_repr(exc)
        text = json.dumps(_printable(record, 0), ensure_ascii=False, separators=(",", ":"))
    # A lone surrogate becomes its JSON escape (\udc80): the line stays UTF-8 and reads back as it was given.
    return (text + "\n").encode("utf-8", "backslashreplace")


def _printable(value: Any, depth: int) -> Any:
    """
    ``value`` as JSON-writable data, turning what strict JSON cannot carry into descriptive strings.
    """
    if isinstance(value, str):
        return str.__str__(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        try:
            int.__repr__(value)
        except ValueError:
            return f"<int of about {int(value.bit_length() * 0.30103)} digits>"
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if depth >= MAX_NESTING_DEPTH:
        return "<nested too deep>"
    try:
        if isinstance(value, Mapping):
            return {_printable_key(k): _printable(v, depth + 1) for k, v in list(value.items())}
        if isinstance(value, list | tuple | set | frozenset):
            return [_printable(v, depth + 1) for v in list(value)]
        return json_safe(value, "value")
    except Exception:
        return safe_repr(value)


def _printable_key(key: object) -> str:
    return str.__str__(key) if isinstance(key, str) else safe_repr(key)


class DeadLetterWriter:
    """
    Appends dead-letter lines from a background thread, so the event loop never waits for the disk.

    The thread is not a daemon: the interpreter waits for it to write what it was given before it exits. It ends
    by itself after `_IDLE` seconds without work (so an idle client holds no thread that would delay the exit) and
    starts again on the next line. Closing needs no executor, so it works at interpreter exit too.
    """

    def __init__(self, path: str | os.PathLike[str], max_backlog: int = MAX_BACKLOG) -> None:
        self.path = os.fspath(path)
        self._max_backlog = max_backlog
        try:
            # Opened now so that a bad path fails at construction; O_APPEND keeps whole lines whole even when
            # several processes (forked workers) append to the same file. 0600, and never through a link.
            self._fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise ConfigurationError(f"cannot open the dead-letter file {self.path!r}: {private_error(exc)}") from None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._pending = 0  # lines given and not yet written
        self._failures = 0
        self._inline = False  # no thread could be started: lines are written by whoever gives them
        self._late = 0  # lines given after close, not written
        self._held = 0  # outcomes given one by one, not yet taken by the writer (MAX_BACKLOG at most)
        self._behind = 0  # lines given while the backlog was full, not written
        self._behind_told = 0  # of those, how many the log has told of
        self._behind_at = -_LOST_EVERY  # monotonic time of the last log line about them
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()

    @staticmethod
    def wants(outcome: Outcome) -> bool:
        """
        Whether ``outcome`` belongs in the dead-letter file.
        """
        return outcome.status is OutcomeStatus.FAILED or outcome.reason in _REPLAYABLE_DROPS

    @property
    def pending(self) -> int:
        """
        Lines given to the writer and not yet written.
        """
        return self._pending

    @property
    def lost(self) -> int:
        """
        Lines not written: given while `MAX_BACKLOG` lines were waiting, refused by the disk, or given after close.
        """
        return self._behind + self._failures + self._late

    def write(self, outcome: Outcome) -> None:
        """
        Queue ``outcome``'s line (or count it lost, `MAX_BACKLOG` outcomes waiting); safe from any thread, never
        blocks.
        """
        self._give(outcome, 1)

    def write_entries(self, metas: Sequence[Meta], datas: Sequence[Data], reason: Reason, message: str) -> None:
        """
        Queue the lines of queued calls that all ended alike; the writer thread builds their calls and outcomes.
        """
        if metas:
            self._give((metas, datas, reason, message), len(metas))

    def _give(self, item: object, lines: int) -> None:
        with self._lock:
            if self._closed:
                if not self._late:  # once: calls after aclose() still get their outcomes, counters and logs
                    logger.error(
                        "the dead-letter file %s is closed (aclose() finished): calls made after it are not written",
                        self.path,
                    )
                self._late += lines
                return
            if isinstance(item, Outcome):
                if self._held >= self._max_backlog:
                    self._behind += lines
                    self._tell_behind()
                    return
                self._held += 1
            self._pending += lines
            self._queue.put(item)
            inline = not self._ensure_thread()
        if inline:
            self._write_queued()

    def _tell_behind(self) -> None:
        # Under the lock. The first loss at once, then at most one line per _LOST_EVERY seconds.
        now = time.monotonic()
        if now - self._behind_at < _LOST_EVERY:
            return
        logger.error(
            "the dead-letter file %s is %d lines behind (its limit): %d more lines were not written; the calls "
            "still have their outcomes (log, on_error, stats())",
            self.path,
            self._held,
            self._behind - self._behind_told,
        )
        self._behind_at, self._behind_told = now, self._behind

    def _ensure_thread(self) -> bool:
        """
        Start the writer thread if none runs (under the lock). False when no thread can be started: at interpreter
        exit Python 3.12 refuses new threads, and the lines are then written in the caller's thread instead.
        """
        if self._thread is None and not self._inline:
            thread = threading.Thread(target=self._run, name="rehook-dead-letter", daemon=False)
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self._inline = True
                return False
            self._thread = thread
        return not self._inline

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if self._write(item):
                return

    def _write_queued(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._write(self._queue.get_nowait())

    def _write(self, item: object) -> bool:
        """
        Write ``item`` and whatever else is queued by now, in batches; True once the file is closed.
        """
        batch: list[Outcome] = []
        while True:
            if item is _STOP:
                self._append(batch)
                os.close(self._fd)
                self._finished.set_result(None)
                return True
            if isinstance(item, Outcome):
                with self._lock:
                    self._held -= 1
                batch.append(item)
            else:
                assert isinstance(item, tuple)
                metas, datas, reason, message = item
                for meta, data in zip(metas, datas, strict=True):
                    batch.append(outcome_for(entry_call(meta, data), reason, message))
                    if len(batch) >= _BATCH:
                        self._append(batch)
            if len(batch) >= _BATCH:
                self._append(batch)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        self._append(batch)
        return False

    def _append(self, batch: list[Outcome]) -> None:
        """
        Write ``batch``'s lines with one write and empty it.
        """
        if not batch:
            return
        try:
            os.write(self._fd, b"".join([outcome_line(outcome) for outcome in batch]))
        except Exception as exc:  # a full disk must not kill the writer: say how much is lost
            self._failures += len(batch)
            logger.error(
                "could not write to the dead-letter file %s (%s); %d lines lost so far, the last: %s",
                self.path,
                exc,
                self._failures,
                batch[-1].message,
            )
        with self._lock:
            self._pending -= len(batch)
        batch.clear()

    def close(self, timeout: float | None = None) -> int:
        """
        Write what is queued and close the file, waiting at most ``timeout`` seconds (blocks).

        Returns:
            How many lines were still being written when the wait ended (0: all on disk). The writer goes on
            writing them; the interpreter waits for it before it exits.
        """
        finished = self.close_nowait()
        with contextlib.suppress(concurrent.futures.TimeoutError):
            finished.result(timeout)
        return self._pending

    def close_nowait(self) -> concurrent.futures.Future[None]:
        """
        Ask the writer to write what it has and close the file; the future is done once it has.
        """
        with self._lock:
            inline = False
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
                inline = not self._ensure_thread()
        if inline:
            self._write_queued()
        return self._finished

    async def aclose(self, deadline: float | None) -> int:
        """
        `close`, awaited on the running loop until ``deadline`` (its clock) without blocking it.

        Returns:
            How many lines were still being written at the deadline.
        """
        finished = asyncio.wrap_future(self.close_nowait())
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(finished), timeout)
        return self._pending
