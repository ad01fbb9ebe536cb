"""
`rehook_sdk.outbox` against a real PostgreSQL (tests/conftest.py's ``postgres_url``, a schema of each test's own):
a call written in the application's transaction is delivered once that commits, never when it rolls back, and the
NOTIFY sent with the commit makes a running client take it at once. The clients here have a lease of 10 minutes,
so they look for calls nobody owns only at start and when notified: a call they deliver later than that was heard.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from rehook_sdk import Reason, RehookClient, outbox
from rehook_sdk._client import delivery_engine
from rehook_sdk.testing import FakeRehook

from .helpers import wait_until
from .test_spool import relay_once

LEASE = 600.0  # no periodic look during a test


def rows(url: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute("SELECT owner, state, message_id FROM rehook_calls ORDER BY id").fetchall()


@pytest.fixture(autouse=True)
def application(fake: FakeRehook, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox names the fake's application, from the environment as a deployed app's would (one test passes
    api_key and base_url instead)."""
    monkeypatch.setenv("REHOOK_API_KEY", fake.api_key)
    monkeypatch.setenv("REHOOK_BASE_URL", fake.url)


@pytest.fixture
async def listening(fake: FakeRehook, postgres_url: str) -> AsyncIterator[RehookClient]:
    """A client on the spool whose listener hears notifications."""
    async with fake.client(spool=postgres_url, spool_lease=LEASE) as client:
        spool: Any = delivery_engine(client).spooling.spool  # type: ignore[union-attr]
        await asyncio.to_thread(spool.listening.wait, 10)
        assert spool.listening.is_set()
        yield client


async def test_a_call_written_in_a_transaction_is_delivered_when_it_commits(
    fake: FakeRehook, postgres_url: str, listening: RehookClient
) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres_url) as connection, connection.transaction():
        await connection.execute("CREATE TABLE users (id text PRIMARY KEY)")
        await connection.execute("INSERT INTO users VALUES ('u1')")
        message_id = await outbox.atrack(connection, "signup", {"referral_code": "ADV001"}, user_id="u1")
        await asyncio.sleep(0.2)
        assert fake.events == []  # not before the commit
    await wait_until(lambda: len(fake.events) == 1, timeout=10)
    event = fake.events[0]
    assert (event["event_name"], event["source_id"], event["metadata"]) == ("signup", "u1", {"referral_code": "ADV001"})
    assert fake.requests[-1].idempotency_key == message_id
    await wait_until(lambda: rows(postgres_url) == [], timeout=10)
    assert listening.stats().adopted == 1


CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("track", ("signup", {"referral_code": "ADV001", "plan": {"tier": 2, "tags": ["a", "b"]}}), {"user_id": 42}),
    ("track", ("Order Completed", {"total": 9.5}, {"userId": "u2", "context": {"ip": "1.2.3.4"}}), {}),
    ("track", ("Order Completed", {"userId": "u3", "at": dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)}), {}),
    ("track", ("Viewed", {"n": Decimal("3"), "s": {3, 1, 2}}), {"user_id": "u4", "message_id": "m-4"}),
    ("track", ("Viewed", None), {"user_id": "u5", "integrations": {"Rehook": False}}),
    ("identify", ("u6", {"email": "u6@example.com", "referral_code": "U6"}), {"timestamp": "2026-12-02T12:00:00Z"}),
    ("identify", ({"email": "anon@example.com"},), {"anonymous_id": "a7"}),
]


async def test_a_written_call_is_sent_as_the_same_call_made_on_the_client(
    fake: FakeRehook, postgres_url: str, listening: RehookClient
) -> None:
    """Each call written by the outbox and delivered by the listening client makes the request (or the drop) the
    same call made on a client does: the same arguments are normalised the same way."""
    import psycopg

    direct = []
    async with fake.client() as client:
        for method, args, kwargs in CALLS:
            direct.append(await getattr(client, method)(*args, **kwargs))
    sent_directly = [(r.path, r.json) for r in fake.requests]
    fake.requests.clear()
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection, connection.transaction():
        ids = [await getattr(outbox, f"a{method}")(connection, *args, **kwargs) for method, args, kwargs in CALLS]
    ended = len(direct)
    await wait_until(lambda: listening.stats().accepted == ended and listening.stats().in_flight == 0, timeout=10)
    await listening.flush()
    assert sorted((r.path, repr(r.json)) for r in fake.requests) == sorted((p, repr(j)) for p, j in sent_directly)
    assert ids[3] == "m-4"
    assert {r.idempotency_key for r in fake.requests} <= set(ids)
    stats = listening.stats()
    assert (stats.delivered, dict(stats.dropped)) == (
        sum(o.delivered for o in direct),
        dict(Counter(o.reason for o in direct if not o.delivered)),
    )


async def test_a_rolled_back_call_is_never_sent(fake: FakeRehook, postgres_url: str, listening: RehookClient) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres_url) as connection:
        await outbox.aidentify(connection, "u1", {"email": "u1@example.com"})  # opens a transaction
        await connection.rollback()  # the signup failed
        async with connection.transaction():
            await outbox.aidentify(connection, "u2", {"email": "u2@example.com"})
    await wait_until(lambda: len(fake.customers) == 1, timeout=10)
    assert [request.json["source_id"] for request in fake.requests] == ["u2"]
    await wait_until(lambda: rows(postgres_url) == [], timeout=10)


def test_the_sync_api_on_a_psycopg_connection_and_a_relay_that_starts_later(
    fake_rehook_sync: FakeRehook, postgres_url: str
) -> None:
    """No client runs while the calls commit (the first write makes the spool's tables, in its transaction): the
    relay started afterwards takes them; rules apply then, as for any call (a call without a user id is dropped).
    The application is named by arguments here, not by the environment."""
    import psycopg

    key, url = fake_rehook_sync.api_key, fake_rehook_sync.url
    with psycopg.connect(postgres_url) as connection:
        with connection.transaction():
            ids = [
                outbox.track(
                    connection, "Order Completed", {"total": 10 + i}, user_id=f"u{i}", api_key=key, base_url=url
                )
                for i in range(3)
            ]
            outbox.identify(
                connection, {"email": "anonymous@example.com"}, anonymous_id="a1", api_key=key, base_url=url
            )
        assert len(set(ids)) == 3
    assert [(owner, state) for owner, state, _ in rows(postgres_url)] == [(None, 0)] * 4
    assert [message_id for _, _, message_id in rows(postgres_url)][:3] == ids

    err = asyncio.run(relay_once(fake_rehook_sync, postgres_url))
    assert "took over 4 (0 of them may have reached Rehook before); delivered 3" in err.decode()
    assert "1 anonymous_only" in err.decode()
    assert sorted(event["metadata"]["total"] for event in fake_rehook_sync.events) == [10, 11, 12]
    assert rows(postgres_url) == []


async def test_a_client_closing_with_calls_left_tells_the_clients_still_running(
    fake: FakeRehook, postgres_url: str, listening: RehookClient
) -> None:
    """A client whose Rehook does not answer closes with calls left: it lets them go with a NOTIFY, and the client
    still running takes them at once rather than in half a lease."""
    fake.hang_next(10)  # the stuck client's senders wait on these; the rest of its calls stay queued
    async with fake.client(spool=postgres_url, spool_lease=LEASE, concurrency=10) as stuck:
        handles = [stuck.track("e", {"i": i}, user_id=f"u{i}") for i in range(20)]
        await asyncio.gather(*(handle.persisted() for handle in handles))
        await stuck.aclose(timeout=0.3)
    assert {(await handle).reason for handle in handles} == {Reason.SPOOLED}
    await wait_until(lambda: len(fake.events) == 20, timeout=10)
    assert sorted(event["metadata"]["i"] for event in fake.events) == list(range(20))


async def test_a_listener_whose_connection_the_server_kills_listens_again(
    fake: FakeRehook, postgres_url: str, listening: RehookClient
) -> None:
    """The server kills the listener's connection and a call commits at once, while it is being made again: the
    listener, back, makes the client look once for what it may have missed."""
    import psycopg

    spool: Any = delivery_engine(listening).spooling.spool  # type: ignore[union-attr]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (spool.listener_name,),
        ).fetchall()
        assert killed == [(True,)]
        with admin.transaction():
            outbox.track(admin, "Order Completed", {"total": 5}, user_id="u1")
    await wait_until(lambda: len(fake.events) == 1, timeout=15)
    await asyncio.to_thread(spool.listening.wait, 10)
    with psycopg.connect(postgres_url) as connection, connection.transaction():
        outbox.track(connection, "Order Completed", {"total": 6}, user_id="u2")  # heard as before
    await wait_until(lambda: len(fake.events) == 2, timeout=10)


def test_a_django_connection_on_postgresql(postgres_url: str) -> None:
    """Django's connection on PostgreSQL, in transaction.atomic(): the call commits with the model's row, and
    a rolled-back block leaves neither (in a subprocess: Django's settings are global)."""
    code = textwrap.dedent(
        """
        import sys
        from urllib.parse import unquote, urlsplit

        import django
        from django.conf import settings

        url = urlsplit(sys.argv[1])
        schema = unquote(url.query).split("search_path=")[1]
        settings.configure(DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": url.path.lstrip("/"), "USER": url.username,
            "HOST": url.hostname, "PORT": url.port, "OPTIONS": {"options": f"-c search_path={schema}"},
        }})
        django.setup()
        from django.db import connection, transaction

        from rehook_sdk import outbox

        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE users (id text PRIMARY KEY)")
                cursor.execute("INSERT INTO users VALUES (%s)", ["u1"])
            outbox.track(connection, "signup", {"referral_code": "ADV001"}, user_id="u1")
        try:
            with transaction.atomic():
                outbox.track(connection, "signup", {"referral_code": "ADV001"}, user_id="u2")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        """
    )
    result = subprocess.run([sys.executable, "-c", code, postgres_url], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert [(owner, state) for owner, state, _ in rows(postgres_url)] == [(None, 0)]


def test_bad_arguments_raise_and_write_nothing(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        with pytest.raises(TypeError, match="event must be a str"):
            outbox.track(connection, 42, user_id="u1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="options must be a mapping"):
            outbox.track(connection, "e", {}, print, user_id="u1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="properties must be a mapping"):
            outbox.track(connection, "e", ["x"], user_id="u1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"properties\.score: nan is not a JSON number"):
            outbox.track(connection, "e", {"score": math.nan}, user_id="u1")
        with pytest.raises(ValueError, match="surrogate"):
            outbox.identify(connection, "u1", {"name": "\udc80"})
        connection.execute("CREATE TABLE kept (id int)")  # the transaction is still usable
        connection.commit()
        assert connection.execute("SELECT to_regclass('rehook_calls')").fetchone() == (None,)


def test_the_module_needs_no_psycopg_to_import() -> None:
    """Importing rehook_sdk.outbox imports no database driver: the connection brings its own."""
    code = "import sys; sys.modules['psycopg'] = None; from rehook_sdk import outbox; print(outbox.track.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "track"), result.stderr


async def test_spooled_never_goes_negative_as_outbox_calls_are_delivered(
    fake: FakeRehook, postgres_url: str, listening: RehookClient
) -> None:
    """stats().spooled counts the outbox's rows once this client takes them, and comes back to 0, never below
    (#26: it went to -2, the rows being written by another connection than the client's)."""
    import psycopg

    seen: list[int] = []
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection, connection.transaction():
        for i in range(5):
            await outbox.atrack(connection, "signup", {"referral_code": "ADV001"}, user_id=f"u{i}")

    def delivered_all() -> bool:  # as the client counts them: each one's row is ended before it is counted
        seen.append(listening.stats().spooled)
        return listening.stats().delivered == 5

    await wait_until(delivered_all, timeout=10)
    spool: Any = delivery_engine(listening).spooling.spool  # type: ignore[union-attr]
    await asyncio.wrap_future(spool.sync())
    seen.append(listening.stats().spooled)
    assert min(seen) >= 0
    assert seen[-1] == 0
