from __future__ import annotations

import asyncio
import os
import secrets
import socket
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from rehook_sdk import RehookClient
from rehook_sdk.testing import FakeRehook, FaultProxy

# CI (the default) replays the same generated examples every run: a new example that fails must not surface as a
# red CI run on an unrelated change. `HYPOTHESIS_PROFILE=explore` draws new examples each run (see DEVELOPERS.md).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,  # a shared machine's pauses are not the code's slowness
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["auto", "aiohttp"])
def both_transports(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """
    Runs a test once with each transport: "auto" (the fast one wherever it can serve) and "aiohttp".
    """
    name: str = request.param
    monkeypatch.setenv("REHOOK_TRANSPORT", name)
    return name


@pytest.fixture(autouse=True)
async def nothing_left_behind() -> AsyncIterator[None]:
    """
    After each test, no client's sender task is still running and no aiohttp session is left open.
    """
    yield
    for _ in range(100):  # a background drain (an unclosed client's) may still be finishing
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith("rehook-sender") and not t.done()]
        if not left:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"{len(left)} sender tasks left running: a client was not closed")
    sessions = [s for s in _SESSIONS if not s.closed]
    if sessions:
        pytest.fail(f"{len(sessions)} aiohttp sessions left open")


# Every aiohttp session made during the tests, to check that none is left open (cheaper than scanning the heap).
_SESSIONS: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()
_original_init = aiohttp.ClientSession.__init__


def _tracked_init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    _SESSIONS.add(self)


aiohttp.ClientSession.__init__ = _tracked_init  # type: ignore[method-assign]


@pytest.fixture
async def fake(fake_rehook: FakeRehook) -> FakeRehook:
    """
    The fake Rehook with "signup" as a conversion event, as the seed examples need.
    """
    fake_rehook.conversion_events = frozenset({"signup"})
    return fake_rehook


@pytest.fixture
async def client(fake: FakeRehook) -> AsyncIterator[RehookClient]:
    """
    A started client for the fake, with retries that do not really wait.
    """
    async with fake.client() as rehook:
        yield rehook


# -- PostgreSQL -------------------------------------------------------------------------------------------------

# The server the PostgreSQL spool tests use; CI sets REHOOK_REQUIRE_POSTGRES=1, so that they fail there rather
# than skip when it cannot be reached.
POSTGRES_URL = os.environ.get("REHOOK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """
    A URL for the test PostgreSQL server whose search_path is a schema of this test's own, dropped afterwards;
    the test is skipped (failed under REHOOK_REQUIRE_POSTGRES=1) when psycopg or the server is missing.
    """
    required = os.environ.get("REHOOK_REQUIRE_POSTGRES") == "1"
    try:
        import psycopg
    except ImportError:
        if required:
            pytest.fail("REHOOK_REQUIRE_POSTGRES=1 but psycopg is not installed")
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    try:
        admin = psycopg.connect(POSTGRES_URL, connect_timeout=3, autocommit=True)
    except psycopg.Error as exc:
        if required:
            pytest.fail(f"REHOOK_REQUIRE_POSTGRES=1 but PostgreSQL at {POSTGRES_URL} cannot be reached: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} (set REHOOK_TEST_POSTGRES to another): {exc}")
    schema = f"rehook_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def silent() -> Iterator[str]:
    """A server that accepts connections and never answers (requests sit in its backlog)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
async def mute(fake: FakeRehook) -> AsyncIterator[FaultProxy]:
    """
    The fake behind a proxy that reads every request and neither forwards nor answers it until ``clear()``: Rehook
    gone silent, for clients that must leave calls in a spool. The clients after it use the proxy's URL too, with
    the fake's credentials: a spool's calls belong to one application (base URL and API key).
    """
    async with FaultProxy.for_url(fake.url) as proxy:
        proxy.random_faults([("silence_before", 1.0)])
        yield proxy


@pytest.fixture
def threaded_fake() -> Iterator[FakeRehook]:
    """The fake on its own thread, for tests whose own thread blocks (sync clients, WSGI test clients, workers)."""
    with FakeRehook.in_thread(conversion_events={"signup"}) as fake:
        yield fake
