"""
One client per application run: made (or taken) at startup, started on the app's loop, drained at shutdown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from .._client import RehookClient
from .._constants import DEFAULT_CLOSE_TIMEOUT

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

    For composing inside your own aiohttp cleanup context or ASGI lifespan.
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
        await rehook.aclose(close_timeout)
