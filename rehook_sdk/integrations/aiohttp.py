"""
aiohttp web apps: the client starts with the app and is drained during cleanup, after request handlers finished.

::

    from aiohttp import web
    from rehook_sdk.integrations.aiohttp import REHOOK, rehook_cleanup_ctx

    async def signup(request: web.Request) -> web.Response:
        request.app[REHOOK].track("signup", {"referral_code": code}, user_id=user_id)
        return web.json_response({"ok": True})

    app = web.Application()
    app.cleanup_ctx.append(rehook_cleanup_ctx(close_timeout=5.0))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .._client.client import RehookClient
from .._core.constants import DEFAULT_CLOSE_TIMEOUT
from ._lifecycle import ClientSource, running_client

__all__ = ["REHOOK", "rehook_cleanup_ctx"]

REHOOK: web.AppKey[RehookClient] = web.AppKey("rehook", RehookClient)
"""Where the running client lives: ``request.app[REHOOK]``."""


def rehook_cleanup_ctx(
    client: ClientSource = None,
    *,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    key: web.AppKey[RehookClient] = REHOOK,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """
    A cleanup context for ``app.cleanup_ctx``: start the client at startup, drain it at cleanup.

    aiohttp runs cleanup contexts' exits after it has stopped accepting requests and waited for the handlers in
    flight, so every call a handler made is queued by then; the drain delivers it within ``close_timeout``.

    Args:
        client: A `RehookClient`, a function that makes one (called at startup, on the app's loop), or None for
            one configured from the environment.
        close_timeout: Seconds the drain may take at cleanup (``None``: no limit).
        key: The app key to store the client under (default `REHOOK`).
    """

    async def rehook_ctx(app: web.Application) -> AsyncIterator[None]:
        async with running_client(client, close_timeout=close_timeout) as rehook:
            app[key] = rehook
            yield

    return rehook_ctx
