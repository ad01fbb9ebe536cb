"""
Counters of what became of every call, and the `Stats` snapshot users read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .._core.outcome import Outcome, OutcomeStatus, Reason

__all__ = ["Counters", "Stats"]


@attrs.frozen(kw_only=True, repr=False)
class Stats:
    """
    A snapshot of a client's counters since it was made.

    ``accepted == delivered + dropped_total + failed_total + in_queue + in_flight`` holds in every snapshot
    taken on the client's event loop.

    Attributes:
        accepted: Calls that returned a handle (every call that did not raise).
        delivered: Calls Rehook answered 2xx.
        dropped: Dropped calls by reason.
        failed: Failed calls by reason.
        retried: Retries made (an event retried twice counts 2).
        requests: HTTP requests made to Rehook (every attempt of every call).
        in_queue: Calls waiting for a sender.
        in_flight: Calls a sender is working on (sending, or sleeping before a retry).
        adopted: With ``spool=``: calls this client took over from the spool (left by an earlier client, or by a
            process that died); counted in ``accepted``.
        resent: Of those, calls a request may already have reached Rehook for before that process died, sent
            again: Rehook may have them twice.
        spooled: With ``spool=``: calls of this client's application in the spool not yet ended, every process's,
            as last counted (the spool counts its file at each heartbeat and follows this process's own commits).
        unspooled: With ``spool=``: calls this client accepted that are not committed to the spool yet: what a crash
            now would lose. Usually those of the last ``spool_interval``; code that does not yield to the event
            loop runs ahead of the spool's thread (see Durable delivery).
        dead_letter_lost: With ``dead_letter=``: lines not written to it (its writer was 10,000 lines behind, the
            disk refused them, or they came after close); their calls' outcomes were still reported.
    """

    accepted: int
    delivered: int
    dropped: Mapping[Reason, int]
    failed: Mapping[Reason, int]
    retried: int
    in_queue: int
    in_flight: int
    requests: int = 0
    adopted: int = 0
    resent: int = 0
    spooled: int = 0
    unspooled: int = 0
    dead_letter_lost: int = 0

    def __repr__(self) -> str:
        # Valid Python: eval() with Stats and Reason in scope gives an equal snapshot.
        def by_reason(counts: Mapping[Reason, int]) -> str:
            return "{" + ", ".join(f"Reason.{reason.name}: {n}" for reason, n in sorted(counts.items())) + "}"

        return (
            f"Stats(accepted={self.accepted}, delivered={self.delivered}, dropped={by_reason(self.dropped)}, "
            f"failed={by_reason(self.failed)}, retried={self.retried}, in_queue={self.in_queue}, "
            f"in_flight={self.in_flight}, requests={self.requests}, adopted={self.adopted}, resent={self.resent}, "
            f"spooled={self.spooled}, unspooled={self.unspooled}, dead_letter_lost={self.dead_letter_lost})"
        )

    def as_dict(self) -> dict[str, Any]:
        """
        The snapshot as plain JSON-ready data, reasons by their names (``{"missing_user_id": 1}``), totals included:
        for metrics exporters, health endpoints and logs.
        """
        return {
            "accepted": self.accepted,
            "delivered": self.delivered,
            "dropped": {reason.value: n for reason, n in sorted(self.dropped.items())},
            "failed": {reason.value: n for reason, n in sorted(self.failed.items())},
            "dropped_total": self.dropped_total,
            "failed_total": self.failed_total,
            "retried": self.retried,
            "in_queue": self.in_queue,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "adopted": self.adopted,
            "resent": self.resent,
            "spooled": self.spooled,
            "unspooled": self.unspooled,
            "dead_letter_lost": self.dead_letter_lost,
        }

    @property
    def dropped_total(self) -> int:
        """
        All dropped calls.
        """
        return sum(self.dropped.values())

    @property
    def failed_total(self) -> int:
        """
        All failed calls.
        """
        return sum(self.failed.values())


class Counters:
    """
    The live counters; ``record`` may be called from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = 0
        self.retried = 0
        self.requests = 0  # written only by the senders, on the client's loop
        self.adopted = 0  # written only on the client's loop, as are the two below
        self.resent = 0
        self._dropped: dict[Reason, int] = {}
        self._failed: dict[Reason, int] = {}

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome.status is OutcomeStatus.DELIVERED:
                self.delivered += 1
                return
            assert outcome.reason is not None
            counts = self._failed if outcome.status is OutcomeStatus.FAILED else self._dropped
            counts[outcome.reason] = counts.get(outcome.reason, 0) + 1

    def record_delivered(self) -> None:
        with self._lock:
            self.delivered += 1

    def record_many(self, status: OutcomeStatus, reason: Reason, count: int) -> None:
        """
        Count ``count`` calls that ended alike, at once.
        """
        if count:
            with self._lock:
                counts = self._failed if status is OutcomeStatus.FAILED else self._dropped
                counts[reason] = counts.get(reason, 0) + count

    def count(self, reason: Reason) -> int:
        """
        Calls ended (dropped or failed) with ``reason`` so far.
        """
        with self._lock:
            return self._failed.get(reason, 0) + self._dropped.get(reason, 0)

    def retry(self) -> None:
        with self._lock:
            self.retried += 1

    def snapshot(
        self, *, in_queue: int, in_flight: int, spooled: int = 0, unspooled: int = 0, dead_letter_lost: int = 0
    ) -> Stats:
        with self._lock:
            dropped = dict(self._dropped)
            failed = dict(self._failed)
            resolved = self.delivered + sum(dropped.values()) + sum(failed.values())
            return Stats(
                accepted=resolved + in_queue + in_flight,
                delivered=self.delivered,
                dropped=MappingProxyType(dropped),
                failed=MappingProxyType(failed),
                retried=self.retried,
                in_queue=in_queue,
                in_flight=in_flight,
                requests=self.requests,
                adopted=self.adopted,
                resent=self.resent,
                spooled=spooled,
                unspooled=unspooled,
                dead_letter_lost=dead_letter_lost,
            )
