"""
What one attempt proves about its request: delivered, not acted on (retry is safe), or maybe acted on (a retry
may duplicate it). The one place both transports' answers are judged; ``docs/concepts.md`` carries the same table.

Rehook has no idempotency key and pays rewards per event, so "maybe" is the default for anything not proven:

- Statuses that prove the request was *not* acted on: 408 (RFC 9110 15.5.9: the server gave up waiting for the
  request), 429 (RFC 6585: refused by a rate limit), 503 (RFC 9110 15.6.4: the server or gateway could not handle
  it now; HAProxy answers it when no server is available or the queue timed out, nginx for ``limit_req`` and
  ``limit_conn``: the request was never forwarded), 501 and 505 (the method or version is not supported: nothing
  was done), 511 (a captive proxy wants a login: the request never left it).
- Statuses that may mean it was acted on: 502 (a gateway got an invalid answer, or none: nginx "upstream
  prematurely closed connection", HAProxy "invalid or incomplete response"), 504 (a gateway timed out waiting:
  nginx ``proxy_read_timeout``, HAProxy ``timeout server``; the upstream goes on processing), 500 (the server
  failed part-way; HAProxy's own internal error), and every other 5xx.
- Any other 4xx and 3xx: refused, final (``rejected``), never acted on. 401 also latches the client.
- A proxy's answer to CONNECT (https through a proxy): the tunnel was not opened, so the request never left. A
  4xx (407 wrong or missing proxy credentials, 403 destination not allowed) is final, anything else retried.
- No answer: a connection that could not be made (refused, DNS, connect timeout, a TLS handshake that failed for
  another reason than the certificate) proves nothing was sent, retried; a certificate the handshake refused
  (unknown CA, wrong host name, expired) is final (``tls_failed``); after the request was written, a lost
  connection, a timeout or an answer that is not HTTP may mean it was acted on.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from .._core.outcome import Reason
from .._transports import Attempt

__all__ = ["NOT_ACTED_STATUSES", "Next", "Verdict", "judge"]


class Next(enum.Enum):
    """
    What the sender does after an attempt.
    """

    DONE = "done"
    """Delivered: a 2xx."""
    RETRY = "retry"
    """Not delivered; a later attempt may be (within the retry policy and the delivery mode)."""
    FINAL = "final"
    """Not delivered, and no retry would change that: the call ends with the verdict's reason."""


class Verdict(NamedTuple):
    """
    What one attempt proves.

    Attributes:
        next: Delivered, retry, or final.
        maybe_acted: Rehook may have acted on the request (a retry may duplicate it).
        reason: The call's reason when ``next`` is `Next.FINAL`.
    """

    next: Next
    maybe_acted: bool
    reason: Reason | None = None


NOT_ACTED_STATUSES = frozenset({408, 429, 501, 503, 505, 511})
"""Retryable statuses that prove the request was not acted on (see the module docstring)."""

_DELIVERED = Verdict(Next.DONE, False)
_RETRY_SAFE = Verdict(Next.RETRY, False)
_RETRY_MAYBE = Verdict(Next.RETRY, True)
_REJECTED = Verdict(Next.FINAL, False, Reason.REJECTED)
_TLS = Verdict(Next.FINAL, False, Reason.TLS_FAILED)


def _of_status(status: int) -> Verdict:
    if 200 <= status < 300:
        return _DELIVERED
    if status in NOT_ACTED_STATUSES:
        return _RETRY_SAFE
    if status >= 500:
        return _RETRY_MAYBE
    return _REJECTED


_BY_STATUS = {status: _of_status(status) for status in range(100, 600)}


def judge(attempt: Attempt) -> Verdict:
    """
    What ``attempt`` proves about its request (pure: the same attempt always gets the same verdict).
    """
    status = attempt.status
    if status is not None:
        if attempt.from_proxy:  # the proxy refused to open the tunnel: nothing reached Rehook
            return _REJECTED if 400 <= status < 500 else _RETRY_SAFE
        return _BY_STATUS.get(status) or _of_status(status)
    if attempt.tls:
        return _TLS
    if attempt.unreachable:
        return _RETRY_SAFE
    return _RETRY_MAYBE  # written, then lost, timed out or garbled (maybe_sent), or nothing known
