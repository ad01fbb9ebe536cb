"""
rehook_sdk.integrations.serverless: a handler called the way the Lambda runtime calls it (an event and a context
whose remaining time counts down) has delivered, or ended, every call it made when it returns.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rehook_sdk import Reason, RetryPolicy, SyncRehookClient
from rehook_sdk.integrations import serverless
from rehook_sdk.integrations.serverless import get_rehook, rehook_handler, rehook_invocation
from rehook_sdk.testing import FakeRehook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import lambda_handler


@pytest.fixture(autouse=True)
def fresh_process_client() -> Iterator[None]:
    """Each test starts as a new process would: no client yet, the default factory."""
    yield
    client = serverless._client
    if client is not None:
        client.close(timeout=0)
    serverless._client, serverless._factory = None, SyncRehookClient


def factory(fake: FakeRehook, **settings: Any) -> serverless.ClientFactory:
    def make() -> SyncRehookClient:
        return SyncRehookClient(
            fake.api_key, fake.api_secret, base_url=fake.url, retry=RetryPolicy(time_scale=0), **settings
        )

    return make


def pending(client: SyncRehookClient) -> int:
    stats = client.stats()
    return stats.in_queue + stats.in_flight


def test_every_call_is_delivered_before_the_handler_returns(threaded_fake: FakeRehook) -> None:
    @rehook_handler(client=factory(threaded_fake))
    def handler(event: dict[str, Any], context: Any) -> str:
        for i in range(event["n"]):
            _ = get_rehook().track("viewed", {"i": i}, user_id=f"u{i}")
        return "ok"

    for invocation in range(3):  # warm invocations reuse the process's client
        assert handler({"n": 50}, lambda_handler.LambdaContext(10.0)) == "ok"
        assert pending(get_rehook()) == 0
        assert len(threaded_fake.events) == 50 * (invocation + 1)
    assert get_rehook().stats().accepted == 150


def test_calls_still_undelivered_at_the_deadline_end_before_the_handler_returns(
    threaded_fake: FakeRehook, caplog: pytest.LogCaptureFixture
) -> None:
    """Rehook never answers one request: at the platform's deadline minus the margin the call ends as
    shutdown_timeout, a WARNING says so, nothing is left in flight, and the next invocation has a new client."""
    failures: list[Any] = []

    @rehook_handler(client=factory(threaded_fake, on_error=failures.append), margin=0.2)
    def handler(event: dict[str, Any], context: Any) -> None:
        _ = get_rehook().track("viewed", user_id=event["user"])

    threaded_fake.hang_next(1)
    with caplog.at_level(logging.WARNING, logger="rehook_sdk"):
        handler({"user": "u1"}, lambda_handler.LambdaContext(0.5))
    assert serverless._client is None  # closed, its calls ended: the next invocation makes a new one
    assert [f.reason for f in failures] == [Reason.SHUTDOWN_TIMEOUT]
    assert "1 call not delivered before the handler returned" in caplog.text
    handler({"user": "u2"}, lambda_handler.LambdaContext(5.0))
    assert [event["source_id"] for event in threaded_fake.events] == ["u2"]
    assert pending(get_rehook()) == 0


def test_a_handler_that_raises_still_delivers_its_calls(threaded_fake: FakeRehook) -> None:
    @rehook_handler(client=factory(threaded_fake))
    def handler(event: dict[str, Any], context: Any) -> None:
        _ = get_rehook().track("viewed", user_id="u1")
        raise ValueError("the handler's own bug")

    with pytest.raises(ValueError, match="own bug"):
        handler({}, lambda_handler.LambdaContext(5.0))
    assert len(threaded_fake.events) == 1


def test_without_a_lambda_context_the_flush_lasts_timeout(threaded_fake: FakeRehook) -> None:
    """Cloud Functions and others pass no remaining time: ``timeout`` bounds the flush instead."""
    threaded_fake.hang_next(1)
    with rehook_invocation(None, client=factory(threaded_fake), timeout=0.3) as rehook:
        _ = rehook.track("viewed", user_id="u1")
        _ = rehook.track("viewed", user_id="u2")
    assert len(threaded_fake.events) == 1
    assert serverless._client is None


def test_a_context_with_no_time_left_flushes_for_no_time(threaded_fake: FakeRehook) -> None:
    class Spent:
        def get_remaining_time_in_millis(self) -> int:
            return 100  # less than the margin

    threaded_fake.hang_next(1)
    with rehook_invocation(Spent(), client=factory(threaded_fake)) as rehook:
        _ = rehook.track("viewed", user_id="u1")
    assert threaded_fake.events == []


def test_a_factory_that_makes_something_else_is_refused() -> None:
    with pytest.raises(TypeError, match="not a SyncRehookClient"), rehook_invocation(client=lambda: "nope"):  # type: ignore[arg-type, return-value]
        pass


def test_the_lambda_example_runs(threaded_fake: FakeRehook, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/lambda_handler.py's handler, with credentials from the environment as on Lambda."""
    monkeypatch.setenv("REHOOK_API_KEY", threaded_fake.api_key)
    monkeypatch.setenv("REHOOK_API_SECRET", threaded_fake.api_secret)
    monkeypatch.setenv("REHOOK_BASE_URL", threaded_fake.url)
    answer = lambda_handler.handler({"user_id": "u9", "referral_code": "ADV001"}, lambda_handler.LambdaContext(3.0))
    assert answer == {"statusCode": 200}
    assert "u9" in threaded_fake.customers
    assert [event["event_name"] for event in threaded_fake.events] == ["signup"]
