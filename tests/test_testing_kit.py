"""
The test kit as users meet it: the pytest plugin loads by itself (entry point), in pytest-asyncio's auto and
strict modes, configured by a marker; a threaded fake for synchronous suites; the fake's inspection endpoints.
Each pytest run here is a subprocess on a throwaway project, as a user's would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rehook_sdk import Reason, SyncRehookClient
from rehook_sdk.testing import FakeRehook

USER_TESTS = """
import pytest
from rehook_sdk import SyncRehookClient


async def test_async_fixture(fake_rehook):
    async with fake_rehook.client() as client:
        outcome = await client.track("e", user_id="u1")
    assert outcome.delivered


@pytest.mark.fake_rehook(conversion_events={"signup"})
async def test_marker_configures_the_fake(fake_rehook):
    async with fake_rehook.client(conversion_events=()) as client:
        outcome = await client.track("signup", {}, user_id="u1")
    assert outcome.http_status == 400


@pytest.mark.fake_rehook(conversion_events={"signup"})
def test_sync_fixture(fake_rehook_sync):
    with SyncRehookClient(fake_rehook_sync.api_key, fake_rehook_sync.api_secret, base_url=fake_rehook_sync.url) as c:
        ok = c.track("e", user_id="u1").result(10)
        refused = c.track("signup", {}, user_id="u1", ).result(10)
    assert ok.delivered
    assert refused.http_status == 400
"""


def run_pytest(
    tmp_path: Path, ini: str, tests: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(textwrap.dedent(ini))
    (tmp_path / "test_user.py").write_text(textwrap.dedent(tests))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_the_plugin_loads_by_itself_in_either_asyncio_mode(tmp_path: Path, mode: str) -> None:
    tests = USER_TESTS if mode == "auto" else USER_TESTS.replace("async def", "@pytest.mark.asyncio\nasync def")
    result = run_pytest(tmp_path, f"[pytest]\nasyncio_mode = {mode}\n", tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_listing_the_plugin_in_pytest_plugins_as_before_still_works(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["rehook_sdk.testing.pytest_plugin"]\n')
    result = run_pytest(tmp_path, "[pytest]\nasyncio_mode = auto\n", USER_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_pytest_asyncio_the_sync_fixture_works_and_the_async_one_says_why(tmp_path: Path) -> None:
    tests = """
from rehook_sdk import SyncRehookClient


def test_sync(fake_rehook_sync):
    with SyncRehookClient("test_key", "test_secret", base_url=fake_rehook_sync.url) as client:
        assert client.track("e", user_id="u1").result(10).delivered


def test_async(fake_rehook):
    pass
"""
    # As in a project without pytest-asyncio: its module cannot be imported, and the plugins that load it are off.
    hidden = tmp_path / "hidden"
    (hidden / "pytest_asyncio").mkdir(parents=True)
    (hidden / "pytest_asyncio" / "__init__.py").write_text('raise ImportError("pytest-asyncio is not installed")\n')
    result = run_pytest(
        tmp_path, "[pytest]\n", tests, "-p", "no:asyncio", "-p", "no:aiohttp", env={"PYTHONPATH": str(hidden)}
    )
    assert "1 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "the fake_rehook fixture needs pytest-asyncio" in result.stdout


def test_a_threaded_fake_serves_synchronous_code() -> None:
    with (
        FakeRehook.in_thread(conversion_events={"signup"}) as fake,
        SyncRehookClient(fake.api_key, fake.api_secret, base_url=fake.url) as client,
    ):
        fake.fail_next(1, status=400)
        refused = client.identify("u1", {"plan": "pro"}).result(10)
        accepted = client.identify("u1", {"plan": "pro"}).result(10)
    assert (refused.http_status, accepted.delivered) == (400, True)
    assert fake.customers["u1"]["metadata"] == {"plan": "pro"}


def test_the_fake_lists_what_it_received_page_by_page() -> None:
    with FakeRehook.in_thread() as fake, SyncRehookClient(fake.api_key, fake.api_secret, base_url=fake.url) as client:
        for i in range(5):
            _ = client.identify(f"u{i}", {"i": i})
            _ = client.track("e", {"i": i}, user_id=f"u{i}")
        client.flush(10)

        def get(path: str) -> Any:
            with urllib.request.urlopen(fake.url + path) as answer:  # no credentials: the fake's own endpoints
                return json.load(answer)

        every = get("/_fake/events?limit=1000")["items"]
        events = get("/_fake/events?offset=1&limit=2")
        customers = get("/_fake/customers?limit=10")
        summary = get("/_fake/summary")
    assert (events["total"], events["offset"], events["limit"]) == (5, 1, 2)
    assert sorted(e["metadata"]["i"] for e in every) == [0, 1, 2, 3, 4]  # in the order they arrived
    assert events["items"] == every[1:3]
    assert customers["total"] == 5
    assert sorted(c["source_id"] for c in customers["items"]) == [f"u{i}" for i in range(5)]
    assert summary == {
        "requests": 10,
        "delivered": 10,
        "duplicates": 0,
        "delivered_digest": summary["delivered_digest"],
        "customers": 5,
        "events": 5,
        "recording": True,
    }


async def test_a_memory_client_needs_no_server() -> None:
    """memory_client(): the fake's rules, faults and records, without a server (the fake is never started)."""
    fake = FakeRehook(conversion_events={"signup"})
    fake.fail_next(1, status=503)
    async with fake.memory_client() as client:
        identify = await client.identify("adv", {"referral_code": "ADV1"})  # 503, then delivered on the retry
        signup = await client.track("signup", {"referral_code": "ADV1"}, user_id="friend", message_id="m1")
        missing = await client.track("signup", {}, user_id="other")  # the client's own rule: never sent
        fake.disconnect_next(1)
        lost = await client.track("e", user_id="u1", message_id="m2")  # sent again: at least once
        await client.check_auth()

    assert (identify.delivered, identify.attempts) == (True, 2)
    assert signup.delivered
    assert missing.reason is Reason.MISSING_REFERRAL_CODE
    assert (lost.delivered, lost.attempts) == (True, 2)
    assert fake.url == ""  # no server was ever started
    assert [(r.path, r.status) for r in fake.requests] == [
        ("/customers", 503),
        ("/customers", 200),
        ("/events/invoke", 200),
        ("/events/invoke", None),
        ("/events/invoke", 200),
        ("/events/segment/check-auth", 200),
    ]
    assert fake.events[0]["metadata"] == {"referral_code": "ADV1"}
    assert fake.customers["adv"]["referral_code"] == "ADV1"
    assert fake.delivered_keys == {identify.message_id, "m1", "m2"}


def test_a_memory_sync_client_and_wrong_credentials() -> None:
    fake = FakeRehook()
    with fake.memory_sync_client() as client:
        assert client.identify("u1", {"plan": "pro"}).result(10).delivered
    with fake.memory_sync_client(api_secret="wrong") as client:
        refused = client.track("e", user_id="u1").result(10)
    assert (refused.reason, refused.http_status) == (Reason.REJECTED, 401)
    assert fake.customers["u1"]["metadata"] == {"plan": "pro"}
