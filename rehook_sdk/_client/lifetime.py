"""
A client's life outside its caller's code: the reset of every client in a forked child, the drain of a client
collected while calls wait, and the report of a drain at interpreter exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import types
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, cast

from .. import _exit
from .._core.constants import DEFAULT_CLOSE_TIMEOUT
from .._core.outcome import Reason
from .._delivery.engine import DeliveryEngine, deadline_after
from .binding import LoopBinding, State

__all__ = ["EXIT_GRACE", "after_fork", "drain_at_exit", "drain_collected", "exit_report", "left_in_child"]

logger = logging.getLogger("rehook_sdk")

# At exit, after the drain's own deadline: how long to wait for a loop in another thread to finish aclose(), and for
# the dead-letter writer (nothing waits for its thread once the exit hooks have run).
EXIT_GRACE = 5.0

# The reset of every live client, run in a forked child: its object (weakly: this must not keep a client alive) and
# its function. Not `weakref.WeakMethod`s: one whose object is freed while the interpreter ends can fail in its own
# callback ("Exception ignored in: <function WeakMethod.__new__.<locals>._cb>"), printed on the user's stderr.
_fork_resets: weakref.WeakKeyDictionary[object, Callable[[Any], None]] = weakref.WeakKeyDictionary()
# Engines whose client was collected while open: kept alive until their drain finishes.
_orphans: set[DeliveryEngine] = set()
# In a forked child: the parent's engines, kept referenced and never used (collecting them would warn about
# objects the child never owned; closing them could touch connections the parent still uses).
_fork_orphans: list[DeliveryEngine] = []


def after_fork(reset: Callable[[], None]) -> None:
    """
    Run ``reset`` (a bound method) in every forked child while its object lives.
    """
    method = cast(types.MethodType, reset)
    _fork_resets[method.__self__] = method.__func__


def _reset_after_fork() -> None:
    for owner, reset in list(_fork_resets.items()):
        reset(owner)


os.register_at_fork(after_in_child=_reset_after_fork)


def left_in_child(engine: DeliveryEngine) -> None:
    """
    In a forked child: the parent's ``engine`` resolves the child's copies of its calls and is never used again.
    """
    engine.left_with_parent()
    _fork_orphans.append(engine)


def drain_at_exit(
    binding: LoopBinding,
    engine: DeliveryEngine,
    aclose: Callable[[float], Coroutine[Any, Any, None]],
    timeout: float | None,
) -> tuple[int, str | None]:
    """
    At interpreter exit: close a client that is still open and holds calls (``aclose(timeout)``) from whatever loop
    can still run: its own when it is alive (in another thread, or stopped but not closed), else a loop of its own
    here. ``timeout`` None: the client does not drain at exit.

    Returns:
        How many calls were not delivered in time, and the dead-letter file they went to.
    """
    state = binding.state
    if timeout is None or state is State.CLOSED or state is State.CLOSING:
        return 0, None
    if not engine.pending_count() and state is State.NOT_STARTED:
        return 0, None
    loop = binding.loop if state is State.RUNNING else None
    before = engine.counters.count(Reason.SHUTDOWN_TIMEOUT)
    if loop is not None and not loop.is_closed():
        if loop.is_running():  # in another thread, still alive
            future = asyncio.run_coroutine_threadsafe(aclose(timeout), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                future.result(timeout + EXIT_GRACE)
        else:  # stopped but not closed, as run_until_complete() leaves it
            loop.run_until_complete(aclose(timeout))
    else:  # never started, or its loop closed
        asyncio.run(aclose(timeout))
    return exit_report(engine, before)


def drain_collected(binding: LoopBinding, engine: DeliveryEngine, forked: bool, timeout: float | None) -> int:
    """
    A client was collected: if it was open with calls pending, keep delivering them. On its loop, if that still runs
    (maybe in another thread), a background drain does what aclose() would; what no running loop sends (never
    started, its loop ended, or that drain cancelled by the loop's own end) the exit drain sends, with ``timeout``
    (``None``: not). ``forked``: the client was made before this process forked, and is the parent's to drain.

    Returns:
        How many calls were pending, for the caller's warning (0: nothing to say).
    """
    state = binding.state
    if state is State.CLOSED or state is State.CLOSING:
        return 0
    pending = engine.pending_count()  # this may run in any thread: no iteration over live sets
    if not pending and (state is State.NOT_STARTED or forked):
        return 0
    loop = binding.loop
    running = loop if state is State.RUNNING and loop is not None and loop.is_running() else None
    leftovers = None
    if pending and timeout is not None:
        leftovers = _Leftovers(engine, timeout)
        _exit.hold(leftovers)
    if running is not None:
        _orphans.add(engine)
        try:
            running.call_soon_threadsafe(_drain_orphan, engine, running, leftovers)
        except RuntimeError:
            _orphans.discard(engine)
    return pending


def exit_report(engine: DeliveryEngine, before: int) -> tuple[int, str | None]:
    """
    After an exit drain: wait (bounded) for the dead-letter writer, since nothing waits for its thread once the exit
    hooks have run; return the calls that ended ``shutdown_timeout`` since ``before`` and where they were written.
    """
    unwritten = engine.close_dead_letter(EXIT_GRACE)
    if unwritten:
        logger.error("%d dead-letter lines could not be written before the interpreter exited", unwritten)
    where = engine.dead_letter_path
    lost = engine.stats().dead_letter_lost
    if where is not None and lost:  # the exit warning says it: logging may not be configured
        where += f" (but {lost} dead-letter lines of this client could not be written there)"
    return engine.counters.count(Reason.SHUTDOWN_TIMEOUT) - before, where


def _drain_orphan(engine: DeliveryEngine, loop: asyncio.AbstractEventLoop, leftovers: _Leftovers | None) -> None:
    task = loop.create_task(engine.stop(deadline_after(loop, DEFAULT_CLOSE_TIMEOUT)))

    def done(task: asyncio.Task[int]) -> None:
        _orphans.discard(engine)
        if leftovers is not None and not task.cancelled():  # drained: nothing left for the exit drain
            _exit.release(leftovers)

    task.add_done_callback(done)


class _Leftovers:
    """
    The calls of a client collected while no running loop would send them, for the exit drain.
    """

    def __init__(self, engine: DeliveryEngine, timeout: float) -> None:
        self._engine = engine
        self._timeout = timeout

    def _drain_at_exit(self) -> tuple[int, str | None]:
        if not self._engine.pending_count():  # the background drain delivered everything
            return 0, None
        before = self._engine.counters.count(Reason.SHUTDOWN_TIMEOUT)
        asyncio.run(self._drain())
        return exit_report(self._engine, before)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        self._engine.start(loop)
        await self._engine.stop(deadline_after(loop, self._timeout))
