"""
OpenTelemetry metrics of each client, when ``opentelemetry-api`` is installed (the ``otel`` extra).

The counts are observable instruments read from the client's `Counters` when the meter provider collects: they cost
the caller and the senders nothing, and say exactly what `RehookClient.stats` says. Only the two durations are
recorded per call and per request (an OpenTelemetry SDK histogram costs ~7 us per record, measured; the API's
no-op one ~0.07 us).

Instruments are made once per meter provider and shared by every client reporting to it (a second instrument of the
same name would be refused by the SDK); each client's measurements carry its ``rehook.client`` attribute.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Sized
from typing import TYPE_CHECKING, Any

from .._core.constants import VERSION
from .._core.outcome import Outcome, OutcomeStatus
from .._transports import Attempt
from .stats import Counters

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation

__all__ = ["ClientMetrics", "metrics_for"]

# The bucket boundaries OpenTelemetry's semantic conventions advise for durations in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

_client_numbers = itertools.count()


def _api() -> Any:
    """
    The ``opentelemetry.metrics`` module, or None when the API is not installed.
    """
    try:
        from opentelemetry import metrics
    except ImportError:
        return None
    return metrics


def metrics_for(
    provider: MeterProvider | None, base_url: str, counters: Counters, queue: Sized, capacity: int, in_flight: Sized
) -> ClientMetrics | None:
    """
    The metrics of one client's delivery engine: on ``provider``, else on the global meter provider (which, until the
    application sets one, is OpenTelemetry's proxy: measurements go nowhere, and to the provider set later).
    None when the API is not installed.
    """
    api = _api()
    if provider is None and api is None:
        return None
    metrics = ClientMetrics(_instruments_of(api, provider), base_url, counters, queue, capacity, in_flight)
    metrics.timed = _records(api, provider)
    return metrics


def _records(api: Any, provider: MeterProvider | None) -> bool:
    """
    Whether measurements on ``provider`` (None: the global one) go anywhere now.
    """
    if provider is None:
        provider = api.get_meter_provider()
    if api is not None and isinstance(provider, api.NoOpMeterProvider):
        return False
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # a release that moved it: assume a provider is set
        return True
    return not isinstance(provider, _ProxyMeterProvider)


class ClientMetrics:
    """
    What one client's delivery engine reports; its observable values are read on the meter provider's thread.
    """

    def __init__(
        self,
        instruments: _Instruments,
        base_url: str,
        counters: Counters,
        queue: Sized,
        capacity: int,
        in_flight: Sized,
    ) -> None:
        self.name = f"rehook_client/{next(_client_numbers)}"
        self._instruments = instruments
        self._counters = counters
        self._queue = queue
        self._capacity = capacity
        self._in_flight = in_flight
        # Read from another thread, queued + in flight + ended can miss a call moving between them: the count of
        # accepted calls never goes back.
        self._accepted = 0
        # Whether the client times its calls (the caller reads it). False while the global provider is still
        # OpenTelemetry's default (measurements go nowhere); the first collection, which comes only from a provider
        # set since, turns it on.
        self.timed = False
        self._call_attributes: dict[tuple[OutcomeStatus, str | None], dict[str, str]] = {}
        self._request_attributes: dict[tuple[str, int | str], dict[str, str | int]] = {}
        self._base = {"rehook.client": self.name}
        host, _, port = base_url.partition("://")[2].partition("/")[0].rpartition(":")
        self._server: dict[str, str | int] = {"server.address": host or port}
        if host and port.isdigit():
            self._server["server.port"] = int(port)
        instruments.clients.add(self)

    def call_ended(self, outcome: Outcome, seconds: float) -> None:
        """
        Record how long a call took from being accepted to its outcome.
        """
        self._record_call(outcome.status, outcome.reason, seconds)

    def call_delivered(self, seconds: float) -> None:
        """
        `call_ended` for a delivered call whose `Outcome` was not built.
        """
        self._record_call(OutcomeStatus.DELIVERED, None, seconds)

    def _record_call(self, status: OutcomeStatus, reason: str | None, seconds: float) -> None:
        key = (status, reason)
        attributes = self._call_attributes.get(key)
        if attributes is None:
            attributes = self._call_attributes[key] = self.call_attributes(status, reason)
        self._instruments.call_duration.record(seconds, attributes)

    def request_done(self, action: str, attempt: Attempt, seconds: float) -> None:
        """
        Record one HTTP request's duration, with its status or why no answer came.
        """
        status = attempt.status
        key = (action, status if status is not None else _no_answer(attempt))
        attributes = self._request_attributes.get(key)
        if attributes is None:
            attributes = {**self._base, **self._server, "http.request.method": "POST", "rehook.action": action}
            if status is not None:
                attributes["http.response.status_code"] = status
                if not 200 <= status < 300:
                    attributes["error.type"] = str(status)
            else:
                attributes["error.type"] = str(key[1])
            self._request_attributes[key] = attributes
        self._instruments.request_duration.record(seconds, attributes)

    def call_attributes(self, status: OutcomeStatus, reason: str | None) -> dict[str, str]:
        attributes = {**self._base, "rehook.outcome": status.value}
        if reason is not None:
            attributes["error.type"] = reason
        return attributes

    # -- observed on collection, on the meter provider's thread --------------------------------------------

    def observe(self, what: str) -> list[tuple[int, dict[str, str]]]:
        self.timed = True
        stats = self._counters.snapshot(in_queue=len(self._queue), in_flight=len(self._in_flight))
        if what == "ended":
            ended = [(stats.delivered, self.call_attributes(OutcomeStatus.DELIVERED, None))]
            for status, counts in ((OutcomeStatus.DROPPED, stats.dropped), (OutcomeStatus.FAILED, stats.failed)):
                ended.extend((n, self.call_attributes(status, reason.value)) for reason, n in counts.items())
            return ended
        self._accepted = max(self._accepted, stats.accepted)
        values = {
            "accepted": self._accepted,
            "requests": stats.requests,
            "retries": stats.retried,
            "queue.size": stats.in_queue,
            "queue.capacity": self._capacity,
            "inflight": stats.in_flight,
        }
        return [(values[what], self._base)]


def _no_answer(attempt: Attempt) -> str:
    # error.type of a request that got no answer: a few fixed words, never the message (it holds addresses).
    error = attempt.error or ""
    if attempt.unreachable:
        return "connect_timeout" if error.startswith("connect timed out") else "cannot_connect"
    return "timeout" if error.startswith("no answer within") else "connection_lost"


class _Instruments:
    """
    The instruments on one meter provider, and the clients that report to them.
    """

    def __init__(self, meter: Meter) -> None:
        self.clients: weakref.WeakSet[ClientMetrics] = weakref.WeakSet()
        observed = (
            ("rehook.sdk.call.accepted", "counter", "{call}", "Calls that returned a handle.", "accepted"),
            (
                "rehook.sdk.call.ended",
                "counter",
                "{call}",
                "Calls that have their outcome, by rehook.outcome (delivered, dropped, failed) and error.type (the "
                "reason).",
                "ended",
            ),
            ("rehook.sdk.request.sent", "counter", "{request}", "HTTP requests made to Rehook.", "requests"),
            ("rehook.sdk.request.retried", "counter", "{retry}", "Retries scheduled.", "retries"),
            ("rehook.sdk.queue.size", "updown", "{call}", "Calls waiting in the queue for a sender.", "queue.size"),
            ("rehook.sdk.queue.capacity", "updown", "{call}", "The queue's max_queue_size.", "queue.capacity"),
            (
                "rehook.sdk.call.inflight",
                "updown",
                "{call}",
                "Calls a sender is working on (a request in flight, or waiting to be retried).",
                "inflight",
            ),
        )
        for name, kind, unit, description, what in observed:
            create = meter.create_observable_counter if kind == "counter" else meter.create_observable_up_down_counter
            create(name, callbacks=[self._callback(what)], unit=unit, description=description)
        self.call_duration: Histogram = meter.create_histogram(
            "rehook.sdk.call.duration",
            unit="s",
            description="From a call being accepted to its outcome, for calls a sender took.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.request_duration: Histogram = meter.create_histogram(
            "rehook.sdk.request.duration",
            unit="s",
            description="One HTTP request to Rehook, from sending it to its answer (or to giving up on it).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    def _callback(self, what: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            from opentelemetry.metrics import Observation

            return [Observation(value, attributes) for client in list(self.clients) for value, attributes in
                    client.observe(what)]  # fmt: skip

        return observe


# Instruments by the provider given to clients; those of clients that gave none are _GLOBAL's.
_BY_PROVIDER: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_GLOBAL: list[_Instruments] = []
_LOCK = threading.Lock()


def _instruments_of(api: Any, provider: MeterProvider | None) -> _Instruments:
    with _LOCK:
        if provider is None or (api is not None and provider is api.get_meter_provider()):
            # The global provider: one set of instruments, made through the proxy if no provider is set yet (it
            # forwards to the one set later) or on the provider set. A client given that same provider shares them:
            # instruments of the same names made twice on one meter would lose the second set's callbacks.
            if not _GLOBAL:
                _GLOBAL.append(_Instruments(api.get_meter("rehook_sdk", VERSION)))
            return _GLOBAL[0]
        instruments = _BY_PROVIDER.get(provider)
        if instruments is None:
            instruments = _BY_PROVIDER[provider] = _Instruments(provider.get_meter("rehook_sdk", VERSION))
        return instruments
