"""
One client per application run: made (or taken) at startup, started on the app's loop, drained at shutdown.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import FrameType

from .._client.client import RehookClient
from .._core.constants import DEFAULT_CLOSE_TIMEOUT

__all__ = ["ClientSource", "running_client"]

ClientSource = RehookClient | Callable[[], RehookClient] | None
"""A client, a function that makes one (called at startup, inside the app's loop), or None: one from the
environment (REHOOK_API_KEY, REHOOK_API_SECRET, REHOOK_BASE_URL)."""


@contextlib.asynccontextmanager
async def running_client(
    client: ClientSource = None, *, close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT
) -> AsyncIterator[RehookClient]:
    """
    Start a client for the body of the block and drain it with ``close_timeout`` when the block ends.

    For composing inside your own aiohttp cleanup context or ASGI lifespan. A SIGTERM that arrives while the
    client drains (with a finite ``close_timeout``, in the main thread) is held until the drain ends, then takes
    effect: a server that stops its workers with SIGTERM while one is still draining (hypercorn's master does, as
    soon as its first worker exits) would otherwise kill that worker with its calls in flight.
    """
    if client is None:
        rehook = RehookClient()
    elif isinstance(client, RehookClient):
        rehook = client
    elif callable(client):
        rehook = client()
        if not isinstance(rehook, RehookClient):
            raise TypeError(f"the client factory returned a {type(rehook).__qualname__}, not a RehookClient")
    else:
        raise TypeError(f"client must be a RehookClient, a function that makes one, or None; got {client!r}")
    await rehook.start()
    try:
        yield rehook
    finally:
        with _sigterm_held(close_timeout is not None):
            await rehook.aclose(close_timeout)


@contextlib.contextmanager
def _sigterm_held(hold: bool) -> Iterator[None]:
    """
    Hold SIGTERM for the block (a bounded drain) and deliver it after, to the handler that was there before.
    """
    main = threading.current_thread() is threading.main_thread()
    if not hold or not main or signal.getsignal(signal.SIGTERM) is None:
        yield  # only the main thread may set signal handlers; one set from C could not be put back
        return
    received: list[int] = []

    def hold_it(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, hold_it)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received:
            signal.raise_signal(signal.SIGTERM)
