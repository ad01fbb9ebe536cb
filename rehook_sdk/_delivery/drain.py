"""
The drain at a client's end: deliver what is queued until a deadline, end what is left over in bulk, and let the
dead-letter writer finish, everything inside the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .._core.entry import Data, Meta
from .._core.outcome import OutcomeStatus, Reason
from .._durable.deadletter import MAX_BACKLOG, DeadLetterWriter
from .._transports import Attempt
from .outcomes import Outcomes
from .queue import EventQueue
from .reachability import Reachability

__all__ = ["close_dead_letter", "end_left_over", "reserve", "until_idle"]

logger = logging.getLogger("rehook_sdk")

# Chunks of queued calls (256 each) ended per loop iteration at the deadline, and what ending one call may cost
# (~0.3 us when nothing observes it, ~2-5 us with a handle kept or on_error set; 12 us leaves room for a slow
# handler), and what writing its dead-letter line costs the writer thread (~7.5 us).
_END_CHUNKS = 8
_END_COST = 12e-6
_LINE_COST = 10e-6


def reserve(calls: int, remaining: float, dead_letter: bool) -> float:
    """
    Seconds to keep, before a deadline ``remaining`` seconds away, for ending ``calls`` left over and writing their
    dead-letter lines: at most half of what remains.
    """
    fixed = 0.005 + 2 * sys.getswitchinterval()  # cancelling the senders, closing the session; winning the GIL back
    per_call = _END_COST + (_LINE_COST if dead_letter else 0.0)
    return min(fixed + calls * per_call, max(0.0, remaining) / 2)


async def until_idle(outcomes: Outcomes, gate: Reachability, until: float | None) -> None:
    """
    Deliver until nothing is left or the loop's clock reaches ``until``; or, while Rehook is unreachable, until
    one more probe fails to connect (waiting out the whole deadline would only delay the exit).
    """
    loop = asyncio.get_running_loop()
    idle = outcomes.idle = loop.create_future()

    async def drained() -> None:
        while True:
            if not gate.down:
                await asyncio.shield(idle)
                return
            probe = gate.watch()
            either: list[asyncio.Future[Any]] = [idle, probe]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if idle.done() or (probe.done() and isinstance(probe.result(), Attempt)):
                probe.cancel()
                return

    timeout = None if until is None else max(0.0, until - loop.time())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drained(), timeout)
    outcomes.idle = None


async def end_left_over(queue: EventQueue, outcomes: Outcomes) -> None:
    """
    End what the drain left (queued, and in flight with no sender) as ``shutdown_timeout``, or as ``spooled`` with
    a spool; one log line per reason.
    """
    spooling = outcomes.spooling
    message = "aclose() deadline passed before this call was sent"
    if spooling is not None:
        message += f"; it stays in the spool {spooling.path} for the next client on it"
    chunks = queue.take_chunks()
    outcomes.end_in_flight(message)
    ended = await _end_chunks(outcomes, chunks, message)
    if spooling is None:
        outcomes.log.note_many(OutcomeStatus.FAILED, Reason.SHUTDOWN_TIMEOUT, ended, message)
    else:
        outcomes.log.note_many(OutcomeStatus.DROPPED, Reason.SPOOLED, ended, message)
    outcomes.log.flush()


async def _end_chunks(outcomes: Outcomes, chunks: list[tuple[Sequence[Meta], Sequence[Data]]], message: str) -> int:
    """
    End queued calls chunk by chunk, yielding to the loop every few chunks; how many were ended.
    """
    chunks.reverse()
    ended = 0
    while chunks:
        # Popped, so that each chunk is freed once ended: a whole backlog freed at once holds the loop.
        metas, datas = chunks.pop()
        outcomes.end_entries(metas, datas, message)
        ended += len(metas)
        del metas, datas
        if len(chunks) % _END_CHUNKS == 0:
            await asyncio.sleep(0)  # a backlog of 100,000 must not hold the loop in one stretch
    return ended


async def close_dead_letter(dead_letter: DeadLetterWriter, deadline: float | None) -> None:
    """
    Let the dead-letter writer finish by ``deadline``, and warn of lines lost or still being written.
    """
    # Stop waiting for the writer thread a little early: at the deadline this thread may still have to win the GIL
    # back from it, which takes up to a switch interval or two.
    margin = 2 * sys.getswitchinterval()
    unwritten = await dead_letter.aclose(None if deadline is None else deadline - margin)
    if dead_letter.lost:
        logger.warning(
            "%d dead-letter lines were not written to %s (the writer was %d lines behind, or the disk refused them): "
            "stats().dead_letter_lost",
            dead_letter.lost,
            dead_letter.path,
            MAX_BACKLOG,
        )
    if unwritten:
        logger.warning(
            "aclose() returned at its deadline with %d dead-letter lines still being written to %s; a background "
            "thread goes on writing them, and the interpreter waits for it before it exits",
            unwritten,
            dead_letter.path,
        )
