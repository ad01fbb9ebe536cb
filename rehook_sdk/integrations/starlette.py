"""
FastAPI and Starlette: a lifespan that starts the client and drains it at shutdown, and a dependency for handlers.

::

    from fastapi import Depends, FastAPI
    from rehook_sdk import RehookClient
    from rehook_sdk.integrations.starlette import get_rehook, rehook_lifespan

    app = FastAPI(lifespan=rehook_lifespan(close_timeout=5.0))

    @app.post("/signup")
    async def signup(rehook: RehookClient = Depends(get_rehook)) -> dict[str, bool]:
        rehook.track("signup", {"referral_code": "ABC"}, user_id="u1")
        return {"ok": True}

Needs the ``fastapi`` extra: ``pip install "rehook-sdk[fastapi]"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'rehook_sdk.integrations.starlette needs Starlette (or FastAPI): pip install "rehook-sdk[fastapi]"'
    ) from exc

from .._client.client import RehookClient
from .._core.constants import DEFAULT_CLOSE_TIMEOUT
from ._lifecycle import ClientSource, running_client

__all__ = ["STATE_KEY", "get_rehook", "rehook_lifespan", "running_client"]

STATE_KEY = "rehook"
"""The lifespan state key (and ``app.state`` attribute) the client is stored under."""


def rehook_lifespan(
    client: ClientSource = None, *, close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[dict[str, Any]]]:
    """
    A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``.

    The client starts on the app's loop at startup and is drained with ``close_timeout`` at shutdown, after the
    server stopped taking requests. It is in the lifespan state (``request.state.rehook``) and on
    ``app.state.rehook``. To combine with your own lifespan, use `running_client` inside it instead.

    Args:
        client: A `RehookClient`, a function that makes one (called at startup), or None for one configured from
            the environment.
        close_timeout: Seconds the drain may take at shutdown (``None``: no limit).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with running_client(client, close_timeout=close_timeout) as rehook:
            state = getattr(app, "state", None)
            if state is not None:
                setattr(state, STATE_KEY, rehook)
            yield {STATE_KEY: rehook}

    return lifespan


def get_rehook(connection: HTTPConnection) -> RehookClient:
    """
    The running client, for a handler: ``rehook: RehookClient = Depends(get_rehook)`` in FastAPI, or
    ``get_rehook(request)`` anywhere.

    Raises:
        RuntimeError: no client was set up (no `rehook_lifespan`, and nothing stored as ``rehook`` in the
            lifespan state or on ``app.state``).
    """
    rehook = getattr(connection.state, STATE_KEY, None)
    if rehook is None:
        rehook = getattr(connection.app.state, STATE_KEY, None)
    if not isinstance(rehook, RehookClient):
        raise RuntimeError(
            "no RehookClient for this app: pass lifespan=rehook_lifespan(...) to FastAPI/Starlette, or yield "
            f"{{{STATE_KEY!r}: client}} from your own lifespan (see running_client)"
        )
    return rehook
