"""
The transports a client sends through, and the choice between them.

``fast`` (`FastTransport`: asyncio.Protocol + httptools) posts the two write endpoints whenever it can serve:
https, or http to a loopback host, with no proxy and no aiohttp session of the user's. ``aiohttp``
(`AiohttpTransport`) serves everything else, and the fast transport's ``get`` (check_auth).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Literal, get_args

import aiohttp
from yarl import URL

from .._core.exceptions import ConfigurationError
from .aiohttp import AiohttpTransport
from .base import RESERVED_HEADERS, USER_AGENT, Attempt, Transport
from .config import check_base_url, check_ssl, no_proxy_exempts, proxy_for
from .fast import FastTransport
from .keepalive import KeepAlive, parse_keep_alive

__all__ = [
    "RESERVED_HEADERS",
    "TRANSPORT_ENV",
    "USER_AGENT",
    "AiohttpTransport",
    "Attempt",
    "FastTransport",
    "KeepAlive",
    "Transport",
    "TransportName",
    "check_base_url",
    "check_ssl",
    "check_transport",
    "make_transport",
    "no_proxy_exempts",
    "parse_keep_alive",
    "proxy_for",
]

TransportName = Literal["auto", "fast", "aiohttp"]
TRANSPORT_ENV = "REHOOK_TRANSPORT"
_NAMES: tuple[str, ...] = get_args(TransportName)


def check_transport(name: object, *, proxy: URL | None, session: aiohttp.ClientSession | None) -> TransportName:
    """
    ``transport=`` (``None``: ``$REHOOK_TRANSPORT``, else ``"auto"``), checked against what the fast one can serve.

    Raises:
        ConfigurationError: an unknown name, or ``"fast"`` with a proxy or a session.
    """
    source = "transport"
    if name is None:
        name, source = os.environ.get(TRANSPORT_ENV, "").strip().lower() or "auto", TRANSPORT_ENV
    if name not in _NAMES:
        raise ConfigurationError(f"{source} must be one of {', '.join(_NAMES)}, not {name!r}")
    if name == "fast" and (proxy is not None or session is not None):
        raise ConfigurationError(
            f"{source}='fast' cannot send through a proxy or an aiohttp session of yours; use 'auto' or 'aiohttp'"
        )
    chosen: TransportName = name  # type: ignore[assignment]  # checked against _NAMES above
    return chosen


def make_transport(
    base_url: URL,
    api_key: str,
    api_secret: str,
    *,
    request_timeout: float,
    concurrency: int,
    session: aiohttp.ClientSession | None,
    headers: Mapping[str, str] | None = None,
    proxy: URL | None = None,
    ssl_context: ssl.SSLContext | None = None,
    transport: TransportName = "auto",
) -> Transport:
    """
    The transport for one client's settings (already checked).
    """
    if transport != "aiohttp" and proxy is None and session is None:
        return FastTransport(
            base_url,
            api_key,
            api_secret,
            request_timeout=request_timeout,
            concurrency=concurrency,
            headers=headers,
            ssl_context=ssl_context,
        )
    return AiohttpTransport(
        base_url,
        api_key,
        api_secret,
        request_timeout=request_timeout,
        concurrency=concurrency,
        session=session,
        headers=headers,
        proxy=proxy,
        ssl_context=ssl_context,
    )
