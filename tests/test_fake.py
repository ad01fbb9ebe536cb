"""
The fake Rehook itself: Rehook's rules, its read endpoints, and running it from a shell.
"""

from __future__ import annotations

import asyncio
import base64
import sys

import aiohttp

from rehook_sdk.testing import FakeRehook


async def _get(fake: FakeRehook, method: str, path: str, *, auth: bool = True) -> tuple[int, object]:
    secret = fake.api_secret if auth else "wrong"
    headers = {"Authorization": "Basic " + base64.b64encode(f"{fake.api_key}:{secret}".encode()).decode()}
    async with aiohttp.ClientSession() as session, session.request(method, fake.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_unauthorized_requests_get_401_with_error_body(fake: FakeRehook) -> None:
    """Wrong credentials: 401 with Rehook's error body shape."""
    status, body = await _get(fake, "GET", "/events/segment/check-auth", auth=False)

    assert status == 401
    assert isinstance(body, dict)
    assert set(body) == {"code", "message", "details", "request_id"}


async def test_customer_read_endpoints(fake: FakeRehook) -> None:
    """Get customer, validate referral code, and list referrals after a referral flow."""
    async with fake.client() as client:
        await client.identify("adv", {"referral_code": "ADV1"})
        await client.identify("friend", {"email": "f@example.com"})
        await client.track("signup", {"referral_code": "ADV1"}, user_id="friend")

    status, customer = await _get(fake, "GET", "/customers/adv")
    assert status == 200
    assert isinstance(customer, dict)
    assert customer["referral_code"] == "ADV1"

    assert (await _get(fake, "GET", "/customers/validate-code/ADV1"))[0] == 200
    assert (await _get(fake, "POST", "/customers/validate-code/ADV1"))[0] == 200
    assert (await _get(fake, "GET", "/customers/validate-code/NOPE"))[0] == 404
    assert (await _get(fake, "GET", "/customers/nobody"))[0] == 404
    status, referrals = await _get(fake, "GET", "/customers/referral/list/adv")
    assert status == 200
    assert isinstance(referrals, list)
    assert [c["source_id"] for c in referrals] == ["friend"]
    assert (await _get(fake, "GET", "/customers/referral/list/friend"))[0] == 404


async def test_new_customers_get_a_generated_referral_code(fake: FakeRehook) -> None:
    """A customer identified without a code gets one from Rehook (six capital letters here)."""
    async with fake.client() as client:
        await client.identify("u1", {"a": 1})

    code = fake.customers["u1"]["referral_code"]
    assert len(code) == 6
    assert code.isupper()


async def test_identify_upserts_and_merges_metadata(fake: FakeRehook) -> None:
    """POST /customers twice for one source_id updates the same customer."""
    async with fake.client() as client:
        await client.identify("u1", {"a": 1})
        await client.identify("u1", {"b": 2, "referral_code": "NEW1"})

    assert len(fake.customers) == 1
    assert fake.customers["u1"]["metadata"] == {"a": 1, "b": 2, "referral_code": "NEW1"}
    assert fake.customers["u1"]["referral_code"] == "NEW1"


async def test_codes_and_referrals_follow_changes(fake: FakeRehook) -> None:
    """The fake's code and referral indexes (what keeps each request O(1)) follow a code that changes owner, and a
    friend who signs up again with another advocate's code."""
    async with fake.client(conversion_events={"signup"}) as client:
        await client.identify("adv1", {"referral_code": "OLD1"})
        await client.identify("adv1", {"referral_code": "NEW1"})  # OLD1 is free again
        taken = await client.identify("adv2", {"referral_code": "NEW1"})
        reused = await client.identify("adv2", {"referral_code": "OLD1"})
        await client.identify("friend", {})
        await client.track("signup", {"referral_code": "NEW1"}, user_id="friend")
        await client.track("signup", {"referral_code": "OLD1"}, user_id="friend")  # now referred by adv2

    assert (taken.http_status, reused.http_status) == (400, 200)
    assert fake.customers["friend"]["referred_by"] == "adv2"
    token = base64.b64encode(f"{fake.api_key}:{fake.api_secret}".encode()).decode()
    async with aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as http:
        async with http.get(f"{fake.url}/customers/validate-code/OLD1") as answer:
            assert (await answer.json())["source_id"] == "adv2"
        async with http.get(f"{fake.url}/customers/referral/list/adv1") as answer:
            assert answer.status == 404  # adv1 lost its only friend
        async with http.get(f"{fake.url}/customers/referral/list/adv2") as answer:
            [friend] = await answer.json()
        async with http.get(f"{fake.url}/customers/adv2") as answer:
            adv2 = await answer.json()
    assert friend["source_id"] == "friend"
    assert adv2["referral_count"] == 1


async def test_conversion_event_rule_in_the_fake(fake: FakeRehook) -> None:
    """The fake enforces conversion events even when the client does not know about them."""
    fake.conversion_events = frozenset({"purchase"})
    async with fake.client(conversion_events=()) as client:
        outcome = await client.track("purchase", {}, user_id="u1")

    assert outcome.http_status == 400
    assert outcome.response_body is not None
    assert "MISSING_REFERRAL_CODE" in outcome.response_body


async def test_runs_from_the_command_line() -> None:
    """python -m rehook_sdk.testing serves on the given port and prints its URL and credentials."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rehook_sdk.testing",
        "--port",
        "0",
        "--conversion-event",
        "signup",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        second = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        url = first.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        assert "REHOOK_API_KEY=test_key" in second
        fake = FakeRehook()
        fake.url = url
        async with fake.client() as client:
            rejected = await client.track("signup", {}, user_id="u1")  # the server's conversion-event rule
            delivered = await client.track("signup", {"referral_code": "X"}, user_id="u1")
        assert rejected.http_status == 400
        assert delivered.delivered
    finally:
        proc.terminate()
        await proc.wait()
