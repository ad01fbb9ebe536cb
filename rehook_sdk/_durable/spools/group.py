"""
One group of a spool's ops, sorted by what its transaction does with them: within a group, a call appended and
settled never reaches the database, a mark on a call not yet written is written with it, and the rows the group
deletes, fails or marks are changed with one statement of each kind.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from ..._core.encoding import PayloadError
from .base import Replay, SpoolState

__all__ = ["Group"]


class Group:
    """
    The ops of one group, sorted: what to insert, mark, end, adopt, answer, and whether the group closes the spool.

    Args:
        ops: The ops, in the order they were made (``("append", token, item)``, ``("settle", token, failed)``,
            ``("mark", token, message_id)``, ``("adopt", limit, tokens, reply, replay)``, ``("sync", reply)``,
            ``("query", run, reply)``, ``("close", release)``).
        stored: The tokens whose rows are in the database (token -> (row id, record bytes)).
        encode: Makes an appended item's record; `PayloadError` means it cannot be stored.
    """

    __slots__ = (
        "adopts",
        "closing",
        "ends",
        "inserts",
        "marked",
        "marks",
        "queries",
        "skipped",
        "synced",
        "unstorable",
    )

    def __init__(self, ops: list[tuple[Any, ...]], stored: dict[int, tuple[int, int]], encode: Callable[[Any], str]):
        settled = {op[1] for op in ops if op[0] == "settle" and op[2] is None}
        self.inserts: dict[int, list[Any]] = {}  # token -> [record, state, message_id, reason]
        self.marks: dict[int, str] = {}  # token of a stored row -> message_id
        self.ends: dict[int, str | None] = {}  # token of a stored row -> None (delete) or the reason it failed
        self.adopts: list[tuple[int, Callable[[], int], concurrent.futures.Future[Any], Replay | None]] = []
        self.synced: list[concurrent.futures.Future[None]] = []
        self.queries: list[tuple[Callable[[Any], Any], concurrent.futures.Future[Any]]] = []
        self.marked: list[int] = []  # every marked token, stored or not: on_marked hears of each
        self.unstorable: list[tuple[int, str]] = []  # (token, why) of appends that cannot be stored
        self.skipped = 0  # appends settled within the group: never written
        self.closing: bool | None = None  # a close in the group: whether it lets go of this owner's calls
        for op in ops:
            kind = op[0]
            if kind == "append":
                self._append(op[1], op[2], settled, encode)
            elif kind == "mark":
                self._mark(op[1], op[2], stored)
            elif kind == "settle":
                self._settle(op[1], op[2], stored)
            elif kind == "adopt":
                self.adopts.append((op[1], op[2], op[3], op[4]))
            elif kind == "sync":
                self.synced.append(op[1])
            elif kind == "query":
                self.queries.append((op[1], op[2]))
            else:
                self.closing = bool(op[1])

    def _append(self, token: int, item: Any, settled: set[int], encode: Callable[[Any], str]) -> None:
        if token in settled:
            self.skipped += 1
            return
        try:
            self.inserts[token] = [encode(item), int(SpoolState.QUEUED), None, None]
        except PayloadError as exc:
            self.unstorable.append((token, str(exc)))

    def _mark(self, token: int, message_id: str, stored: dict[int, tuple[int, int]]) -> None:
        self.marked.append(token)
        pending = self.inserts.get(token)
        if pending is not None:
            pending[1:3] = [int(SpoolState.SENDING), message_id]
        elif token in stored:
            self.marks[token] = message_id

    def _settle(self, token: int, failed: str | None, stored: dict[int, tuple[int, int]]) -> None:
        pending = self.inserts.get(token)
        if pending is not None:  # failed within its group: stored as failed at once
            pending[1], pending[3] = int(SpoolState.FAILED), failed
        elif token in stored:
            self.marks.pop(token, None)
            self.ends[token] = failed
