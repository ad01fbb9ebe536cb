"""
OpenTelemetry metrics (#13), read back through the OpenTelemetry SDK's in-memory reader.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from yarl import URL

from rehook_sdk import Reason, RehookClient, RetryPolicy
from rehook_sdk._client import delivery_engine
from rehook_sdk.testing import FakeRehook

from .helpers import wait_until

Points = dict[str, list[tuple[dict[str, Any], Any]]]


def collect(reader: InMemoryMetricReader) -> Points:
    """
    Every data point by metric name: (attributes, value) for sums, (attributes, data point) for histograms.
    """
    data = reader.get_metrics_data()
    points: Points = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "rehook_sdk"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = point.value if isinstance(point, NumberDataPoint) else point
                    points.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return points


def by_client(points: Points, name: str, client: str) -> list[tuple[dict[str, Any], Any]]:
    return [(a, v) for a, v in points.get(name, []) if a.get("rehook.client") == client]


def only(points: Points, name: str, client: str) -> Any:
    ((_, value),) = by_client(points, name, client)
    return value


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


def client_name(client: RehookClient) -> str:
    metrics = delivery_engine(client).metrics
    assert metrics is not None
    return metrics.name


async def test_the_counts_are_what_stats_says(fake: FakeRehook, provider: MeterProvider, reader: Any) -> None:
    """Accepted, ended (by outcome and reason), requests and retries: the same numbers as stats()."""
    async with fake.client(meter_provider=provider, conversion_events={"signup"}) as client:
        fake.fail_next(1, status=503)
        await client.track("a", user_id="u1")  # delivered on the second request
        await client.track("b")  # missing_user_id
        await client.track("signup", user_id="u1")  # missing_referral_code
        fake.fail_next(1, status=400)
        await client.identify("u2")  # rejected
        await client.track("c", user_id="u1")
        stats = client.stats()
        points = collect(reader)
    name = client_name(client)

    assert only(points, "rehook.sdk.call.accepted", name) == stats.accepted == 5
    ended = {(a["rehook.outcome"], a.get("error.type")): v for a, v in by_client(points, "rehook.sdk.call.ended", name)}
    assert ended == {
        ("delivered", None): 2,
        ("dropped", "missing_user_id"): 1,
        ("dropped", "missing_referral_code"): 1,
        ("failed", "rejected"): 1,
    }
    assert only(points, "rehook.sdk.request.sent", name) == stats.requests == 4
    assert only(points, "rehook.sdk.request.retried", name) == stats.retried == 1
    assert only(points, "rehook.sdk.queue.capacity", name) == 10_000
    assert only(points, "rehook.sdk.queue.size", name) == only(points, "rehook.sdk.call.inflight", name) == 0


async def test_durations_of_calls_and_requests(fake: FakeRehook, provider: MeterProvider, reader: Any) -> None:
    """A histogram per outcome of calls (accepted to outcome) and one per answer of requests, in seconds."""
    fake.delay_next(1, seconds=0.05)
    async with fake.client(meter_provider=provider) as client:
        await client.track("a", user_id="u1")  # answered after 50 ms
        fake.fail_next(1, status=429, retry_after="0")
        await client.identify("u1", {"plan": "pro"})
        await client.track("b")  # dropped: timed too, no request
        points = collect(reader)
    name = client_name(client)

    durations = by_client(points, "rehook.sdk.call.duration", name)
    calls = {(a["rehook.outcome"], a.get("error.type")): p for a, p in durations}
    assert set(calls) == {("delivered", None), ("dropped", "missing_user_id")}
    delivered = calls["delivered", None]
    assert isinstance(delivered, HistogramDataPoint)
    assert delivered.count == 2
    assert delivered.max >= 0.05  # the delayed call's whole wait
    assert delivered.explicit_bounds[0] == 0.005  # seconds, as OpenTelemetry's conventions advise
    assert calls["dropped", "missing_user_id"].count == 1

    requests = {
        (a["rehook.action"], a.get("http.response.status_code"), a.get("error.type")): p
        for a, p in by_client(points, "rehook.sdk.request.duration", name)
    }
    assert {key: p.count for key, p in requests.items()} == {
        ("track_event", 200, None): 1,
        ("identify_user", 429, "429"): 1,
        ("identify_user", 200, None): 1,
    }
    assert requests["track_event", 200, None].min >= 0.05
    (attributes, _) = by_client(points, "rehook.sdk.request.duration", name)[0]
    assert attributes["http.request.method"] == "POST"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == URL(fake.url).port


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("hang", "timeout"), ("refused", "cannot_connect")],
)
async def test_a_request_without_an_answer_says_why_in_a_few_words(
    fake: FakeRehook, provider: MeterProvider, reader: Any, fault: str, error_type: str
) -> None:
    """error.type of a request that got no answer is a fixed word (never the message, which holds addresses)."""
    settings: dict[str, Any] = {"meter_provider": provider, "retry": RetryPolicy(max_attempts=1, time_scale=0)}
    if fault == "hang":
        fake.hang_next(1)
        client = fake.client(request_timeout=0.2, **settings)
    else:
        client = RehookClient("k", "s", base_url="http://127.0.0.1:9", **settings)  # the discard port: refused
    async with client:
        outcome = await client.track("a", user_id="u1")
        points = collect(reader)
    assert outcome.reason is Reason.RETRIES_EXHAUSTED
    ((attributes, point),) = by_client(points, "rehook.sdk.request.duration", client_name(client))
    assert attributes["error.type"] == error_type
    assert "http.response.status_code" not in attributes
    assert point.count == 1


async def test_queue_size_and_calls_in_flight_are_observed(
    fake: FakeRehook, provider: MeterProvider, reader: Any
) -> None:
    """While a request hangs, the queue and in-flight gauges show the backlog, the capacity the setting."""
    fake.hang_next(1)
    async with fake.client(meter_provider=provider, concurrency=1, max_queue_size=50, request_timeout=1) as client:
        for i in range(6):
            _ = client.track("e", {"i": i}, user_id="u1")
        await wait_until(lambda: client.stats().in_flight == 1)
        points = collect(reader)
        name = client_name(client)
        assert only(points, "rehook.sdk.call.inflight", name) == 1
        assert only(points, "rehook.sdk.queue.size", name) == 5
        assert only(points, "rehook.sdk.queue.capacity", name) == 50
        assert only(points, "rehook.sdk.call.accepted", name) == 6
        await client.aclose(timeout=0)


async def test_two_clients_on_one_provider_are_told_apart(
    fake: FakeRehook, provider: MeterProvider, reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Each client reports under its own rehook.client; sharing a provider does not lose either one's values."""
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    async with fake.client(meter_provider=provider) as first, fake.client(meter_provider=provider) as second:
        await first.track("a", user_id="u1")
        await asyncio.gather(second.track("b", user_id="u1"), second.track("c", user_id="u1"))
        points = collect(reader)
    a, b = client_name(first), client_name(second)
    assert a != b
    assert only(points, "rehook.sdk.call.accepted", a) == 1
    assert only(points, "rehook.sdk.call.accepted", b) == 2
    assert only(points, "rehook.sdk.request.sent", b) == 2
    assert [r for r in caplog.records if r.name.startswith("opentelemetry")] == []


async def test_a_client_that_goes_stops_being_reported(fake: FakeRehook, provider: MeterProvider, reader: Any) -> None:
    """The instruments hold clients weakly: a collected client is no longer observed."""
    async with fake.client(meter_provider=provider) as client:
        await client.track("a", user_id="u1")
    name = client_name(client)
    assert only(collect(reader), "rehook.sdk.call.accepted", name) == 1
    del client
    gc.collect()
    assert by_client(collect(reader), "rehook.sdk.call.accepted", name) == []


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_global_provider_set_after_the_client_receives_its_metrics(fake_rehook_sync: FakeRehook) -> None:
    """By default the client reports to the global provider, also to one the application sets after making it:
    counts and requests at once, call durations from that provider's first collection on."""
    done = run_python(
        f"""
        import asyncio
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from rehook_sdk import RehookClient

        client = RehookClient("test_key", "test_secret", base_url={fake_rehook_sync.url!r})
        reader = InMemoryMetricReader()

        def collect():
            data = reader.get_metrics_data()
            return {{
                m.name: list(m.data.data_points)
                for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
            }}

        async def main():
            async with client:
                await client.track("a", user_id="u1")  # not timed: nothing would record it
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                await client.track("b", user_id="u1")
                collect()
                await client.track("c", user_id="u1")  # timed
            points = collect()
            print(
                points["rehook.sdk.call.accepted"][0].value,
                points["rehook.sdk.request.duration"][0].count,
                points["rehook.sdk.call.duration"][0].count,
            )

        asyncio.run(main())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "2", "1"]


def test_without_the_api_there_are_no_metrics_and_nothing_else_changes(fake_rehook_sync: FakeRehook) -> None:
    """opentelemetry-api is optional: without it calls are not timed and are delivered as always."""
    done = run_python(
        f"""
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if not installed
        from rehook_sdk import RehookClient
        from rehook_sdk._client import delivery_engine

        async def main():
            async with RehookClient("test_key", "test_secret", base_url={fake_rehook_sync.url!r}) as client:
                outcome = await client.track("a", user_id="u1")
                print(outcome.status.value, delivery_engine(client).metrics)

        asyncio.run(main())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["delivered", "None"]


async def test_a_no_op_provider_turns_the_metrics_off(fake: FakeRehook) -> None:
    """NoOpMeterProvider: nothing is recorded, and calls are not even timed (the caller pays nothing for it)."""
    async with fake.client(meter_provider=NoOpMeterProvider()) as client:
        outcome = await client.track("a", user_id="u1")
        metrics = delivery_engine(client).metrics
        assert metrics is not None
        assert not metrics.timed
    assert outcome.delivered
