"""
When to try a request again, and how long to wait first. The one module that uses ``backoff``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from collections.abc import Generator
from typing import Any

import attrs
import backoff

from .constants import (
    DEFAULT_INITIAL_WAIT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_MAX_WAIT,
)

__all__ = ["Backoff", "Delivery", "RetryPolicy", "parse_retry_after"]


class Delivery(enum.StrEnum):
    """
    What to do after an *ambiguous* failure, when Rehook may or may not have acted on the request: a timeout or a
    lost connection after it was sent, or a gateway's 502/504 or a 500 (see ``_delivery/proof.py``).
    Rehook has no idempotency key, and it hands out rewards on events.
    """

    AT_LEAST_ONCE = "at_least_once"
    """Retry ambiguous failures: nothing is lost, but Rehook may see an event twice (the default)."""
    AT_MOST_ONCE = "at_most_once"
    """Never retry ambiguous failures: no duplicates, but such an event may be lost (``maybe_delivered``)."""


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"RetryPolicy.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    How failed requests are retried: exponential backoff with full jitter, capped, and Retry-After honoured.

    The n-th retry waits a random time between 0 and ``min(initial_wait * 2**(n-1), max_wait)`` seconds, or
    at least what the server's ``Retry-After`` asked for (capped at ``max_retry_after``).

    Attributes:
        max_attempts: Requests per event, the first one included (1 means never retry).
        initial_wait: Upper bound of the first retry's wait, in seconds.
        max_wait: Cap on the backoff wait, in seconds.
        max_retry_after: Cap on how long a ``Retry-After`` can make one event wait, in seconds.
        time_scale: Multiplies every wait, Retry-After included. 1.0 in production; tests set 0 or 0.001 so
            that no test sleeps for real seconds.
    """

    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS)
    initial_wait: float = attrs.field(default=DEFAULT_INITIAL_WAIT, validator=_non_negative)
    max_wait: float = attrs.field(default=DEFAULT_MAX_WAIT, validator=_non_negative)
    max_retry_after: float = attrs.field(default=DEFAULT_MAX_RETRY_AFTER, validator=_non_negative)
    time_scale: float = attrs.field(default=1.0, validator=_non_negative)

    @max_attempts.validator
    def _check_attempts(self, _: attrs.Attribute[int], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {value!r}")


class Backoff:
    """
    The waits of one event's retries; made only when the event first needs a retry.
    """

    __slots__ = ("_gen", "_policy")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._gen: Generator[float, Any, None] = backoff.expo(
            base=2, factor=policy.initial_wait, max_value=policy.max_wait
        )
        self._gen.send(None)  # backoff's generators start with a bare yield

    def next_wait(self, retry_after: float | None = None) -> float:
        """
        Seconds to sleep before the next attempt.

        Args:
            retry_after: What the server's Retry-After asked for, if it sent one; a minimum, capped.
        """
        wait = backoff.full_jitter(next(self._gen))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self._policy.max_retry_after))
        return wait * self._policy.time_scale


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """
    Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or ``None`` if absent/garbled.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
