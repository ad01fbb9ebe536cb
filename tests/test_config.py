"""
Constructing a client: credentials, settings, URL rules, and keeping the secret out of sight.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rehook_sdk import (
    AuthenticationError,
    ConfigurationError,
    Delivery,
    Reason,
    RehookClient,
    RehookError,
    RetryPolicy,
)
from rehook_sdk.testing import FakeRehook


def test_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no arguments the key and secret come from REHOOK_API_KEY / REHOOK_API_SECRET."""
    monkeypatch.setenv("REHOOK_API_KEY", "env_key")
    monkeypatch.setenv("REHOOK_API_SECRET", "env_secret")

    client = RehookClient()

    assert "env_" in repr(client)


def test_missing_credentials_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or secret anywhere: ConfigurationError naming the environment variables."""
    monkeypatch.delenv("REHOOK_API_KEY", raising=False)
    monkeypatch.delenv("REHOOK_API_SECRET", raising=False)

    with pytest.raises(ConfigurationError, match="REHOOK_API_KEY and REHOOK_API_SECRET"):
        RehookClient()
    with pytest.raises(ConfigurationError):
        RehookClient("key", "")


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """REHOOK_BASE_URL sets the base URL when none is passed."""
    monkeypatch.setenv("REHOOK_BASE_URL", "https://sandbox.example.com")
    assert "https://sandbox.example.com" in repr(RehookClient("k", "s"))


@pytest.mark.parametrize(
    "url",
    ["http://api.rehook.ai", "http://10.0.0.5:8080", "ftp://api.rehook.ai", "api.rehook.ai", "https://x/?a=1"],
)
def test_insecure_or_malformed_base_url_raises(url: str) -> None:
    """Credentials never travel unencrypted: http only to loopback; a malformed URL is refused."""
    with pytest.raises(ConfigurationError, match="base_url"):
        RehookClient("k", "s", base_url=url)


@pytest.mark.parametrize(
    "url",
    ["https://user:hunter2pass@api.rehook.ai", "http://admin:hunter2pass@127.0.0.1:8080", "https://:hunter2pass@x"],
)
def test_base_url_with_credentials_raises_without_showing_them(url: str) -> None:
    """A user:password@ in base_url would be sent nowhere useful and shown in repr: refused, password not echoed."""
    with pytest.raises(ConfigurationError, match="must not carry credentials") as raised:
        RehookClient("k", "s", base_url=url)
    assert "hunter2pass" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["https://api.rehook.ai", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8080"]
)
def test_accepted_base_urls(url: str) -> None:
    """https anywhere, http to loopback."""
    RehookClient("k", "s", base_url=url)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"conversion_events": "signup"}, "conversion_events"),
        ({"conversion_events": [1]}, "conversion_events"),
        ({"delivery": "exactly_once"}, "delivery"),
        ({"on_error": 5}, "on_error"),
        ({"session": object()}, "session"),
    ],
)
def test_invalid_settings_raise(settings: dict[str, Any], message: str) -> None:
    """Each invalid setting raises ConfigurationError (also a ValueError) naming it."""
    with pytest.raises(ConfigurationError, match=message):
        RehookClient("k", "s", **settings)
    assert issubclass(ConfigurationError, ValueError)


@pytest.mark.parametrize(
    "settings",
    [{"max_attempts": 0}, {"initial_wait": -1}, {"max_wait": float("nan")}, {"time_scale": -0.5}],
)
def test_invalid_retry_policy_raises(settings: dict[str, Any]) -> None:
    """RetryPolicy validates itself at construction."""
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**settings)


def test_delivery_accepts_enum_or_string() -> None:
    """delivery= takes the enum or its string value."""
    RehookClient("k", "s", delivery=Delivery.AT_MOST_ONCE)
    RehookClient("k", "s", delivery="at_most_once")


def test_repr_hides_the_secret_and_most_of_the_key() -> None:
    """repr() shows where the client sends, never the secret."""
    client = RehookClient("key_abcdef", "very-secret-value")

    text = repr(client)

    assert "very-secret-value" not in text
    assert "key_abcdef" not in text
    assert "key_" in text
    assert "not started" in text


async def test_secret_not_logged_at_debug(fake: FakeRehook, caplog: pytest.LogCaptureFixture) -> None:
    """Even at DEBUG with failures logged, the API secret never appears in the log."""
    caplog.set_level(logging.DEBUG)
    fake.fail_next(1, status=400)
    async with RehookClient(fake.api_key, fake.api_secret, base_url=fake.url) as client:
        outcome = await client.track("e", user_id="u1")
        await client.track("e")

    assert fake.api_secret not in caplog.text
    assert fake.api_secret not in repr(outcome)


async def test_check_auth_ok(client: RehookClient, fake: FakeRehook) -> None:
    """check_auth() returns quietly for valid credentials."""
    await client.check_auth()
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/events/segment/check-auth")]


async def test_check_auth_wrong_credentials(fake: FakeRehook) -> None:
    """check_auth() raises AuthenticationError (a RehookError) on 401, without the secret in the message."""
    async with RehookClient("test_key", "nope", base_url=fake.url) as client:
        with pytest.raises(AuthenticationError, match="401") as info:
            await client.check_auth()

    assert info.value.status == 401
    assert "UNAUTHORIZED" in info.value.body
    assert "nope" not in str(info.value)
    assert isinstance(info.value, RehookError)


async def test_check_auth_unreachable(fake: FakeRehook) -> None:
    """check_auth() against nobody raises RehookError saying Rehook could not be reached."""
    await fake.stop()
    async with fake.client() as client:
        with pytest.raises(RehookError, match="could not reach Rehook"):
            await client.check_auth()


async def test_check_auth_unexpected_status(client: RehookClient, fake: FakeRehook) -> None:
    """Any other non-2xx answer is a RehookError with the status."""
    fake.fail_next(1, status=500)
    with pytest.raises(RehookError, match="500"):
        await client.check_auth()


async def test_check_auth_on_closed_client_raises(fake: FakeRehook) -> None:
    """check_auth() after aclose() is a state error."""
    client = fake.client()
    await client.aclose()
    with pytest.raises(RehookError, match="closed"):
        await client.check_auth()


async def test_a_failed_check_auth_arms_the_fail_fast(fake: FakeRehook) -> None:
    """check_auth() got 401: later calls fail as rejected without being sent, as after a 401 on a call."""
    async with RehookClient(fake.api_key, "wrong", base_url=fake.url) as client:
        with pytest.raises(AuthenticationError):
            await client.check_auth()
        outcome = await client.track("e", user_id="u1")
    assert (outcome.reason, outcome.attempts, outcome.http_status) == (Reason.REJECTED, 0, 401)
    assert [r.path for r in fake.requests] == ["/events/segment/check-auth"]


@pytest.mark.parametrize("value", [-1, "2", True, float("nan")])
def test_atexit_timeout_must_be_a_number_or_none(value: object) -> None:
    """atexit_timeout: seconds >= 0, or None for no drain at exit."""
    with pytest.raises(ConfigurationError, match="atexit_timeout"):
        RehookClient("k", "s", atexit_timeout=value)  # type: ignore[arg-type]
