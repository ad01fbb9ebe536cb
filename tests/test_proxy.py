"""
Egress proxies (#13): an explicit proxy= (credentials included) through a real forwarding proxy on loopback, the
environment's HTTPS_PROXY/HTTP_PROXY/NO_PROXY, and the proxy's password kept out of everything the SDK shows.
"""

from __future__ import annotations

import logging

import pytest
from yarl import URL

from rehook_sdk import ConfigurationError, Reason, RehookClient
from rehook_sdk._transports import proxy_for
from rehook_sdk.testing import FakeRehook

from .helpers import ForwardProxy

SECRET = "pr0xy-s3cret"


async def test_requests_go_through_the_proxy_with_its_credentials(
    fake: FakeRehook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rehook_sdk")
    async with ForwardProxy(credentials=("team", SECRET)) as proxy:
        proxied = proxy.url.replace("http://", f"http://team:{SECRET}@")
        async with fake.client(proxy=proxied) as client:
            outcome = await client.track("e", user_id="u1")
            await client.check_auth()
            shown = repr(client)

    assert outcome.delivered
    assert [(m, t) for m, t, _ in proxy.forwarded] == [
        ("POST", f"{fake.url}/events/invoke"),
        ("GET", f"{fake.url}/events/segment/check-auth"),
    ]
    assert all(auth is not None and auth.startswith("Basic ") for _, _, auth in proxy.forwarded)
    assert len(fake.requests) == 2
    assert SECRET not in shown
    assert SECRET not in caplog.text


async def test_a_proxy_that_refuses_or_is_down_fails_the_call_without_showing_its_password(fake: FakeRehook) -> None:
    async with ForwardProxy(credentials=("team", "right")) as proxy:
        wrong = proxy.url.replace("http://", f"http://team:{SECRET}@")
        async with fake.client(proxy=wrong) as client:
            refused = await client.track("e", user_id="u1")
    async with fake.client(proxy=f"http://team:{SECRET}@127.0.0.1:9") as client:  # nothing listens on port 9
        down = await client.track("e", user_id="u1")

    assert (refused.reason, refused.http_status) == (Reason.REJECTED, 407)  # as docs/configuration.md says
    assert proxy.refused >= 1
    assert down.status.value == "failed"
    for outcome in (refused, down):
        assert SECRET not in outcome.message
        assert SECRET not in (outcome.response_body or "")
    assert fake.requests == []


def test_the_environment_chooses_the_proxy_unless_no_proxy_or_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    rehook = URL("https://api.rehook.ai")
    assert proxy_for(rehook, None) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.internal:3128")
    assert proxy_for(rehook, None) == URL("http://egress.internal:3128")
    assert proxy_for(URL("http://127.0.0.1:8080"), None) is None  # a local fake: never through the proxy
    assert proxy_for(rehook, "http://other:8080") == URL("http://other:8080")  # explicit wins
    monkeypatch.setenv("NO_PROXY", "rehook.ai")
    assert proxy_for(rehook, None) is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("https_proxy", "egress.internal:3128")  # lower case, without a scheme
    assert proxy_for(rehook, None) == URL("http://egress.internal:3128")


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "not a url", f"ftp://u:{SECRET}@h"])
def test_a_proxy_that_is_not_http_is_refused_without_repeating_it(proxy: str) -> None:
    with pytest.raises(ConfigurationError, match="proxy must be an http") as info:
        RehookClient("k", "s", proxy=proxy)
    assert SECRET not in str(info.value)
