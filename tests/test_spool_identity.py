"""
A spool shared by several Rehook applications (#26): every row names the application (base URL and API key) that
accepted it, and clients, relays, replays and the outbox take only their own application's rows, on SQLite and a
real PostgreSQL. Spools of format version 1 (rows naming none) are migrated, and their rows taken only when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rehook_sdk import ConfigurationError, outbox
from rehook_sdk._core.types import Call, CallType
from rehook_sdk._durable.spools import encode_record
from rehook_sdk._durable.spools.identity import application_identity
from rehook_sdk.testing import FakeRehook, FaultProxy

from .helpers import cli_env, wait_until
from .test_spool import fail_calls

# Version 1 of the spool's tables, as rehook-sdk wrote them before rows named their application.
V1_SQLITE = """
CREATE TABLE rehook_spool (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rehook_owners (owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, heartbeat REAL NOT NULL);
CREATE TABLE rehook_calls (
    id INTEGER PRIMARY KEY, owner TEXT, state INTEGER NOT NULL, message_id TEXT,
    accepted REAL NOT NULL DEFAULT 0, record TEXT NOT NULL, reason TEXT
);
CREATE INDEX rehook_calls_owner ON rehook_calls (owner, state);
INSERT INTO rehook_spool VALUES ('schema', '1');
"""
V1_POSTGRES = """
CREATE TABLE rehook_spool (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE rehook_owners (owner text PRIMARY KEY, pid integer NOT NULL, host text NOT NULL,
    heartbeat timestamptz NOT NULL DEFAULT now());
CREATE TABLE rehook_calls (id bigserial PRIMARY KEY, owner text, state smallint NOT NULL, message_id text,
    accepted timestamptz NOT NULL DEFAULT now(), record text NOT NULL, reason text);
CREATE INDEX rehook_calls_owner ON rehook_calls (owner, state);
INSERT INTO rehook_spool VALUES ('schema', '1');
"""
REJECTED = '{"reason":"rejected","message":"HTTP 400","maybe_delivered":false,"attempts":1,"http_status":400}'


@pytest.fixture(params=["sqlite", "postgres"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "spool.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def other() -> AsyncIterator[FakeRehook]:
    """Another Rehook application: its own account, key and secret."""
    async with FakeRehook(api_key="key-of-b", api_secret="secret-of-b") as fake:
        yield fake


def sql(spool: str, statements: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``statements`` on the spool's database (a script when there are no params); the last one's rows."""
    if spool.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(spool, autocommit=True) as connection:
            cursor = connection.execute(statements.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description is not None else []
    with contextlib.closing(sqlite3.connect(spool)) as file, file:
        if not params and ";" in statements.strip().rstrip(";"):
            file.executescript(statements)
            return []
        return file.execute(statements, params).fetchall()


def apps(spool: str) -> list[tuple[Any, ...]]:
    """(app, state) of every row, oldest first."""
    return sql(spool, "SELECT app, state FROM rehook_calls ORDER BY id")


async def run(fake: FakeRehook, command: str, *options: str) -> tuple[int, str]:
    """``rehook COMMAND`` (``spool stats``: words) as ``fake``'s application: exit status and all it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rehook_sdk", *command.split(), "--base-url", fake.url, *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=cli_env(fake),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


def test_the_identity_is_a_keyed_digest_of_the_base_url_and_the_api_key() -> None:
    one = application_identity("https://api.rehook.ai", "key-a")
    assert one == application_identity("https://API.rehook.ai:443/", "key-a")  # the same URL, written otherwise
    assert one != application_identity("https://api.rehook.ai", "key-b")
    assert one != application_identity("https://sandbox.rehook.ai", "key-a")
    assert one != application_identity("https://api.rehook.ai/v2", "key-a")
    assert one.startswith("a1:")
    assert len(one) == 35
    assert "key-a" not in one


async def test_a_shared_spool_never_sends_one_applications_calls_with_anothers_credentials(
    fake: FakeRehook, other: FakeRehook, mute: FaultProxy, spool: str
) -> None:
    """The audit's leak: application A leaves calls with a customer's e-mail in the spool; application B's relay
    and client on the same spool take none of them (the relay says how many it left), B's own calls are delivered
    to B, and A's next client delivers A's to A."""
    client = fake.client(base_url=mute.url, spool=spool, concurrency=2, request_timeout=60)
    await client.start()
    for i in range(30):
        _ = client.identify(f"a{i}", {"email": f"a{i}@example.com"})
    await client.aclose(timeout=0.1)
    left = apps(spool)
    assert len(left) == 30
    assert {app for app, _ in left} == {application_identity(mute.url, fake.api_key)}  # A's, never the key itself

    status, said = await run(other, "relay", "--spool", spool, "--once")
    assert status == 0, said
    assert "took over 0 " in said
    assert "30 calls belong to other applications and were not taken" in said
    async with other.client(spool=spool) as b:
        assert await b.track("viewed", user_id="b1") is not None
        assert await b.flush() == 0
    assert other.customers == {}
    assert [e["source_id"] for e in other.events] == ["b1"]
    assert len(apps(spool)) == 30

    mute.clear()
    async with fake.client(base_url=mute.url, spool=spool) as a:
        await wait_until(lambda: a.stats().delivered == 30, timeout=60)
    assert sorted(fake.customers) == sorted(f"a{i}" for i in range(30))
    assert apps(spool) == []


async def test_rehook_send_from_spool_replays_only_its_applications_failed_calls(
    fake: FakeRehook, other: FakeRehook, spool: str
) -> None:
    await fail_calls(fake, spool, rejected=2, lost=0)
    status, said = await run(other, "send", "--from-spool", spool)
    assert status == 0, said
    assert "0 calls failed before, sent again" in said
    assert "2 calls belong to other applications and were not taken" in said
    assert other.events == []
    status, said = await run(fake, "send", "--from-spool", spool)
    assert status == 0, said
    assert "2 calls failed before, sent again" in said
    assert apps(spool) == []


async def test_the_outbox_names_its_application_and_only_that_application_delivers_the_call(
    fake: FakeRehook, other: FakeRehook, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's outbox row (the application from the environment) is not B's to take: B's relay leaves it, saying so;
    A's relay delivers it. Without an API key the outbox refuses to write at all."""
    import psycopg

    monkeypatch.setenv("REHOOK_API_KEY", fake.api_key)
    monkeypatch.setenv("REHOOK_BASE_URL", fake.url)
    with psycopg.connect(postgres_url) as connection, connection.transaction():
        outbox.identify(connection, "u1", {"email": "u1@example.com"})
    assert apps(postgres_url) == [(application_identity(fake.url, fake.api_key), 0)]

    status, said = await run(other, "relay", "--spool", postgres_url, "--once")
    assert (status, other.customers) == (0, {}), said
    assert "1 call belongs to other applications and was not taken" in said
    status, said = await run(fake, "relay", "--spool", postgres_url, "--once")
    assert status == 0, said
    assert list(fake.customers) == ["u1"]

    monkeypatch.delenv("REHOOK_API_KEY")
    with psycopg.connect(postgres_url) as connection, connection.transaction():
        with pytest.raises(ConfigurationError, match="the outbox needs the Rehook application's API key"):
            outbox.track(connection, "signup", user_id="u2")
        with pytest.raises(ConfigurationError, match="unencrypted"):
            outbox.track(connection, "signup", user_id="u2", api_key="k", base_url="http://example.com")
    assert apps(postgres_url) == []


def make_v1(spool: str, queued: int, failed: int) -> None:
    """A spool as version 1 left it: ``queued`` calls nobody owns and ``failed`` rejected ones, naming no app."""
    sql(spool, V1_POSTGRES if spool.startswith("postgresql://") else V1_SQLITE)
    for i in range(queued + failed):
        record = encode_record(Call(type=CallType.TRACK, user_id=f"old{i}", event="viewed", properties={"i": i}))
        state, reason = (0, None) if i < queued else (2, REJECTED)
        sql(spool, "INSERT INTO rehook_calls (state, record, reason) VALUES (?, ?, ?)", state, record, reason)


async def test_a_version_1_spool_is_migrated_and_its_rows_are_taken_only_when_asked(
    fake: FakeRehook, spool: str, caplog: pytest.LogCaptureFixture
) -> None:
    make_v1(spool, queued=3, failed=1)
    with caplog.at_level(logging.WARNING, logger="rehook_sdk"):
        async with fake.client(spool=spool) as client:
            assert await client.flush() == 0
    said = caplog.text
    assert "its format is now version 2 (rows name their application)" in said
    assert "4 calls were spooled before rows named their application; this client does not take them" in said
    assert sql(spool, "SELECT value FROM rehook_spool WHERE key = 'schema'") == [("2",)]

    status, said = await run(fake, "relay", "--spool", spool, "--once")
    assert status == 3, said  # calls left that may be this application's
    assert "3 calls name no application (spooled before rows named one) and were not taken" in said
    assert fake.events == []
    status, said = await run(fake, "relay", "--spool", spool, "--once", "--take-unidentified")
    assert status == 0, said
    assert "took over 3 " in said
    assert "delivered 3" in said

    status, said = await run(fake, "send", "--from-spool", spool)
    assert "1 call names no application" in said
    status, said = await run(fake, "send", "--from-spool", spool, "--take-unidentified")
    assert status == 0, said
    assert sorted(e["source_id"] for e in fake.events) == ["old0", "old1", "old2", "old3"]
    assert apps(spool) == []


async def test_the_outbox_migrates_a_version_1_spool_in_its_transaction(fake: FakeRehook, postgres_url: str) -> None:
    import psycopg

    make_v1(postgres_url, queued=1, failed=0)
    with psycopg.connect(postgres_url) as connection, connection.transaction():
        outbox.track(connection, "viewed", user_id="u1", api_key=fake.api_key, base_url=fake.url)
    assert apps(postgres_url) == [(None, 0), (application_identity(fake.url, fake.api_key), 0)]
    assert sql(postgres_url, "SELECT value FROM rehook_spool WHERE key = 'schema'") == [("2",)]
    status, said = await run(fake, "relay", "--spool", postgres_url, "--once")
    assert status == 3, said
    assert [e["source_id"] for e in fake.events] == ["u1"]
    assert apps(postgres_url) == [(None, 0)]
