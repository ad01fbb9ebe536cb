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

import datetime as dt
import json
import logging
import math
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any

from ._constants import MAX_NESTING_DEPTH
from ._encoding import PayloadError, json_safe, safe_repr
from ._event import call_to_segment
from ._exceptions import ConfigurationError
from ._outcome import Outcome, OutcomeStatus, Reason

__all__ = ["DEAD_LETTER_VERSION", "DeadLetterWriter"]

logger = logging.getLogger("rehook_sdk")

DEAD_LETTER_VERSION = 1
_REPLAYABLE_DROPS = frozenset({Reason.QUEUE_FULL, Reason.CLIENT_CLOSED})
_STOP = object()


def _line(outcome: Outcome) -> bytes:
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
        text = json.dumps(json_safe(record, "record"), ensure_ascii=False, separators=(",", ":"))
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
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            # Opened now so that a bad path fails at construction; O_APPEND keeps whole lines whole even when
            # several processes (forked workers) append to the same file. 0600: it holds users' data.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise ConfigurationError(f"cannot open the dead-letter file {self.path!r}: {exc.strerror}") from None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def wants(outcome: Outcome) -> bool:
        """
        Whether ``outcome`` belongs in the dead-letter file.
        """
        return outcome.status is OutcomeStatus.FAILED or outcome.reason in _REPLAYABLE_DROPS

    def write(self, outcome: Outcome) -> None:
        """
        Queue ``outcome``'s line; safe from any thread, never blocks.
        """
        if self._closed:
            logger.error("rehook_sdk: dead-letter file already closed; not written: %s", outcome.message)
            return
        self._queue.put(outcome)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="rehook-dead-letter", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        failures = 0
        while (item := self._queue.get()) is not _STOP:
            assert isinstance(item, Outcome)
            try:
                os.write(self._fd, _line(item))
            except Exception as exc:  # a full disk must not kill the writer: say how much is lost
                failures += 1
                logger.error(
                    "rehook_sdk: could not write to the dead-letter file %s (%s); %d lines lost so far: %s",
                    self.path,
                    exc,
                    failures,
                    item.message,
                )

    def close(self) -> None:
        """
        Write what is queued and close the file (blocks until done).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
        os.close(self._fd)
