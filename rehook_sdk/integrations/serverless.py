"""
Function handlers (AWS Lambda, Google Cloud Functions, Azure Functions): deliver every call a handler made before
it returns, within the time the platform has left.

::

    from rehook_sdk.integrations.serverless import get_rehook, rehook_handler

    @rehook_handler
    def handler(event, context):
        get_rehook().track("signup", {"referral_code": event["code"]}, user_id=event["user_id"])
        return {"statusCode": 200}

Between invocations the platform freezes the process (Lambda) or may stop it without notice: a request in flight
then is cut, and a call still queued waits for a later invocation that may never come. So nothing may be left when
the handler returns. `rehook_handler` (or the `rehook_invocation` block) flushes after the handler, until
``context.get_remaining_time_in_millis()`` minus ``margin`` (``timeout`` without a Lambda context). What is still
undelivered then ends at once as ``shutdown_timeout`` (logged, ``on_error``, the dead-letter file: wherever the
client reports failures), a WARNING says how many, and the next invocation starts a new client.

No extra is needed: it uses the `SyncRehookClient`, one per process (made from the environment, or by your
``client`` factory), reused by warm invocations.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar, overload

from .._client.sync import SyncRehookClient
from .._report.outcome_log import calls

__all__ = ["DEFAULT_MARGIN", "DEFAULT_TIMEOUT", "get_rehook", "rehook_handler", "rehook_invocation"]

logger = logging.getLogger("rehook_sdk")

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MARGIN = 0.5
"""Seconds kept back from the platform's remaining time (to return the handler's answer)."""
DEFAULT_TIMEOUT = 5.0
"""Seconds to flush when the platform does not say how much time is left."""

ClientFactory = Callable[[], SyncRehookClient]

_lock = threading.Lock()
_client: SyncRehookClient | None = None
_factory: ClientFactory = SyncRehookClient


def get_rehook() -> SyncRehookClient:
    """
    This process's client for handlers: made on first use (by the factory the last `rehook_handler` or
    `rehook_invocation` was given, else from the environment), again after an invocation had to end calls.
    """
    global _client
    client = _client
    if client is None:
        with _lock:
            client = _client
            if client is None:
                made: object = _factory()
                if not isinstance(made, SyncRehookClient):
                    raise TypeError(f"the client factory returned a {type(made).__qualname__}, not a SyncRehookClient")
                client = _client = made
    return client


def _time_left(context: object, margin: float, timeout: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            millis = float(remaining())
        except (TypeError, ValueError):
            return timeout
        return max(millis / 1000.0 - margin, 0.0)
    return timeout


@contextlib.contextmanager
def rehook_invocation(
    context: object = None,
    *,
    client: ClientFactory | None = None,
    margin: float = DEFAULT_MARGIN,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[SyncRehookClient]:
    """
    A block whose calls are all delivered, or ended, when it exits (also when it raises).

    Args:
        context: The platform's context object: with ``get_remaining_time_in_millis()`` (Lambda), the flush
            lasts until that time minus ``margin``; anything else (or None), ``timeout`` seconds.
        client: A function that makes the process's `SyncRehookClient` (default: from the environment).
        margin: Seconds kept back from the remaining time.
        timeout: Seconds to flush without a Lambda context.

    Yields:
        The process's client (the same as `get_rehook`).
    """
    global _factory, _client
    if client is not None:
        _factory = client
    rehook = get_rehook()
    try:
        yield rehook
    finally:
        left = rehook.flush(_time_left(context, margin, timeout))
        if left:
            logger.warning(
                "%s not delivered before the handler returned: they end now as shutdown_timeout (nothing may be "
                "in flight while the platform freezes the process)",
                calls(left),
            )
            with _lock:
                if _client is rehook:
                    _client = None  # the next invocation starts a new one
            rehook.close(timeout=0)


@overload
def rehook_handler(handler: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def rehook_handler(
    *, client: ClientFactory | None = None, margin: float = DEFAULT_MARGIN, timeout: float = DEFAULT_TIMEOUT
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def rehook_handler(
    handler: Callable[P, R] | None = None,
    /,
    *,
    client: ClientFactory | None = None,
    margin: float = DEFAULT_MARGIN,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """
    Decorate a function handler ``handler(event, context)``: its calls are delivered (or ended) before it returns,
    as in `rehook_invocation` with the handler's second argument as the context. Use it bare (``@rehook_handler``)
    or with the settings of `rehook_invocation`.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            context = args[1] if len(args) > 1 else kwargs.get("context")
            with rehook_invocation(context, client=client, margin=margin, timeout=timeout):
                return function(*args, **kwargs)

        return wrapper

    return decorate if handler is None else decorate(handler)
