"""
What a request's attempts came to, in the words of its outcome: one phrase per failed attempt, their summary, and
the `ActionResult` of a request that ended.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._core.outcome import ActionResult, OutcomeStatus, Reason, result_for
from .._mapping.mappings import CompiledMapping
from .._transports import Attempt

__all__ = ["delivered", "exhausted", "failed", "fields", "noted", "refused", "summary"]


def delivered(mapping: CompiledMapping, key: str, last: Attempt, attempts: int) -> ActionResult:
    """
    The `ActionResult` of a request Rehook answered with a 2xx.
    """
    status = last.status
    assert status is not None
    return ActionResult(
        mapping=mapping.name,
        action=mapping.action,
        status=OutcomeStatus.DELIVERED,
        message=_ANSWERED[status],
        message_id=key,
        http_status=status,
        response_body=last.body,
        attempts=attempts,
    )


def failed(
    mapping: CompiledMapping,
    key: str,
    last: Attempt,
    attempts: int,
    reason: Reason,
    message: str,
    maybe_delivered: bool,
) -> ActionResult:
    """
    The `ActionResult` of a request that did not deliver, with what its last attempt came to.
    """
    return result_for(
        mapping.name, mapping.action, reason, message, message_id=key, http_status=last.status,
        response_body=last.body, attempts=attempts, maybe_delivered=maybe_delivered,
    )  # fmt: skip


def noted(history: list[str] | None, attempt: Attempt) -> list[str]:
    """
    ``history`` (made at the first failure) with what ``attempt`` came to.
    """
    if attempt.status is not None:
        what = f"HTTP {attempt.status} from the proxy" if attempt.from_proxy else f"HTTP {attempt.status}"
    else:
        what = attempt.error or "no answer"
    if history is None:
        return [what]
    history.append(what)
    return history


def summary(history: Sequence[str]) -> str:
    """
    The failed attempts in order, runs of the same result together: "HTTP 503 on all 3 attempts", or "attempt 1:
    connection lost after the request was sent (...); attempts 2-3: HTTP 503".
    """
    if len(history) == 1:
        return history[0]
    if all(what == history[0] for what in history):
        return f"{history[0]} on all {len(history)} attempts"
    runs: list[str] = []
    first = 0
    for i in range(1, len(history) + 1):
        if i == len(history) or history[i] != history[first]:
            span = f"attempt {first + 1}" if i - first == 1 else f"attempts {first + 1}-{i}"
            runs.append(f"{span}: {history[first]}")
            first = i
    return "; ".join(runs)


def exhausted(history: Sequence[str], maybe: bool) -> str:
    """
    The message of a call whose every allowed attempt failed.
    """
    text = summary(history)
    if len(history) == 1:
        text += " on its only attempt"
    if all(what.startswith(("cannot connect", "connect timed out")) for what in history):
        return f"Rehook unreachable: {text}"
    return f"{text}; Rehook may have received it" if maybe else text


def refused(last: Attempt, reason: Reason, history: Sequence[str], maybe: bool) -> str:
    """
    The message of a call an attempt's answer ended for good (a 4xx, a proxy's refusal, a certificate).
    """
    if reason is Reason.TLS_FAILED:
        message = f"TLS handshake failed, not retried: {last.error}"
    elif last.from_proxy:
        message = f"the proxy refused to open the tunnel to Rehook with {last.status}: {last.body}"
    else:
        message = f"Rehook rejected the call with {last.status}: {last.body}"
    if len(history) > 1:
        message += f" (after {summary(history[:-1])})"
    if maybe:
        message += "; an earlier attempt may have been received"
    return message


def fields(message_id: str, attempt: int, http_status: int | None = None) -> dict[str, object]:
    """
    The structured fields of a DEBUG line about one request (``extra=``).
    """
    return {"rehook_message_id": message_id, "rehook_attempt": attempt, "rehook_http_status": http_status}


# The delivered message of each 2xx status, made once rather than formatted per request.
_ANSWERED = {status: f"Rehook answered {status}" for status in range(200, 300)}
