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

from collections import deque

from .base import IDLE_TIMEOUT

__all__ = ["KeepAlive", "parse_keep_alive"]

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
        self._limit = default
        self._valid_until = float("inf")

    def peer_closed(self, now: float, idle_age: float) -> None:
        """
        The peer closed a connection that had been idle ``idle_age`` seconds (at ``now``, loop time).
        """
        if idle_age < _SHORTEST:
            return
        self._closes.append((now, idle_age))
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
        closes = self._closes
        while closes and closes[0][0] < now - _MEMORY:
            closes.popleft()
        if not closes:
            self._limit, self._valid_until = self._default, float("inf")
            return
        # The longest idle age a peer closed at: a reload closes connections early, a timeout closes them at it.
        self._limit = min(self._default, _SHARE * max(age for _, age in closes))
        self._valid_until = closes[0][0] + _MEMORY


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
