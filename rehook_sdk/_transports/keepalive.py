"""
When a keep-alive connection has been idle too long to reuse: a default, the server's ``Keep-Alive: timeout=N``,
and the idle ages at which the peer (Rehook, or a proxy in front of it) was seen to close idle connections.

A server closes an idle connection when its own idle timeout passes. A request written just then crosses the
close on the wire: the server never reads it, and the client cannot tell that from a request that was read and
acted on (at most once, such a call ends ``maybe_delivered``). Retiring connections before the peer would close
them makes the race rare; the peer's timeout is learned from the closes themselves, since few servers or proxies
announce it (HAProxy's ``timeout http-keep-alive`` and nginx's ``keepalive_timeout`` send nothing by default).
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import Sequence

from .base import IDLE_TIMEOUT

__all__ = ["CHECK_AFTER", "KeepAlive", "parse_keep_alive", "readable", "spoken_on"]

# A connection idle at least this long is checked for an EOF or bytes before it is reused (one poll() call). Under
# load connections are reused within microseconds, and a peer closing them that soon is rare.
CHECK_AFTER = 0.005

# Of the idle age at which peers closed connections, reuse a connection for at most this share.
_SHARE = 0.75
# Closes after a shorter idle are not taken as the peer's timeout (a restart, a reload, a server that closes after
# every answer): the check before each write sees those, and learning from them would stop reuse for good.
_SHORTEST = 0.01
# What was learned is forgotten after this long (seconds of the loop's clock): a reload that closed connections
# early must not shorten reuse for ever, and a peer whose timeout grew is seen again.
_MEMORY = 300.0
_KEPT = 32


class KeepAlive:
    """
    The idle limit of one transport's connections (used from one event loop).
    """

    def __init__(self, default: float = IDLE_TIMEOUT) -> None:
        self._default = default
        self._closes: deque[tuple[float, float]] = deque(maxlen=_KEPT)  # (when, idle age) of peers' closes
        self._bounds: deque[tuple[float, float]] = deque(maxlen=_KEPT)  # (when, idle age) closes were found by
        self._limit = default
        self._valid_until = float("inf")

    def peer_closed(self, now: float, idle_age: float) -> None:
        """
        The peer closed a connection that had been idle ``idle_age`` seconds (at ``now``, loop time).
        """
        self._note(self._closes, now, idle_age)

    def peer_closed_within(self, now: float, idle_age: float) -> None:
        """
        A connection idle ``idle_age`` seconds was found closed by the peer, at some time within that idle (a
        transport that learns of closes only when it looks, as the aiohttp one does before a request).
        """
        self._note(self._bounds, now, idle_age)

    def _note(self, kept: deque[tuple[float, float]], now: float, idle_age: float) -> None:
        if idle_age >= _SHORTEST:
            kept.append((now, idle_age))
            self._learn(now)

    def limit(self, now: float, announced: float | None = None) -> float:
        """
        Seconds a connection may have been idle and still be reused, ``announced`` being its server's
        ``Keep-Alive: timeout``, if it sent one.
        """
        if now >= self._valid_until:
            self._learn(now)
        limit = self._limit
        if announced is not None:
            limit = min(limit, announced - min(1.0, announced / 4))
        return limit

    def _learn(self, now: float) -> None:
        closes, bounds = self._closes, self._bounds
        for kept in (closes, bounds):
            while kept and kept[0][0] < now - _MEMORY:
                kept.popleft()
        limit = self._default
        if closes:
            # The longest idle age a peer closed at: a reload closes connections early, a timeout closes them at it.
            limit = min(limit, _SHARE * max(age for _, age in closes))
        if bounds:
            # Closed at some time within each of these ages: the peer's timeout is at most the shortest of them.
            limit = min(limit, _SHARE * min(age for _, age in bounds))
        self._limit = limit
        oldest = [kept[0][0] for kept in (closes, bounds) if kept]
        self._valid_until = min(oldest) + _MEMORY if oldest else float("inf")


def parse_keep_alive(value: bytes) -> tuple[float | None, int | None]:
    """
    The ``timeout`` and ``max`` of a ``Keep-Alive`` header's value (RFC 2068 19.7.1.1), each ``None`` when absent
    or not a number.
    """
    timeout: float | None = None
    most: int | None = None
    for part in value.split(b","):
        name, _, number = part.partition(b"=")
        name = name.strip().lower()
        try:
            if name == b"timeout":
                parsed = float(number.strip())
                if parsed == parsed and parsed >= 0:  # not NaN
                    timeout = parsed
            elif name == b"max":
                most = int(number.strip())
        except ValueError:
            continue
    return timeout, most


def readable(transport: asyncio.BaseTransport) -> bool:
    """
    Whether an idle connection's socket has anything to read that the loop has not handled yet: an EOF, a reset,
    bytes. Any of them means the connection cannot carry another request.
    """
    return bool(spoken_on([transport]))


def spoken_on(transports: Sequence[asyncio.BaseTransport]) -> set[int]:
    """
    The indexes of ``transports`` (idle connections) whose sockets have anything to read, in one ``poll()``.
    """
    poller = select.poll()
    where: dict[int, int] = {}
    for index, transport in enumerate(transports):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            fd = sock.fileno()
            if fd >= 0:
                where[fd] = index
                poller.register(fd, select.POLLIN | select.POLLPRI)
    if not where:
        return set()
    return {where[fd] for fd, _ in poller.poll(0)}
