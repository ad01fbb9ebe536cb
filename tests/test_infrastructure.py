"""
Delivery truth behind real infrastructure (#25): HAProxy, nginx and squid, as Debian packages them, between the
client and the fake Rehook. Every outcome must say truthfully whether the server may have the call: a gateway's
504 while the server still works, a 502 for an answer it lost, 503s from a rate limit, a proxy's 407.

`.ci/run` installs the programs; elsewhere these tests skip, naming the package (see ``tests/infrastructure.py``).
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rehook_sdk import Delivery, Outcome, OutcomeStatus, Reason, RehookClient, RetryPolicy
from rehook_sdk.testing import FakeRehook

from .helpers import Run, check_promises, wait_until
from .infrastructure import haproxy, nginx, squid
from .test_tls import ca, tls_fake

__all__ = ["ca", "tls_fake"]  # fixtures of test_tls, used here too


def fake_port(fake: FakeRehook) -> int:
    return int(fake.url.rsplit(":", 1)[1])


def client_behind(
    fake: FakeRehook, url: str, delivery: Delivery, attempts: int = 3, **settings: object
) -> RehookClient:
    settings.setdefault("request_timeout", 5.0)
    settings.setdefault("concurrency", 8)
    settings.setdefault("retry", RetryPolicy(max_attempts=attempts, time_scale=0))
    return fake.client(base_url=url, delivery=delivery, **settings)


def sends_per_key(fake: FakeRehook) -> Counter[str]:
    return Counter(r.idempotency_key for r in fake.requests if r.idempotency_key)


@pytest.fixture(params=["haproxy", "nginx"])
async def timing_out_gateway(request: pytest.FixtureRequest, fake: FakeRehook) -> AsyncIterator[str]:
    """A gateway that gives up on the server after 100 ms and answers 504 (the server goes on processing)."""
    if request.param == "haproxy":
        async with haproxy(fake_port(fake), defaults="timeout server 100ms") as url:
            yield url
    else:
        async with nginx(fake_port(fake), location="proxy_read_timeout 100ms;") as url:
            yield url


@pytest.mark.usefixtures("both_transports")
async def test_at_most_once_sends_each_call_once_behind_a_gateway_that_times_out(
    fake: FakeRehook, timing_out_gateway: str
) -> None:
    """The server takes 300 ms, the gateway answers 504 after 100 ms: at most once, every call reaches the server
    exactly once and fails with maybe_delivered and the gateway's 504."""
    calls = 24
    fake.delay_next(calls, seconds=0.3)
    run = Run()
    async with client_behind(fake, timing_out_gateway, Delivery.AT_MOST_ONCE) as client:
        run.send(client, calls)
        await client.flush()
        await wait_until(lambda: len(fake.delivered_keys) == calls and fake.pending == 0, timeout=30)
    check_promises(run, client, fake, Delivery.AT_MOST_ONCE)
    assert {(o.reason, o.http_status, o.attempts, o.maybe_delivered) for o in run.outcomes} == {
        (Reason.RETRIES_EXHAUSTED, 504, 1, True)
    }
    assert set(sends_per_key(fake).values()) == {1}


@pytest.mark.usefixtures("both_transports")
async def test_at_least_once_says_maybe_delivered_after_504s_on_every_attempt(
    fake: FakeRehook, timing_out_gateway: str
) -> None:
    """At least once the 504s are retried; a call that met one on every attempt ends maybe delivered, saying so."""
    calls = 8
    fake.delay_next(calls * 3, seconds=0.3)
    run = Run()
    async with client_behind(fake, timing_out_gateway, Delivery.AT_LEAST_ONCE) as client:
        run.send(client, calls)
        await client.flush()
        await wait_until(lambda: fake.pending == 0 and len(fake.requests) == calls * 3, timeout=30)
    check_promises(run, client, fake, Delivery.AT_LEAST_ONCE)
    assert {(o.http_status, o.attempts, o.maybe_delivered) for o in run.outcomes} == {(504, 3, True)}
    assert all(o.message == "HTTP 504 on all 3 attempts; Rehook may have received it" for o in run.outcomes)


@pytest.mark.usefixtures("both_transports")
@pytest.mark.parametrize("delivery", list(Delivery))
async def test_randomised_refusals_and_lost_answers_behind_haproxy_keep_outcomes_truthful(
    fake: FakeRehook, delivery: Delivery
) -> None:
    """Half the requests answered 503 by the server, 5% dropped without an answer: nothing the server got is
    reported not delivered, and at most once nothing is sent after a dropped request.

    HAProxy (2.6) answers a dropped request with 502 only when it was the first on the client's connection; a later
    one it answers by closing the client's connection without a word, as a kept-alive server would, so the client
    sees its answer lost. Which requests are first depends on timing: both must end maybe delivered."""
    fake.random_faults(error_rate=0.5, status=503, reset_rate=0.05, seed=5)
    run = Run()
    async with haproxy(fake_port(fake)) as url, client_behind(fake, url, delivery) as client:
        run.send(client, 300)
        await client.flush()
    check_promises(run, client, fake, delivery)
    outcomes = run.outcomes
    assert any(r.status is None for r in fake.requests)  # the server dropped some
    not_maybe = {o.message_id for o in outcomes if not o.delivered and not o.maybe_delivered}
    assert not_maybe
    assert not (not_maybe & fake.delivered_keys)
    assert all(o.http_status == 503 for o in outcomes if o.message_id in not_maybe)
    if delivery is Delivery.AT_MOST_ONCE:  # a request the server dropped (502, or a closed connection) is the last
        last = {r.idempotency_key: r.status for r in fake.requests}
        dropped = {r.idempotency_key for r in fake.requests if r.status is None}
        assert dropped
        assert all(last[key] is None for key in dropped)
        ends = {(o.delivered, o.maybe_delivered, o.http_status) for o in outcomes if o.message_id in dropped}
        assert ends <= {(False, True, 502), (False, True, None)}


@pytest.mark.parametrize("status", [503, 429])
async def test_an_nginx_rate_limit_is_retried_at_most_once_too(fake: FakeRehook, status: int) -> None:
    """nginx's limit_req refuses requests over 100 r/s (503 by default, or 429) without forwarding them: retried
    even at most once, every call delivered exactly once."""
    calls = 60
    http = f"limit_req_zone $binary_remote_addr zone=rehook:1m rate=100r/s;\nlimit_req_status {status};"
    retry = RetryPolicy(max_attempts=100, initial_wait=0.02, max_wait=0.05)
    async with nginx(fake_port(fake), http=http, location="limit_req zone=rehook;") as url:
        run = Run()
        async with client_behind(fake, url, Delivery.AT_MOST_ONCE, retry=retry) as client:
            run.send(client, calls)
            await client.flush()
    check_promises(run, client, fake, Delivery.AT_MOST_ONCE)
    assert run.count(OutcomeStatus.DELIVERED) == calls
    assert set(sends_per_key(fake).values()) == {1}
    assert client.stats().retried > 0  # the limit refused some


async def test_nginx_closing_kept_alive_connections_often_costs_nothing(fake: FakeRehook) -> None:
    """nginx ends a client connection after 7 requests or 1 s idle: at most once, every call is still delivered."""
    run = Run()
    async with (
        nginx(fake_port(fake), http="keepalive_requests 7;\nkeepalive_timeout 1s;") as url,
        client_behind(fake, url, Delivery.AT_MOST_ONCE) as client,
    ):
        run.send(client, 300)
        await client.flush()
    check_promises(run, client, fake, Delivery.AT_MOST_ONCE)
    assert run.count(OutcomeStatus.DELIVERED) == 300


@pytest.fixture
async def squid_proxy() -> AsyncIterator[str]:
    async with squid("team", "s3cret-pw") as url:
        yield url


def check_proxy_auth(outcome: Outcome, fake: FakeRehook, password: str | None) -> None:
    """The right password delivered; a wrong or missing one was refused with 407 at once, and nothing reached Rehook."""
    if password == "s3cret-pw":
        assert outcome.delivered
        return
    assert (outcome.reason, outcome.http_status, outcome.attempts, outcome.maybe_delivered) == (
        Reason.REJECTED,
        407,
        1,
        False,
    )
    assert fake.requests == []


@pytest.mark.parametrize("password", ["s3cret-pw", "wrong-pw", None])
async def test_squid_with_basic_auth_over_http(fake: FakeRehook, squid_proxy: str, password: str | None) -> None:
    """Plain http through squid: the right password delivers; a wrong or missing one is refused with 407, once."""
    proxy = squid_proxy.replace("http://", f"http://team:{password}@") if password else squid_proxy
    async with client_behind(fake, fake.url, Delivery.AT_MOST_ONCE, proxy=proxy) as client:
        outcome = await client.track("e", user_id="u1")
    check_proxy_auth(outcome, fake, password)


@pytest.mark.parametrize("password", ["s3cret-pw", "wrong-pw", None])
async def test_squid_with_basic_auth_over_https(
    tls_fake: FakeRehook, ca: Path, squid_proxy: str, password: str | None
) -> None:
    """https through squid's CONNECT tunnel, TLS to a private CA inside: the right password delivers; a wrong or
    missing one is refused with 407 before the tunnel opens: rejected at once, never maybe delivered."""
    proxy = squid_proxy.replace("http://", f"http://team:{password}@") if password else squid_proxy
    trusting = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    async with client_behind(tls_fake, tls_fake.url, Delivery.AT_MOST_ONCE, proxy=proxy, ssl=trusting) as client:
        outcome = await client.track("e", user_id="u1")
    check_proxy_auth(outcome, tls_fake, password)
    if password != "s3cret-pw":
        assert outcome.message.startswith("the proxy refused to open the tunnel to Rehook with 407")
