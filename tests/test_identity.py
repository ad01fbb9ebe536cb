"""
What every request says about itself (#13): the SDK's User-Agent, the user's extra headers, and the settings that
guard them.
"""

from __future__ import annotations

import re
import sys

import aiohttp
import pytest

from rehook_sdk import ConfigurationError, RehookClient, __version__
from rehook_sdk.testing import FakeRehook

USER_AGENT = re.compile(r"rehook-sdk-python/(\S+) \(python (\d+\.\d+); aiohttp (\d+\.\d+)\)")


async def test_every_request_carries_the_sdks_user_agent(fake: FakeRehook) -> None:
    async with fake.client() as client:
        await client.identify("u1", {"plan": "pro"})
        await client.track("e", user_id="u1")
        await client.check_auth()

    agents = [r.headers["User-Agent"] for r in fake.requests]
    assert len(set(agents)) == 1
    match = USER_AGENT.fullmatch(agents[0])
    assert match is not None, agents[0]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert match.groups() == (__version__, python, aiohttp.__version__.rsplit(".", 1)[0])
    assert all(r.headers["Authorization"] == "[redacted]" for r in fake.requests)  # recorded without the secret


async def test_extra_headers_reach_rehook_and_may_replace_the_user_agent(fake: FakeRehook) -> None:
    async with fake.client(headers={"X-Team": "growth", "User-Agent": "my-app/2"}) as client:
        await client.track("e", user_id="u1")
        await client.check_auth()

    for request in fake.requests:
        assert (request.headers["X-Team"], request.headers["User-Agent"]) == ("growth", "my-app/2")
    assert fake.requests[0].idempotency_key is not None  # the SDK's own headers are still there


def test_the_memory_client_sends_the_same_headers() -> None:
    fake = FakeRehook()
    with fake.memory_sync_client(headers={"X-Team": "growth"}) as client:
        assert client.track("e", user_id="u1").result(10).delivered
    [request] = fake.requests
    assert request.headers["X-Team"] == "growth"
    assert USER_AGENT.fullmatch(request.headers["User-Agent"])
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer x"}, "Authorization is set by the SDK"),
        ({"content-type": "text/plain"}, "content-type is set by the SDK"),
        ({"IDEMPOTENCY-KEY": "k"}, "IDEMPOTENCY-KEY is set by the SDK"),
        ({"X Team": "a"}, "'X Team' is not a valid header name"),
        ({"": "a"}, "'' is not a valid header name"),
        ({"X-Team": "a\r\nX-Evil: 1"}, "the value of X-Team contains the control character '\\r'"),
        ({"X-Team": 5}, "headers must map str to str"),
        (["X-Team"], "headers must be a mapping"),
    ],
)
def test_headers_that_cannot_be_set_are_refused(headers: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        RehookClient("k", "s", headers=headers)  # type: ignore[arg-type]


@pytest.mark.parametrize("base_url", ["", "   "])
def test_an_empty_base_url_is_refused_not_replaced_by_the_default(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url must be a URL"):
        RehookClient("k", "s", base_url=base_url)
