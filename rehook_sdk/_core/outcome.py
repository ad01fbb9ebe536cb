"""
What became of a call: the `Outcome` value with its status and reason codes, and one `ActionResult` per action.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .types import Action, Call

__all__ = ["ActionResult", "Outcome", "OutcomeStatus", "Reason", "outcome_for", "outcome_of", "result_for"]


class OutcomeStatus(enum.StrEnum):
    """
    The three ways a call can end.
    """

    DELIVERED = "delivered"
    """Rehook answered 2xx."""
    DROPPED = "dropped"
    """Not sent, on purpose: a Rehook rule, a full queue, a closed client, a payload JSON cannot carry."""
    FAILED = "failed"
    """Sending was attempted (or due) and did not succeed."""


class Reason(enum.StrEnum):
    """
    Why a call was dropped or failed.
    """

    MISSING_USER_ID = "missing_user_id"
    """dropped: no userId (Rehook needs one to know the customer)."""
    ANONYMOUS_ONLY = "anonymous_only"
    """dropped: only an anonymousId; Rehook drops anonymous calls."""
    MISSING_REFERRAL_CODE = "missing_referral_code"
    """dropped: a conversion event without ``referral_code`` in its properties."""
    UNSUPPORTED_CALL = "unsupported_call"
    """dropped: group() and alias() have no Rehook action."""
    INTEGRATION_DISABLED = "integration_disabled"
    """dropped: the call's ``integrations`` option turns Rehook off (``{"Rehook": False}`` or ``{"All": False}``)."""
    QUEUE_FULL = "queue_full"
    """dropped: the in-process queue was at ``max_queue_size``."""
    CLIENT_CLOSED = "client_closed"
    """dropped: the call came after aclose() began."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """dropped: the request body is larger than ``max_payload_bytes``; the message gives its size."""
    BEFORE_SEND = "before_send"
    """dropped: the ``before_send`` hook returned None for the call."""
    DISABLED = "disabled"
    """dropped: the client is disabled (``enabled=False`` or ``REHOOK_DISABLED``); nothing leaves the process."""
    FORKED = "forked"
    """dropped in a forked child: the call was queued before ``os.fork()``; the parent process sends it."""
    NO_MATCHING_MAPPING = "no_matching_mapping"
    """dropped: no mapping's trigger matched the call."""
    MISSING_FIELD = "missing_field"
    """dropped: a field the action needs (event_name) resolved to nothing; the message names it."""
    INVALID_PAYLOAD = "invalid_payload"
    """dropped: a value JSON cannot carry (the message names its key path), or a field of the wrong type."""
    REJECTED = "rejected"
    """failed: Rehook answered 4xx other than 408/429 (status and body kept), or 401 earlier on this client."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """failed: every attempt allowed by the retry policy (or the delivery mode) failed."""
    SHUTDOWN_TIMEOUT = "shutdown_timeout"
    """failed: aclose()'s deadline came before the call could be delivered."""
    INTERNAL_ERROR = "internal_error"
    """failed: a bug in rehook-sdk (logged with its traceback); the call is in the dead-letter file to replay."""
    SPOOLED = "spooled"
    """dropped here, kept in the spool: aclose()'s deadline came first; the next client on the spool (or another
    process sharing it) delivers it."""
    SPOOL_FULL = "spool_full"
    """dropped: the spool held ``max_spool_bytes`` of calls."""
    TAKEN_OVER = "taken_over"
    """dropped: another process took the call over from the spool, this one having been presumed dead (no
    heartbeat for ``spool_lease``): that process delivers it."""
    TLS_FAILED = "tls_failed"
    """failed: the TLS handshake refused the server's certificate (unknown CA, wrong host name, expired): nothing
    was sent, and it is not retried (every retry would meet the same certificate); the message names the problem."""
    INTERRUPTED = "interrupted"
    """failed: taken over from the spool of a process that died with a request for it on the wire, under
    ``delivery="at_most_once"``: not sent again (Rehook may have it); kept in the spool."""


_FAILED_REASONS = frozenset(
    {
        Reason.REJECTED,
        Reason.RETRIES_EXHAUSTED,
        Reason.SHUTDOWN_TIMEOUT,
        Reason.INTERNAL_ERROR,
        Reason.INTERRUPTED,
        Reason.TLS_FAILED,
    }
)


@attrs.frozen(kw_only=True)
class ActionResult:
    """
    What became of one Rehook action a call fired (one mapping whose trigger matched).

    Attributes:
        mapping: The mapping's name.
        action: The Rehook action it sends.
        status: delivered, dropped or failed.
        reason: Why it was dropped or failed; ``None`` when delivered.
        message: A sentence for humans.
        message_id: The ``Idempotency-Key`` its requests carried; ``None`` when nothing was sent.
        http_status: The last HTTP status an attempt got (Rehook's, a gateway's or a proxy's), if any answer came.
        response_body: That answer's body, if any answer came.
        attempts: HTTP requests made for this action.
        maybe_delivered: Some attempt may have been acted on by Rehook (see `Outcome.maybe_delivered`).
    """

    mapping: str
    action: Action
    status: OutcomeStatus
    reason: Reason | None = None
    message: str = ""
    message_id: str | None = None
    http_status: int | None = None
    response_body: str | None = None
    attempts: int = 0
    maybe_delivered: bool = False


@attrs.frozen(kw_only=True)
class Outcome:
    """
    The final word on one call. Every accepted call ends in exactly one.

    Attributes:
        call: The call this is the outcome of.
        status: delivered, dropped or failed.
        reason: Why it was dropped or failed; ``None`` when delivered.
        message: A sentence for humans (logs, dashboards). Never contains the API secret.
        message_id: The ``Idempotency-Key`` the requests carried: ``call.message_id`` (yours, or the one the SDK
            gave the call when a sender took it); ``None`` when nothing was ever sent.
        http_status: The last HTTP status an attempt got, if any answer came: Rehook's, or that of a gateway or
            proxy in between (a 504 from a load balancer, a 407 from a proxy).
        response_body: That answer's body (text, truncated, secrets redacted), if any answer came.
        attempts: How many HTTP requests were made for this call.
        maybe_delivered: True when any attempt may have been acted on by Rehook: a timeout or a lost connection
            after the request was sent, or a 500, 502 or 504 (a gateway's answer while Rehook may still process
            it). Sticky: a later attempt's clean refusal (a 503) does not clear it. Only ever true for calls that
            were not delivered.
        results: One `ActionResult` per mapping the call fired, in mapping order (empty when the call was
            dropped before any mapping ran). The fields above summarise them: with one action they are its
            result; with several, the call is delivered when all were, and otherwise reports the first failed
            action (or else the first dropped one).
        resent: The call was taken over from the spool of a process that died after a request for it may have
            reached Rehook, and was sent again (same messageId): Rehook may have it twice.
    """

    call: Call
    status: OutcomeStatus
    reason: Reason | None = None
    message: str = ""
    message_id: str | None = None
    http_status: int | None = None
    response_body: str | None = None
    attempts: int = 0
    maybe_delivered: bool = False
    results: tuple[ActionResult, ...] = ()
    resent: bool = False

    @property
    def delivered(self) -> bool:
        """
        True when Rehook accepted the call.
        """
        return self.status is OutcomeStatus.DELIVERED


def result_for(mapping: str, action: Action, reason: Reason, message: str, **kw: Any) -> ActionResult:
    """
    The `ActionResult` of an action that did not deliver: failed or dropped, as ``reason`` is.
    """
    status = OutcomeStatus.FAILED if reason in _FAILED_REASONS else OutcomeStatus.DROPPED
    return ActionResult(mapping=mapping, action=action, status=status, reason=reason, message=message, **kw)


def outcome_for(call: Call, reason: Reason, message: str, **kw: Any) -> Outcome:
    """
    The `Outcome` of a call that did not deliver: failed or dropped, as ``reason`` is.
    """
    status = OutcomeStatus.FAILED if reason in _FAILED_REASONS else OutcomeStatus.DROPPED
    return Outcome(call=call, status=status, reason=reason, message=message, **kw)


def outcome_of(call: Call, results: tuple[ActionResult, ...], message_id: str) -> Outcome:
    """
    The `Outcome` of a call whose mappings ran, from their results (see `Outcome.results`).
    """
    attempts = sum(r.attempts for r in results)
    sent = message_id if attempts else None
    if len(results) == 1:
        (r,) = results
        return Outcome(
            call=call, status=r.status, reason=r.reason, message=r.message, message_id=r.message_id,
            http_status=r.http_status, response_body=r.response_body, attempts=r.attempts,
            maybe_delivered=r.maybe_delivered, results=results,
        )  # fmt: skip
    bad = [r for r in results if r.status is not OutcomeStatus.DELIVERED]
    if not bad:
        return Outcome(
            call=call, status=OutcomeStatus.DELIVERED, message=f"all {len(results)} actions delivered",
            message_id=sent, http_status=results[-1].http_status, attempts=attempts, results=results,
        )  # fmt: skip
    worst = next((r for r in bad if r.status is OutcomeStatus.FAILED), bad[0])
    return Outcome(
        call=call, status=worst.status, reason=worst.reason,
        message=f"{len(bad)} of {len(results)} actions not delivered; {worst.mapping}: {worst.message}",
        message_id=sent, http_status=worst.http_status, response_body=worst.response_body, attempts=attempts,
        maybe_delivered=worst.maybe_delivered, results=results,
    )  # fmt: skip
