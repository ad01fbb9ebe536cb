"""
Intake: admits a call the client accepted, or ends it at once: dropped on purpose by a disabled client, spooled
then queued, or refused because the spool or the queue is full or the client is closed.
"""

from __future__ import annotations

from typing import Any

from .._core.entry import Meta
from .._core.outcome import Reason, outcome_for
from .._durable.spooling import Spooling
from .handle import EventHandle
from .outcomes import Outcomes
from .queue import EventQueue

__all__ = ["DISABLED_MESSAGE", "Intake"]

DISABLED_MESSAGE = "the client is disabled (enabled=False or REHOOK_DISABLED): nothing is sent"


class Intake:
    """
    Where one client's calls enter its delivery engine. Each method ends with the call queued or ended.
    """

    def __init__(self, queue: EventQueue, outcomes: Outcomes) -> None:
        self.spooling: Spooling | None = None  # set when the spool opens
        self._queue = queue
        self._outcomes = outcomes

    def admit(self, handle: EventHandle, meta: Meta, data: dict[str, Any] | None) -> None:
        """
        Queue a call from a task of the engine's running loop (spooled first, with a spool): the hot path.
        """
        spooling = self.spooling
        if spooling is not None:  # `admit_from` written out: each Python call costs ~0.1 us here
            spool = spooling.spool
            if spool.full:
                self.refuse(handle, meta, Reason.SPOOL_FULL)
                return
            spool.append(meta[0], (meta, data))
        if not self._queue.put_on_loop(meta, data):
            self.refuse(handle, meta, Reason.QUEUE_FULL)  # which ends its row too

    def admit_from(self, handle: EventHandle, meta: Meta, data: dict[str, Any] | None, on_loop: bool) -> None:
        """
        Queue a call from another thread, or before the engine has a loop (``on_loop``: from the engine's loop).

        Spooled before it is queued: a sender may end it at once, and its row must exist in the spool's order of
        operations before its end does.
        """
        spooling = self.spooling
        if spooling is not None:
            spool = spooling.spool
            if spool.full:
                self.refuse(handle, meta, Reason.SPOOL_FULL)
                return
            spool.append(meta[0], (meta, data))
        queue = self._queue
        if not (queue.put_on_loop(meta, data) if on_loop else queue.put_threadsafe(meta, data)):
            self.refuse(handle, meta, Reason.QUEUE_FULL)

    def disabled(self, handle: EventHandle, meta: Meta) -> None:
        """
        End a call of a disabled client as dropped, quietly: counted and resolved, nothing else.
        """
        call = handle.call
        outcome = outcome_for(call, Reason.DISABLED, DISABLED_MESSAGE, message_id=call.message_id)
        self._outcomes.settle_quietly(meta[0], call, outcome)

    def refuse(self, handle: EventHandle, meta: Meta, reason: Reason) -> None:
        """
        End a call that cannot be queued (``queue_full``, ``spool_full``, ``client_closed``), with what is full.
        """
        if reason is Reason.QUEUE_FULL:
            message = f"the queue holds {self._queue.maxsize} calls already (max_queue_size)"
        elif reason is Reason.SPOOL_FULL:
            spooling = self.spooling
            assert spooling is not None
            spool = spooling.spool
            if spool.problem is not None:
                message = f"the spool {spooling.path} cannot be written ({spool.problem}) and calls wait for it"
            else:
                message = f"the spool {spooling.path} holds {spool.bytes:,} bytes of calls (max_spool_bytes)"
        else:
            message = "the client was closed (aclose()) before this call"
        call = handle.call
        self._outcomes.finish(meta[0], call, outcome_for(call, reason, message, message_id=call.message_id))
