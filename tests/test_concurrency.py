"""
concurrency="auto" (#14): the limit found from the server's answers, against a real server on loopback that answers
429 above a concurrency it keeps to itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from rehook_sdk import ConfigurationError, Delivery, Reason, RehookClient, RetryPolicy
from rehook_sdk._client import delivery_engine
from rehook_sdk._delivery.pacing import Pacer

RETRY = RetryPolicy(max_attempts=50, time_scale=0)


class LimitedServer:
    """
    Answers each POST after ``latency`` seconds, or 429 at once when more than ``limit`` requests are in flight, or
    when it comes faster than ``rate`` per second (with ``burst`` more at once: nginx's limit_req, nodelay).
    """

    def __init__(
        self, limit: int | None, latency: float = 0.005, rate: float | None = None, burst: float = 5.0
    ) -> None:
        self.limit = limit
        self.latency = latency
        self.rate = rate
        self.burst = burst
        self._allowed_at = 0.0  # the rate's theoretical arrival time (GCRA)
        self.in_flight = 0
        self.most = 0  # the most requests in flight at once
        self.accepted = 0
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.in_flight += 1
        try:
            if (self.limit is not None and self.in_flight > self.limit) or self._over_rate():
                self.refused += 1
                return web.Response(status=429, text='{"code": "TOO_MANY_REQUESTS"}')
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(self.latency)
            self.accepted += 1
            return web.Response(status=200, text="{}")
        finally:
            self.in_flight -= 1

    def _over_rate(self) -> bool:
        if self.rate is None:
            return False
        now = asyncio.get_running_loop().time()
        if now < self._allowed_at - self.burst / self.rate:
            return True
        self._allowed_at = max(self._allowed_at, now) + 1 / self.rate
        return False

    async def __aenter__(self) -> LimitedServer:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def limited() -> AsyncIterator[LimitedServer]:
    async with LimitedServer(limit=12) as server:
        yield server


async def test_auto_finds_the_servers_limit_and_loses_nothing(limited: LimitedServer) -> None:
    """Against a server that refuses above 12 in flight: every call delivered once, few refusals, and the limit
    settles around 12."""
    async with RehookClient("k", "s", base_url=limited.url, concurrency="auto", retry=RETRY) as client:
        outcomes = await asyncio.gather(*(client.track("e", {"i": i}, user_id="u1") for i in range(3000)))
        limiter = delivery_engine(client).limiter
        assert limiter is not None
        settled = limiter.limit
    assert all(o.delivered for o in outcomes)
    assert limited.accepted == 3000
    assert limited.refused < 0.03 * 3000  # 37 here: slow start's overshoot, then one probe every few cycles
    assert 6 <= settled <= 16
    assert limited.most == 12


@pytest.mark.usefixtures("both_transports")
async def test_auto_paces_requests_against_a_rate_limit() -> None:
    """Against a server that refuses over 400 requests per second however many are in flight (where fewer in
    flight cannot help: one connection alone sends faster), auto paces its requests: every call delivered once,
    and the refusals stay a small share instead of most requests."""
    async with (
        LimitedServer(limit=None, latency=0.001, rate=400.0) as server,
        RehookClient("k", "s", base_url=server.url, concurrency="auto", retry=RETRY) as client,
    ):
        outcomes = await asyncio.gather(*(client.track("e", {"i": i}, user_id="u1") for i in range(1000)))
        limiter = delivery_engine(client).limiter
        assert limiter is not None
        assert limiter.pacer.engaged
    assert all(o.delivered for o in outcomes)
    assert server.accepted == 1000
    assert server.refused < 0.1 * (server.accepted + server.refused)


async def test_auto_grows_while_there_is_work_and_stays_under_its_maximum() -> None:
    """Without refusals the limit grows from 8 (slow start) to max_concurrency and never above it.

    The server shares the client's loop, and the limiter reads late answers as overload: the server's latency must
    dwarf what a loaded machine adds, or the figures depend on how fast the machine is (at 5 ms, 37 of 40 in flight
    on a loaded machine; at 50 ms with both cores busy, 38). 200 ms: 8 of 8 runs with both cores busy."""
    async with LimitedServer(limit=None, latency=0.2) as server:
        client = RehookClient("k", "s", base_url=server.url, concurrency="auto", max_concurrency=40, retry=RETRY)
        async with client:
            await asyncio.gather(*(client.track("e", user_id="u1") for _ in range(240)))
            limiter = delivery_engine(client).limiter
            assert limiter is not None
            # Reached, and never passed: a loaded machine's late answers may take the limit below 40 since.
            assert server.most == 40
            assert limiter.limit <= 40


async def test_a_call_waiting_for_a_permit_is_not_maybe_delivered() -> None:
    """Calls still waiting for a permit when aclose()'s deadline comes were never sent: shutdown_timeout, and not
    maybe_delivered, even at most once."""
    async with LimitedServer(limit=None, latency=0.5) as server:
        client = RehookClient(
            "k", "s", base_url=server.url, concurrency="auto", retry=RETRY, delivery=Delivery.AT_MOST_ONCE
        )
        await client.start()
        handles = [client.track("e", user_id="u1") for _ in range(40)]
        await asyncio.sleep(0.05)  # the first 8 are in flight, the rest wait for permits
        await client.aclose(timeout=0.1)
    outcomes = [await h for h in handles]
    waited = [o for o in outcomes if o.attempts == 0]
    assert len(waited) >= 20
    assert all(o.reason is Reason.SHUTDOWN_TIMEOUT and not o.maybe_delivered for o in waited)
    assert sum(o.maybe_delivered for o in outcomes) == 8


def test_max_concurrency_is_for_auto_only() -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency applies only to concurrency='auto'"):
        RehookClient("k", "s", concurrency=8, max_concurrency=16)
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        RehookClient("k", "s", concurrency="auto", max_concurrency=0)
    with pytest.raises(ConfigurationError, match="concurrency must be an int"):
        RehookClient("k", "s", concurrency="lots")  # type: ignore[arg-type]


def test_the_pacer_finds_the_rate_from_accepted_answers() -> None:
    """Engaged at 90% of the accepted rate, it spaces requests evenly; a refusal within 20 requests' time of the
    last cut changes nothing, a later one cuts to 90% of the accepted rate; accepted answers add 0.02/s each; after
    30 s without a refusal it stands down."""
    pacer = Pacer()
    for i in range(101):  # 100 accepted per second over the last second
        pacer.accepted(i / 100)
    assert pacer.slot(1.0) == 0.0  # not engaged: no wait
    pacer.engage(1.0)
    assert pacer.rate == pytest.approx(90.0, rel=0.02)
    rate = pacer.rate
    assert rate is not None
    waits = [pacer.slot(1.0) for _ in range(3)]
    assert waits == pytest.approx([0.0, 1 / rate, 2 / rate])
    assert not pacer.refused(started=1.01, now=1.02)  # sooner than 20 requests' time after the cut
    for i in range(101, 151):  # still 100 accepted per second, each adding 0.02/s while engaged
        pacer.accepted(i / 100)
    assert pacer.rate == pytest.approx(rate + 1.0)
    assert not pacer.refused(started=0.99, now=1.5)  # sent before the cut
    assert pacer.refused(started=1.4, now=1.5)
    assert pacer.rate == pytest.approx(0.9 * (rate + 1.0))
    pacer.accepted(1.6)
    assert pacer.rate == pytest.approx(0.9 * (rate + 1.0) + 0.02)
    pacer.accepted(40.0)
    assert not pacer.engaged
