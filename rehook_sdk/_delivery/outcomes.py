"""
The outcomes ledger: each call ends here exactly once, counted, logged, written to the dead letter, given to
``on_error``, ended in the spool and handed to its handle, waiters and callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from time import monotonic

import attrs

from .._core.entry import Data, Meta, entry_call
from .._core.outcome import Outcome, OutcomeStatus, Reason, outcome_for
from .._core.types import Call
from .._durable.deadletter import DeadLetterWriter
from .._durable.spooling import Spooling
from .._report.metrics import ClientMetrics
from .._report.outcome_log import OutcomeLog
from .._report.stats import Counters
from .handle import Board
from .queue import EventQueue

__all__ = ["Outcomes"]

logger = logging.getLogger("rehook_sdk")


class Outcomes:
    """
    Ends the calls of one client. ``in_flight`` holds the calls the senders have taken off the queue.
    """

    def __init__(
        self,
        queue: EventQueue,
        on_error: Callable[[Outcome], object] | None,
        dead_letter: DeadLetterWriter | None,
    ) -> None:
        self.board = Board()
        self.counters = Counters()
        self.log = OutcomeLog()
        self.in_flight: dict[int, Call] = {}  # token -> call, for the calls the senders hold
        self.on_error = on_error
        self.dead_letter = dead_letter
        self.spooling: Spooling | None = None  # set when the spool opens
        self.metrics: ClientMetrics | None = None
        self.idle: asyncio.Future[None] | None = None  # set by a drain: done when nothing is left to deliver
        self._queue = queue

    def finish(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Record, log and report ``outcome``, then hand it to the board (handle, waiters and callback). Once per call.
        """
        outcome = self._final(token, outcome)  # what is logged is what the handle and on_error get
        if outcome.status is not OutcomeStatus.DELIVERED:
            # Rejected without a request: a 401 came earlier and was logged once, loudly; these are quiet.
            quiet = outcome.reason is Reason.REJECTED and outcome.attempts == 0
            self.log.note(outcome, level=logging.DEBUG if quiet else logging.WARNING)
        self._report(token, call, outcome)

    def end(self, token: int, call: Call, outcome: Outcome, accepted: float) -> None:
        """
        `finish`, and time the call from ``accepted`` (the monotonic clock when the client times calls, else 0).
        """
        self.finish(token, call, outcome)
        if accepted and self.metrics is not None:
            self.metrics.call_ended(outcome, monotonic() - accepted)

    def settle_quietly(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Count ``outcome`` and hand it to the board, nothing else: no log line, dead-letter line or on_error (for a
        disabled client, whose calls are dropped on purpose).
        """
        self.counters.record(outcome)
        self.board.resolve(token, call, outcome)

    def delivered_unobserved(self, token: int, accepted: float) -> None:
        """
        End a delivered call nothing can observe (no handle kept, no callback): counted, and no `Outcome` built for
        nobody (delivered calls have no log line, dead-letter line or on_error call).
        """
        self.in_flight.pop(token, None)
        if self.spooling is not None:
            self.spooling.delivered(token)
        self.counters.record_delivered()
        self.board.resolve_unobserved(token)
        self.check_idle()
        if accepted and self.metrics is not None:
            self.metrics.call_delivered(monotonic() - accepted)

    def end_in_flight(self, message: str) -> None:
        """
        End, one by one, calls still marked in flight whose sender is gone.
        """
        stranded = list(self.in_flight.items())
        self.in_flight.clear()
        for token, call in stranded:
            outcome = outcome_for(
                call, Reason.SHUTDOWN_TIMEOUT, message, message_id=call.message_id, maybe_delivered=True
            )
            self._report(token, call, self._final(token, outcome))

    def end_entries(self, metas: Sequence[Meta], datas: Sequence[Data], message: str) -> None:
        """
        End one chunk of queued calls as ``shutdown_timeout``. Calls nobody can observe (no handle kept, no callback,
        no on_error) are counted and dead-lettered in bulk, without building their outcomes here.

        The dead-letter writer gets the queue's own sealed chunks (or two lists of them) rather than one tuple per
        call: small tuples waiting for the writer in their thousands are promoted by the collector and set off full
        collections on the loop.
        """
        board = self.board
        everyone = self.on_error is not None  # on_error gets each call's outcome
        if not everyone and not any(board.watched(meta[0]) for meta in metas):
            kept_metas, kept_datas = metas, datas
        else:
            kept_metas, kept_datas = [], []
            for meta, data in zip(metas, datas, strict=True):
                if everyone or board.watched(meta[0]):
                    call = entry_call(meta, data)
                    outcome = outcome_for(call, Reason.SHUTDOWN_TIMEOUT, message)
                    self._report(meta[0], call, self._final(meta[0], outcome))
                else:
                    kept_metas.append(meta)
                    kept_datas.append(data)
        board.resolve_unobserved_many(meta[0] for meta in kept_metas)
        if self.spooling is not None:  # they stay in the spool, for the next client on it
            self.counters.record_many(OutcomeStatus.DROPPED, Reason.SPOOLED, len(kept_metas))
            return
        self.counters.record_many(OutcomeStatus.FAILED, Reason.SHUTDOWN_TIMEOUT, len(kept_metas))
        if self.dead_letter is not None:
            self.dead_letter.write_entries(kept_metas, kept_datas, Reason.SHUTDOWN_TIMEOUT, message)

    def check_idle(self) -> None:
        """
        Tell a drain waiting for it that nothing is left to deliver.
        """
        idle = self.idle
        if idle is not None and not self.in_flight and not len(self._queue) and not idle.done():
            idle.set_result(None)

    def _final(self, token: int, outcome: Outcome) -> Outcome:
        """
        The call's outcome, as the spool makes it (see `_spooled`); once per call, before it is logged or reported.
        """
        return outcome if self.spooling is None else self._spooled(token, outcome)

    def _report(self, token: int, call: Call, outcome: Outcome) -> None:
        """
        Count and report a final outcome (see `_final`), and hand it to the board.
        """
        self.in_flight.pop(token, None)
        self.counters.record(outcome)
        if outcome.status is not OutcomeStatus.DELIVERED:
            if self.dead_letter is not None and self.dead_letter.wants(outcome):
                self.dead_letter.write(outcome)
            if self.on_error is not None:
                try:
                    self.on_error(outcome)
                except Exception:
                    logger.exception("on_error raised; the outcome is unchanged")
        self.board.resolve(token, call, outcome)
        self.check_idle()

    def _spooled(self, token: int, outcome: Outcome) -> Outcome:
        """
        What the spool makes of ``outcome``: a call the client stopped before it was delivered stays in the spool
        (``spooled``); any other outcome ends its row. A re-sent adopted call says so.
        """
        spooling = self.spooling
        assert spooling is not None
        if token in spooling.resent:
            outcome = attrs.evolve(outcome, resent=True)
        if outcome.reason is Reason.SHUTDOWN_TIMEOUT:
            spooling.resent.discard(token)
            message = f"{outcome.message}; it stays in the spool {spooling.path} for the next client on it"
            return attrs.evolve(
                outcome, status=OutcomeStatus.DROPPED, reason=Reason.SPOOLED, message=message, maybe_delivered=False
            )
        spooling.ended(token, outcome)
        return outcome
