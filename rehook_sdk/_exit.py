"""
Interpreter exit: every client that still holds calls drains them for its ``atexit_timeout``, and what is still
left is reported with a `RuntimeWarning` (shown by Python's default warning filters, unlike `ResourceWarning`).

One ``atexit`` hook, registered when rehook_sdk is imported: hooks run last-registered first, so a user's own
exit hooks (registered later) may still make calls before this one drains. It holds three kinds of drains:

- clients the user still references (weakly: holding them here must not keep them alive);
- started `SyncRehookClient`\\ s, strongly until ``close()``: their thread is a daemon, and a client kept only in a
  local variable would otherwise be collected and its drain die with the interpreter;
- the delivery engines of async clients collected with calls that no running loop will send (never started, or their
  loop closed without ``aclose()``), strongly.

Nothing here uses machinery that is gone at exit: no executor (``asyncio.to_thread`` cannot start at exit), no
new ``atexit`` registration.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import warnings
import weakref
from typing import Protocol

from ._core import exiting
from ._report.outcome_log import calls

__all__ = ["ExitDrain", "hold", "release", "watch"]

logger = logging.getLogger("rehook_sdk")


class ExitDrain(Protocol):
    """
    Something that can deliver what it holds at exit.
    """

    def _drain_at_exit(self) -> tuple[int, str | None]:
        """
        Deliver what is left, bounded by its own timeout; blocks.

        Returns:
            How many calls were not delivered for lack of time, and the dead-letter file they went to (if any).
        """
        ...


_lock = threading.Lock()
_watched: weakref.WeakSet[ExitDrain] = weakref.WeakSet()
_held: dict[int, ExitDrain] = {}


def watch(drain: ExitDrain) -> None:
    """
    Drain ``drain`` at exit if it still exists then.
    """
    _watched.add(drain)


def hold(drain: ExitDrain) -> None:
    """
    Drain ``drain`` at exit, keeping it alive until then (or until `release`): a started sync client, or a
    collected client's leftovers.
    """
    with _lock:
        _held[id(drain)] = drain


def release(drain: ExitDrain) -> None:
    """
    ``drain`` has nothing left for the exit (it was closed).
    """
    with _lock:
        _held.pop(id(drain), None)
    _watched.discard(drain)


def _drain_all() -> None:
    exiting.draining = True
    with _lock:
        drains = [*_held.values(), *(d for d in list(_watched) if id(d) not in _held)]
        _held.clear()
    for drain in drains:
        try:
            lost, dead_letter = drain._drain_at_exit()
        except Exception:  # one client's trouble must not keep the others from draining
            logger.exception("draining a client at interpreter exit failed")
            continue
        if lost:
            where = f"; they are in the dead-letter file {dead_letter}" if dead_letter else ""
            # At exit nobody is left to read outcomes, and logging may not be configured: say it where it is seen.
            warnings.warn(
                f"rehook_sdk: {calls(lost)} {'was' if lost == 1 else 'were'} not delivered before the interpreter "
                f"exited{where}. Close the "
                "client (aclose() or close()) with a longer timeout, or raise atexit_timeout.",
                RuntimeWarning,
                stacklevel=1,
            )


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork: the child starts with a fresh one. Registered when
    # this module is imported, before the clients' own fork hooks (which call release()), and so run before them.
    global _lock
    _lock = threading.Lock()


atexit.register(_drain_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
