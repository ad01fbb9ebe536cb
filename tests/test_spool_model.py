"""
The spool against a model (#26): random sequences of accept, mark, deliver, fail, crash, clean close, adopt and
replay by two processes' writers on one spool, SQLite and a real PostgreSQL. After every step (each writer's group
committed) the rows in the database are exactly the model's, no counter is negative, nothing is left uncommitted,
and the spool's own count of calls not failed is the model's.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rehook_sdk._core.types import Call, CallType
from rehook_sdk._durable.spools import PostgresSpool, Replay, SqliteSpool, encode_record, failure_text
from rehook_sdk._durable.spools.writer import SpoolWriter

from .conftest import POSTGRES_URL

APP = "a1:model"
QUEUED, SENDING, FAILED = 0, 1, 2
WRITERS = ("a", "b")


class SpoolModel(RuleBasedStateMachine):
    """
    ``rows``: user id -> (state, holder): the writer name that holds the call, or None once its holder crashed or
    closed (then any writer may adopt it). ``tokens``: writer name -> its token -> user id.
    """

    where: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.writers: dict[str, SpoolWriter[Call, Any]] = {}
        self.tokens: dict[str, dict[int, str]] = {name: {} for name in WRITERS}
        self.rows: dict[str, tuple[int, str | None]] = {}
        self.ids = itertools.count()
        self.next_token = itertools.count(1)

    @initialize()
    def open_writers(self) -> None:
        for name in WRITERS:
            self.writers[name] = self.open()

    def open(self) -> SpoolWriter[Call, Any]:
        settings: dict[str, Any] = {"app": APP, "lease": 30.0, "group_interval": 3600.0}  # sync() cuts groups
        if self.where.startswith("postgresql://"):
            return PostgresSpool(self.where, encode_record, **settings)
        return SqliteSpool(self.where, encode_record, **settings)

    def teardown(self) -> None:
        for writer in self.writers.values():
            writer.close(release=False)

    def held(self, name: str) -> list[int]:
        return sorted(self.tokens[name])

    # -- rules ----------------------------------------------------------------------------------------------

    @rule(name=st.sampled_from(WRITERS), count=st.integers(1, 4))
    def accept(self, name: str, count: int) -> None:
        for _ in range(count):
            user = f"c{next(self.ids)}"
            token = next(self.next_token)
            self.writers[name].append(token, Call(type=CallType.TRACK, user_id=user, event="e", properties={}))
            self.tokens[name][token] = user
            self.rows[user] = (QUEUED, name)

    @precondition(lambda self: any(self.tokens.values()))
    @rule(data=st.data(), action=st.sampled_from(["mark", "deliver", "fail"]))
    def end_or_mark(self, data: st.DataObject, action: str) -> None:
        name = data.draw(st.sampled_from([n for n in WRITERS if self.tokens[n]]))
        token = data.draw(st.sampled_from(self.held(name)))
        user = self.tokens[name][token]
        writer = self.writers[name]
        if action == "mark":
            if self.rows[user][0] == QUEUED:
                writer.mark_sending(token, f"m-{user}")
                self.rows[user] = (SENDING, name)
            return
        del self.tokens[name][token]
        if action == "deliver":
            writer.settle(token)
            del self.rows[user]
        else:
            reason = failure_text("rejected", "HTTP 400", maybe_delivered=False, attempts=1, http_status=400)
            writer.settle(token, failed=reason)
            self.rows[user] = (FAILED, None)

    @rule(name=st.sampled_from(WRITERS), clean=st.booleans())
    def crash_or_close(self, name: str, clean: bool) -> None:
        """The process ends (a clean close lets its calls go; a crash leaves them to whoever sees it gone), and a
        new one takes its place."""
        self.writers[name].close(release=clean)
        for user in self.tokens[name].values():
            self.rows[user] = (self.rows[user][0], None)
        self.tokens[name] = {}
        self.writers[name] = self.open()

    @rule(name=st.sampled_from(WRITERS))
    def adopt(self, name: str) -> None:
        taken = self.writers[name].adopt(1_000, lambda: next(self.next_token)).result(30)
        free = {user for user, (state, holder) in self.rows.items() if holder is None and state != FAILED}
        assert {adopted.call.user_id for _, adopted in taken} == free
        for token, adopted in taken:
            user = adopted.call.user_id
            assert user is not None
            assert adopted.state == self.rows[user][0]
            self.tokens[name][token] = user
            self.rows[user] = (self.rows[user][0], name)

    @rule(name=st.sampled_from(WRITERS))
    def replay(self, name: str) -> None:
        replay = Replay()
        taken: list[Any] = []
        while not replay.done:
            taken += self.writers[name].adopt(2, lambda: next(self.next_token), replay=replay).result(30)
        failed = {user for user, (state, _) in self.rows.items() if state == FAILED}
        assert {adopted.call.user_id for _, adopted in taken} == failed
        for token, adopted in taken:
            user = adopted.call.user_id
            assert user is not None
            assert adopted.state == QUEUED  # its failure said Rehook never had it
            self.tokens[name][token] = user
            self.rows[user] = (QUEUED, name)

    # -- what must hold -------------------------------------------------------------------------------------

    @invariant()
    def the_database_is_the_model(self) -> None:
        if not self.writers:
            return
        for writer in self.writers.values():
            writer.sync().result(30)
        found = {json.loads(record)["call"]["userId"]: state for record, state in self.stored()}
        assert found == {user: state for user, (state, _) in self.rows.items()}
        not_failed = sum(state != FAILED for state, _ in self.rows.values())
        for writer in self.writers.values():
            assert writer.uncommitted == 0
            assert writer.rows >= 0
            assert writer.bytes >= 0
            assert writer.depth().result(30) == not_failed

    def stored(self) -> list[tuple[str, int]]:
        query = "SELECT record, state FROM rehook_calls"
        if self.where.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(self.where, autocommit=True) as connection:
                return [(record, int(state)) for record, state in connection.execute(query).fetchall()]
        with contextlib.closing(sqlite3.connect(self.where)) as file, file:
            return file.execute(query).fetchall()


def test_the_sqlite_spool_follows_the_model() -> None:
    with tempfile.TemporaryDirectory() as folder:
        runs = itertools.count()

        class OnSqlite(SpoolModel):
            def __init__(self) -> None:
                self.where = str(Path(folder) / f"spool-{next(runs)}.db")
                super().__init__()

        run_machine(OnSqlite, examples=40)


def test_the_postgresql_spool_follows_the_model(postgres_url: str) -> None:
    import psycopg

    runs = itertools.count()

    class OnPostgres(SpoolModel):
        def __init__(self) -> None:
            schema = f"{postgres_url.rsplit('%3D', 1)[1]}_{next(runs)}"
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f"CREATE SCHEMA {schema}")
            self.where = f"{postgres_url.rsplit('%3D', 1)[0]}%3D{schema}"
            self.schema = schema
            super().__init__()

        def teardown(self) -> None:
            super().teardown()
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {self.schema} CASCADE")

    run_machine(OnPostgres, examples=15)


def run_machine(machine: type[RuleBasedStateMachine], examples: int) -> None:
    test = machine.TestCase
    test.settings = settings(test.settings, max_examples=examples, stateful_step_count=25)
    test().runTest()


pytestmark = pytest.mark.timeout(300)
