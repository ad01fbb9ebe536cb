"""
rehook_sdk.integrations.django against a settings module under tests (tests/django_project): Django's test client
(sync and async views), the identify middleware, the test override, settings checked at startup, and workers
forked with and without os.register_at_fork's hooks (uWSGI without --py-call-uwsgi-fork-hooks).
"""

# ruff: noqa: E402 (Django is set up from this test's settings before its models and test tools are imported)

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_project.settings"

import django

django.setup()

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import AsyncClient, Client, override_settings

from rehook_sdk import ConfigurationError, RehookClient, RetryPolicy, SyncRehookClient
from rehook_sdk.integrations import django as integration
from rehook_sdk.integrations.django import get_rehook
from rehook_sdk.integrations.django.middleware import SESSION_KEY
from rehook_sdk.integrations.django.testing import override_rehook
from rehook_sdk.testing import FakeRehook

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", verbosity=0)


@pytest.fixture
def fake(threaded_fake: FakeRehook) -> Iterator[FakeRehook]:
    """The settings point at a fake of this test's own; the process's clients are made anew from them."""
    rehook = {
        "api_key": threaded_fake.api_key,
        "api_secret": threaded_fake.api_secret,
        "base_url": threaded_fake.url,
        "conversion_events": {"signup"},
        "retry": RetryPolicy(time_scale=0),
    }
    with override_settings(REHOOK=rehook):
        saved = integration._clients
        integration._clients = integration._Clients(integration._sync_client, integration._async_client)
        try:
            yield threaded_fake
        finally:
            made = integration._clients
            integration._clients = saved
            if made.sync is not None:
                made.sync.close(timeout=5)


def sync_rehook() -> SyncRehookClient:
    client = get_rehook()
    assert isinstance(client, SyncRehookClient)
    return client


def test_a_sync_views_calls_reach_rehook_once(fake: FakeRehook) -> None:
    http = Client()
    for i in range(20):
        answer = http.post("/signup", {"user_id": f"u{i}", "referral_code": "ADV001"}, content_type="application/json")
        assert answer.json() == {"ok": True}
    assert sync_rehook().flush(timeout=10) == 0
    assert sorted(fake.customers) == sorted(f"u{i}" for i in range(20))
    assert sorted(event["source_id"] for event in fake.events) == sorted(f"u{i}" for i in range(20))


async def test_an_async_view_uses_its_loops_client_and_a_sync_view_the_sync_one(fake: FakeRehook) -> None:
    """Under ASGI (here Django's AsyncClient), an async view gets the loop's RehookClient and can await it; a sync
    view runs in a worker thread and gets the SyncRehookClient."""
    http = AsyncClient()
    answer = await http.post("/orders", {"user_id": "u1", "total": 10}, content_type="application/json")
    assert answer.json() == {"rehook": "delivered", "reason": None}
    rehook = get_rehook()
    assert isinstance(rehook, RehookClient)
    assert rehook.stats().delivered == 1
    answer = await http.post("/signup", {"user_id": "u2", "referral_code": "A"}, content_type="application/json")
    assert answer.status_code == 200
    sync = integration._clients.sync
    assert sync is not None
    assert sync.flush(timeout=10) == 0
    assert sync.stats().delivered == 2
    await rehook.aclose()
    assert sorted(event["event_name"] for event in fake.events) == ["Order Completed", "signup"]


def test_an_async_view_on_a_loop_of_another_thread_gets_the_sync_client(fake: FakeRehook) -> None:
    """Under WSGI Django runs an async view on a new loop in a new thread per request: a client of that loop would
    die with it, so the view gets the sync client, whose handle it can await."""
    answer = Client().post("/orders", {"user_id": "u1", "total": 10}, content_type="application/json")
    assert answer.json() == {"rehook": "delivered", "reason": None}
    assert sync_rehook().stats().delivered == 1
    assert len(integration._clients.loops) == 0


def test_the_middleware_identifies_a_logged_in_user_once_per_session(fake: FakeRehook) -> None:
    ada = User.objects.create_user("ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")
    bob = User.objects.create_user("bob")
    http = Client()
    assert http.get("/").status_code == 200  # anonymous: nothing
    http.force_login(ada)
    for _ in range(3):
        assert http.get("/").status_code == 200
    assert http.session[SESSION_KEY] == str(ada.pk)
    http.force_login(bob)  # another user on this client
    assert http.get("/").status_code == 200
    assert sync_rehook().flush(timeout=10) == 0
    identified = [r.json for r in fake.requests if r.path == "/customers"]
    assert identified == [
        {"source_id": str(ada.pk), "metadata": {"email": "ada@example.com", "name": "Ada Lovelace"}},
        {"source_id": str(bob.pk), "metadata": {}},
    ]


def test_traits_can_come_from_a_function_of_the_project(fake: FakeRehook) -> None:
    user = User.objects.create_user("cy", email="cy@example.com")
    with override_settings(REHOOK_IDENTIFY_TRAITS=lambda u: {"email": u.email.upper()}):
        http = Client()
        http.force_login(user)
        assert http.get("/").status_code == 200
    assert sync_rehook().flush(timeout=10) == 0
    [identified] = [r.json for r in fake.requests if r.path == "/customers"]
    assert identified["metadata"] == {"email": "CY@EXAMPLE.COM"}


@override_rehook()
def test_override_rehook_as_a_decorator_sends_nothing() -> None:
    rehook = sync_rehook()
    answer = Client().post("/signup", {"user_id": "u1", "referral_code": "A"}, content_type="application/json")
    assert answer.status_code == 200
    assert rehook.flush(timeout=10) == 0
    assert rehook.stats().delivered == 2  # to the in-memory fake, not to tests/django_project's unreachable URL


def test_override_rehook_gives_the_fake_to_look_at() -> None:
    before = integration._clients
    with override_rehook() as recorded:
        Client().post("/signup", {"user_id": "u7", "referral_code": "A"}, content_type="application/json")
        assert sync_rehook().flush(timeout=10) == 0
        assert [event["source_id"] for event in recorded.events] == ["u7"]
        assert "u7" in recorded.customers
    assert integration._clients is before


async def test_override_rehook_in_an_async_test() -> None:
    with override_rehook() as recorded:
        answer = await AsyncClient().post("/orders", {"user_id": "u8", "total": 3}, content_type="application/json")
        assert answer.json() == {"rehook": "delivered", "reason": None}
        rehook = get_rehook()
        assert isinstance(rehook, RehookClient)
        await rehook.aclose()
    assert [event["source_id"] for event in recorded.events] == ["u8"]


def test_bad_settings_are_named() -> None:
    for value, message in [
        (["api_key"], "settings.REHOOK must be a dict"),
        ({"api_key": "k", "api_secret": "s", "concurency": 4}, "settings.REHOOK: .*concurency"),
        ({"api_key": "k", "api_secret": "s", "concurrency": 0}, "concurrency"),
    ]:
        with override_settings(REHOOK=value):
            clients = integration._Clients(integration._sync_client, integration._async_client)
            with pytest.raises(ConfigurationError, match=message):
                clients.get()


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_") and k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def test_missing_credentials_fail_at_startup() -> None:
    result = run_script(
        """
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["rehook_sdk.integrations.django"], REHOOK={"concurrency": 8})
        django.setup()
        """
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert "credentials are missing" in result.stderr


def test_calls_left_when_the_process_exits_are_delivered(threaded_fake: FakeRehook) -> None:
    """A management command or a worker ends without closing anything: the exit drain delivers what views left."""
    threaded_fake.delay_next(40, seconds=0.1)
    result = run_script(
        """
        import sys
        import django
        from django.conf import settings
        sys.path.insert(0, "examples")
        settings.configure(ROOT_URLCONF="django_app", ALLOWED_HOSTS=["testserver"],
                           INSTALLED_APPS=["rehook_sdk.integrations.django"],
                           REHOOK={"api_key": sys.argv[1], "api_secret": sys.argv[2], "base_url": sys.argv[3],
                                   "conversion_events": {"signup"}})
        django.setup()
        from django.test import Client
        http = Client()
        for i in range(20):
            body = {"user_id": f"u{i}", "referral_code": "ADV001"}
            assert http.post("/signup", body, content_type="application/json").status_code == 200
        """,
        threaded_fake.api_key,
        threaded_fake.api_secret,
        threaded_fake.url,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(event["source_id"] for event in threaded_fake.events) == sorted(f"u{i}" for i in range(20))
    assert len(threaded_fake.customers) == 20


FORKED = """
    import ctypes, os, sys
    import django
    from django.conf import settings
    settings.configure(INSTALLED_APPS=["rehook_sdk.integrations.django"],
                       REHOOK={"api_key": sys.argv[1], "api_secret": sys.argv[2], "base_url": sys.argv[3]})
    django.setup()  # makes the process's client (no thread yet)
    from rehook_sdk.integrations.django import get_rehook

    parent = get_rehook()
    if sys.argv[4] == "hooks":
        assert parent.track("viewed", user_id="before").result(10).delivered
        _ = parent.track("viewed", user_id="queued")  # Rehook answers it slowly: in flight at the fork
        pid = os.fork()
    else:  # libc's fork from C, as uWSGI forks its workers from the master: Python's at-fork hooks do not run
        pid = ctypes.PyDLL(None).fork()
    if pid == 0:
        child = get_rehook()
        assert child is not parent
        _ = child.track("viewed", user_id="child")
        sys.exit(0)  # the exit drain delivers the child's call, and only that one
    if sys.argv[4] != "hooks":
        _ = parent.track("viewed", user_id="parent")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get_rehook() is parent
    assert parent.flush(10) == 0
    parent.close()
"""


@pytest.mark.parametrize(
    ("fork", "expected"), [("hooks", ["before", "child", "queued"]), ("no-hooks", ["child", "parent"])]
)
def test_a_forked_worker_makes_its_own_client_and_sends_nothing_twice(
    threaded_fake: FakeRehook, fork: str, expected: list[str]
) -> None:
    """os.fork (gunicorn) with a call in flight at the fork; and a fork from C that runs no at-fork hook (uWSGI
    without --py-call-uwsgi-fork-hooks) of a master that made the client at startup but made no call (after a call
    the client has a thread, and CPython itself cannot reliably start threads in a child forked that way)."""
    threaded_fake.delay_next(2, seconds=0.3)
    result = run_script(FORKED, threaded_fake.api_key, threaded_fake.api_secret, threaded_fake.url, fork)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert sorted(event["source_id"] for event in threaded_fake.events) == expected


def test_django_integration_without_the_extra_names_it() -> None:
    result = run_script("import sys; sys.modules['django'] = None; import rehook_sdk.integrations.django")
    assert result.returncode != 0
    assert 'pip install "rehook-sdk[django]"' in result.stderr
