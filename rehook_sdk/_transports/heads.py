"""
The limits an answer's head must keep, and a reader that finds its final status within them: for the aiohttp
transport, whose parser drops an answer whole when its head and a bad body arrive in one read, so that both
transports decide by the same rule (a status line and headers that parsed within the limits are the answer,
however the body ends).
"""

from __future__ import annotations

import contextvars
from typing import Any

import httptools
from aiohttp.client_proto import ResponseHandler

__all__ = [
    "MAX_FRAMING",
    "MAX_HEAD",
    "MAX_HEADERS",
    "MAX_LINE",
    "HeadReader",
    "StatusSniffer",
    "forget_sniffer",
    "last_sniffer",
]

# As tight as aiohttp's client (8,190 bytes per line, 128 headers), with a total for the head (interim 1xx heads
# included) and for what follows it that is not body (chunk framing, trailers).
MAX_LINE = 8190
MAX_HEADERS = 128
MAX_HEAD = 64 * 1024
MAX_FRAMING = 256 * 1024


class HeadReader:
    """
    Reads an answer's bytes up to the end of its final head (interim 1xx heads skipped): ``status`` and
    ``retry_after`` then, or nothing if the head did not parse or broke a limit (``broken`` says which).
    """

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status: int | None = None
        self.retry_after: bytes | None = None
        self.done = False  # the final head was read, or cannot be
        self.broken: str | None = None  # the limit the head broke
        self._size = 0  # bytes of head so far
        self._line = 0  # bytes since the last newline
        self._headers = 0
        self._retry_after: bytes | None = None

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        newline = data.rfind(b"\n")
        if newline < 0 and self._line + len(data) > MAX_LINE:
            self._break(f"a header line longer than {MAX_LINE:,} bytes")  # checked before httptools grows it
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.done = True  # past a limit, or the head did not parse (no status); or the head was read (status)
            return
        if not self.done:  # all of it was head
            self._size += len(data)
            self._line = len(data) - newline - 1 if newline >= 0 else self._line + len(data)
            if self._size > MAX_HEAD:
                self._break(f"a head larger than {MAX_HEAD:,} bytes")

    def _break(self, limit: str) -> None:
        self.done = True
        self.broken = limit

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > MAX_HEADERS:
            self._break(f"more than {MAX_HEADERS} header fields")
        elif len(name) + len(value) > MAX_LINE:
            self._break(f"a header line longer than {MAX_LINE:,} bytes")
        if self.done:
            raise _Complete  # httptools stops parsing: no status
        if name.lower() == b"retry-after":
            self._retry_after = value

    def on_headers_complete(self) -> None:
        if self.done:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._retry_after = None
            return
        self.status, self.retry_after, self.done = status, self._retry_after, True
        raise _Complete  # nothing after the head is needed here


class _Complete(Exception):
    """
    Raised from a parser callback to stop httptools: nothing more is needed.
    """


_sniffer: contextvars.ContextVar[StatusSniffer | None] = contextvars.ContextVar("rehook_sniffer", default=None)


def last_sniffer() -> StatusSniffer | None:
    """
    The connection protocol of the request this task sent last, if it was a `StatusSniffer`.
    """
    return _sniffer.get()


def forget_sniffer() -> None:
    _sniffer.set(None)


class StatusSniffer(ResponseHandler):
    """
    aiohttp's connection protocol, reading each answer's head a second time with `HeadReader`. aiohttp calls
    ``set_response_params`` from the task that sends the request, before the answer, so the task finds the
    protocol of its request through a context variable even when aiohttp raises before handing over a response.
    The answer of a proxy to CONNECT (set up without a timer) is not read: it is not Rehook's.
    """

    head: HeadReader | None = None

    def set_response_params(self, **settings: Any) -> None:
        super().set_response_params(**settings)
        if "timer" in settings:  # the request's own answer; a proxy's answer to CONNECT comes without a timer
            self.head = HeadReader()
            _sniffer.set(self)
        else:
            self.head = None

    def data_received(self, data: bytes) -> None:
        head = self.head
        if head is not None and not head.done:
            head.feed(data)
            if head.broken is not None and self.transport is not None:
                self.transport.abort()  # as the fast transport does; aiohttp sees the connection lost
                return
        super().data_received(data)
