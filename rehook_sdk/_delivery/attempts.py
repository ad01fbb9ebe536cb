"""
One request to Rehook until it ends: each attempt through the limiter and the transport, what the answer proves
(`judge`), retries with backoff and Retry-After, the reachability gate's turns, the delivery guarantee, and the
401 latch that fails every later call without sending it.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic

from .._core.outcome import ActionResult, Reason
from .._core.retry import Backoff, Delivery, RetryPolicy
from .._durable.spooling import Spooling
from .._mapping.actions import Request
from .._mapping.mappings import CompiledMapping
from .._report.metrics import ClientMetrics
from .._report.stats import Counters
from .._transports import Attempt, Transport
from . import history as words
from .concurrency import Limiter
from .proof import Next, Verdict, judge
from .reachability import Reachability, Turn

__all__ = ["Attempts"]

logger = logging.getLogger("rehook_sdk")


class _Tries:
    """
    What one request's attempts have come to so far.
    """

    __slots__ = ("attempts", "backoff", "debug", "history", "last", "maybe", "probing", "sending")

    def __init__(self, debug: bool) -> None:
        self.attempts = 0
        self.last = _NO_ATTEMPT
        self.maybe = False  # some attempt may have been acted on by Rehook: sticky, whatever later attempts say
        self.history: list[str] | None = None  # what each failed attempt came to, made at the first failure
        self.backoff: Backoff | None = None
        self.sending = False
        self.probing = False  # this request holds the reachability gate's probe
        self.debug = debug  # DEBUG lines about each attempt: decided once per request


class Attempts:
    """
    Sends requests for the senders of one client: ``deliver`` is one request's every attempt.
    """

    def __init__(
        self,
        transport: Transport,
        retry: RetryPolicy,
        delivery: Delivery,
        counters: Counters,
        limiter: Limiter | None,
        metrics: ClientMetrics | None,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.delivery = delivery
        self.limiter = limiter
        self.gate = Reachability(retry)
        self.auth_failure: Attempt | None = None
        self.spooling: Spooling | None = None  # with a spool: a retry first checks the call is still this process's
        self._counters = counters
        self._metrics = metrics

    async def deliver(
        self,
        mapping: CompiledMapping,
        request: Request,
        key: str,
        results: list[ActionResult],
        fence: tuple[int, str] | None = None,
    ) -> None:
        """
        Send one request with retries and append its `ActionResult` (also when cancelled, then re-raise).

        ``fence`` is the call's (token, messageId) with a spool: once this process has been presumed dead, each
        retry first checks that the call is still its own (raising `TakenOver` when another process took it).
        """
        tries = _Tries(logger.isEnabledFor(logging.DEBUG))
        gate = self.gate
        spooling = self.spooling
        try:
            while True:
                if tries.attempts and spooling is not None and fence is not None and spooling.spool.presumed_dead:
                    await spooling.before_request(*fence)  # another process may have taken it: then not retried
                if self.auth_failure is not None:
                    results.append(self._rejected(tries, mapping, key))
                    return
                if gate.down and not tries.probing:
                    turn = await gate.wait()
                    if turn is Turn.PROBE:
                        tries.probing = True
                    elif isinstance(turn, Attempt):  # the probe could not connect while this call waited
                        ended = self._unreachable(tries, mapping, key, turn)
                        if ended is None:
                            continue
                        results.append(ended)
                        return
                last = await self._attempt(tries, mapping, request, key)
                verdict = judge(last)
                if verdict.next is Next.DONE:
                    results.append(words.delivered(mapping, key, last, tries.attempts))
                    return
                ended = self._failed(tries, mapping, key, verdict)
                if ended is not None:
                    results.append(ended)
                    return
                self._counters.retry()
                if gate.down:  # one shared backoff and one probe at a time: the gate says who tries next
                    if tries.probing:
                        await gate.probe_failed(last)
                    continue
                await asyncio.sleep(self._wait(tries, key))
        except asyncio.CancelledError:
            results.append(_stopped(tries, mapping, key))
            raise
        finally:
            if tries.probing:
                gate.release()

    def _rejected(self, tries: _Tries, mapping: CompiledMapping, key: str) -> ActionResult:
        """
        Not sent: a 401 earlier latched this client's credentials as refused.
        """
        assert self.auth_failure is not None
        tries.last = self.auth_failure
        message = "not sent: Rehook refused this client's API key/secret (401) earlier"
        if tries.history:
            message += f"; before that, {words.summary(tries.history)}"
        return words.failed(mapping, key, tries.last, tries.attempts, Reason.REJECTED, message, tries.maybe)

    async def _attempt(self, tries: _Tries, mapping: CompiledMapping, request: Request, key: str) -> Attempt:
        """
        One attempt: through the limiter (when concurrency is adaptive) and the transport, counted and measured.
        """
        limiter = self.limiter
        metrics = self._metrics
        if limiter is not None and not limiter.try_acquire():
            await limiter.acquire()
        tries.attempts += 1
        tries.sending = True
        if tries.debug:
            fields = words.fields(key, tries.attempts)
            logger.debug("POST %s, message id %s, attempt %d", request.path, key, tries.attempts, extra=fields)
        started = monotonic() if metrics is not None else 0.0
        if limiter is None:
            last = await self.transport.post(request, key)
        else:
            last = await self._post_limited(limiter, request, key)
        tries.sending = False
        tries.last = last
        self._counters.requests += 1
        if metrics is not None:
            metrics.request_done(mapping.action.value, last, monotonic() - started)
        self.gate.note(last)
        if tries.debug:
            status = last.status
            answer = f"HTTP {status}" if status is not None else last.error
            fields = words.fields(key, tries.attempts, status)
            logger.debug("answer to message id %s, attempt %d: %s", key, tries.attempts, answer, extra=fields)
        return last

    def _failed(self, tries: _Tries, mapping: CompiledMapping, key: str, verdict: Verdict) -> ActionResult | None:
        """
        After an attempt that did not deliver: the request's end, or ``None`` when it is retried.
        """
        last = tries.last
        if last.status == 401 and not last.from_proxy:
            self.note_auth_failure(last)
        tries.maybe = maybe = tries.maybe or verdict.maybe_acted
        history = tries.history = words.noted(tries.history, last)
        if verdict.next is Next.FINAL:
            assert verdict.reason is not None
            message = words.refused(last, verdict.reason, history, maybe)
            return words.failed(mapping, key, last, tries.attempts, verdict.reason, message, maybe)
        if maybe and self.delivery is Delivery.AT_MOST_ONCE:
            message = f"{words.summary(history)}; not retried (delivery=at_most_once): Rehook may have received it"
        elif tries.attempts >= self.retry.max_attempts:
            message = words.exhausted(history, maybe)
        else:
            return None
        return words.failed(mapping, key, last, tries.attempts, Reason.RETRIES_EXHAUSTED, message, maybe)

    def _unreachable(self, tries: _Tries, mapping: CompiledMapping, key: str, turn: Attempt) -> ActionResult | None:
        """
        The gate's probe could not connect while this request waited: that counts as its attempt too.
        """
        tries.attempts += 1
        tries.last = turn
        tries.history = words.noted(tries.history, turn)
        if tries.attempts < self.retry.max_attempts:
            return None
        message = words.exhausted(tries.history, tries.maybe)
        return words.failed(mapping, key, turn, tries.attempts, Reason.RETRIES_EXHAUSTED, message, tries.maybe)

    def _wait(self, tries: _Tries, key: str) -> float:
        """
        Seconds until the next attempt: the backoff's, or the answer's Retry-After.
        """
        tries.backoff = backoff = tries.backoff or Backoff(self.retry)
        wait = backoff.next_wait(tries.last.retry_after)
        if tries.debug:
            logger.debug(
                "retrying message id %s in %.3f s (attempt %d of %d next)",
                key,
                wait,
                tries.attempts + 1,
                self.retry.max_attempts,
                extra=words.fields(key, tries.attempts, tries.last.status),
            )
        return wait

    async def _post_limited(self, limiter: Limiter, request: Request, key: str) -> Attempt:
        # The permit is held (acquired by the caller) for exactly this request.
        loop = asyncio.get_running_loop()
        started = loop.time()
        load = limiter.in_flight
        attempt: Attempt | None = None
        try:
            attempt = await self.transport.post(request, key)
            return attempt
        finally:
            status = attempt.status if attempt is not None else None
            timed_out = attempt is not None and attempt.maybe_sent and status is None
            limiter.release(started, loop.time(), status, timed_out, load)

    def note_auth_failure(self, attempt: Attempt) -> None:
        """
        Rehook refused the credentials: fail every queued and later call without sending it.
        """
        if self.auth_failure is None:
            self.auth_failure = attempt
            logger.error(
                "Rehook refused the API key/secret (HTTP 401). Every queued and later call on this "
                "client fails as 'rejected' without being sent. Check REHOOK_API_KEY/REHOOK_API_SECRET "
                "(or the key and secret given to RehookClient) and that the application exists."
            )


def _stopped(tries: _Tries, mapping: CompiledMapping, key: str) -> ActionResult:
    """
    The `ActionResult` of a request whose sender was cancelled (the client stopping).
    """
    if tries.sending:
        where = "while its request was in flight"
    elif tries.attempts:
        where = "while it waited to be retried"
    else:
        where = "before its first request was sent"
    message = f"the client stopped {where}"
    if tries.history:
        message += f" ({words.summary(tries.history)})"
    maybe = tries.sending or tries.maybe
    if maybe:
        message += ": Rehook may have received it"
    return words.failed(mapping, key, tries.last, tries.attempts, Reason.SHUTDOWN_TIMEOUT, message, maybe)


_NO_ATTEMPT = Attempt()
