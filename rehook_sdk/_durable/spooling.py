"""
The client's side of a spool (``spool=``): what the caller's path, the senders and the shutdown tell the spool, and
what the spool hands back to the event loop (marks committed, calls adopted).

The in-memory queue stays the path calls are delivered from. The spool keeps a durable copy of each accepted call
until its outcome, so that another process, or the next start, delivers what this one did not:

- accepted: appended in memory, committed by the spool's writer thread in groups;
- before its first request: marked as "a request may be on the wire" (with its messageId), and the request waits
  for that commit, so that whoever adopts the call after a crash knows Rehook may have it;
- ended: delivered or dropped, its row is deleted; failed, it is kept for the operator;
- left at a shutdown deadline: kept and let go, so the next client on the spool takes it at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

from .._core.entry import Data, Meta, entry_call
from .._core.outcome import Outcome, OutcomeStatus
from .spools import (
    Adopted,
    PostgresSpool,
    Replay,
    SpoolError,
    SpoolWriter,
    SqliteSpool,
    encode_record,
    failure_text,
    is_postgres_url,
)

__all__ = ["Spooling"]

logger = logging.getLogger("rehook_sdk")

# Calls adopted at a time: they wait in the in-memory queue like any other.
ADOPT_BATCH = 1_000


def _record(entry: tuple[Meta, Data]) -> str:
    meta, data = entry
    return encode_record(entry_call(meta, data))


class TakenOver(Exception):
    """
    Another process took the call over from the spool (this one was presumed dead): it is that one's to send.
    """


class Spooling:
    """
    One client's spool, on the loop the client runs on.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        app: str,
        take_unidentified: bool,
        retention: float | None,
        lease: float,
        group_interval: float,
        synchronous: Literal["NORMAL", "FULL"],
        max_bytes: int,
    ) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._marks: dict[int, asyncio.Future[None]] = {}
        self.lease = lease
        self.resent: set[int] = set()  # tokens of adopted calls a request may already have reached Rehook for
        settings: dict[str, Any] = {
            "app": app,
            "take_unidentified": take_unidentified,
            "retention": retention,
            "lease": lease,
            "group_interval": group_interval,
            "max_bytes": max_bytes,
            "on_unwritable": self._unwritable,
            "on_marked": self._marked_in_thread,
            "wait": False,  # opened by the writer thread: a client's start does not block its loop on it
        }
        self.spool: SpoolWriter[tuple[Meta, Data], Any]
        if isinstance(path, str) and is_postgres_url(path):
            self.spool = PostgresSpool(path, _record, **settings)  # synchronous: the server's synchronous_commit
        else:
            self.spool = SqliteSpool(path, _record, synchronous=synchronous, **settings)
        self.path = self.spool.where  # for messages (a URL without its password)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def opened(self, timeout: float) -> None:
        """
        Until the spool is open.

        Raises:
            SpoolError: it cannot be opened, or did not open within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(asyncio.wrap_future(self.spool.opened))  # the writer's future stays
        except TimeoutError:
            raise SpoolError(f"{self.path}: the spool did not open within {timeout} s (locked?)") from None

    # -- the caller's path ------------------------------------------------------------------------------

    def accepted(self, meta: Meta, data: Data) -> None:
        self.spool.append(meta[0], (meta, data))

    # -- the senders ------------------------------------------------------------------------------------

    async def before_request(self, token: int, message_id: str) -> None:
        """
        Until the spool has recorded that a request for ``token`` is about to go out (or failed to: the call is
        still sent, only not marked).

        Raises:
            TakenOver: another process took the call over meanwhile: do not send it.
        """
        loop = asyncio.get_running_loop()
        waiter = self._marks.get(token)
        if waiter is None:
            waiter = self._marks[token] = loop.create_future()
            self.spool.mark_sending(token, message_id)
        try:
            await waiter
        finally:
            self._marks.pop(token, None)

    def _marked_in_thread(self, tokens: list[int], ok: bool, lost: list[int]) -> None:
        # The spool's writer thread, once per commit that held marks: one hop to the loop for all of them.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._marked, tokens, ok, lost)

    def _marked(self, tokens: list[int], ok: bool, lost: list[int]) -> None:
        if not ok:
            logger.warning("spool %s: %d calls are sent without their mark on disk", self.path, len(tokens))
        marks = self._marks
        taken = set(lost)
        for token in tokens:
            waiter = marks.get(token)
            if waiter is None or waiter.done() or waiter.get_loop().is_closed():
                continue  # (a waiter of a loop that closed meanwhile has no sender left)
            if token in taken:
                waiter.set_exception(TakenOver())
            else:
                waiter.set_result(None)

    def ended(self, token: int, outcome: Outcome) -> None:
        """
        ``token``'s call ended: its row goes, unless it failed (then it is kept with the reason).
        """
        self.resent.discard(token)
        failed = None
        if outcome.status is OutcomeStatus.FAILED and outcome.reason is not None:
            failed = failure_text(
                outcome.reason.value,
                outcome.message,
                maybe_delivered=outcome.maybe_delivered,
                attempts=outcome.attempts,
                http_status=outcome.http_status,
            )
        self._settle(token, failed)

    def delivered(self, token: int) -> None:
        self.resent.discard(token)
        self._settle(token, None)

    def _settle(self, token: int, failed: str | None) -> None:
        # Closed (a call ending after aclose() let the spool go) or forked: nothing to record.
        with contextlib.suppress(SpoolError):
            self.spool.settle(token, failed=failed)

    def _unwritable(self, token: int, why: str) -> None:
        # Writer thread. The call is still delivered from memory (the sender drops it as invalid_payload).
        logger.debug("spool %s: call %d is not spooled: %s", self.path, token, why)

    # -- adoption ---------------------------------------------------------------------------------------

    def adopt(
        self, limit: int, tokens: Callable[[], int], *, replay: Replay | None = None
    ) -> concurrent.futures.Future[list[tuple[int, Adopted]]]:
        return self.spool.adopt(limit, tokens, replay=replay)

    # -- shutdown ---------------------------------------------------------------------------------------

    def close(self, timeout: float | None) -> bool:
        """
        Commit what is appended and let go of the calls still in the spool; whether that finished in time.
        """
        for waiter in self._marks.values():
            if not waiter.done():
                waiter.cancel()
        return self.spool.close(release=True, timeout=timeout)
