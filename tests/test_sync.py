"""
SyncRehookClient: the same calls, outcomes and counters from code without an event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rehook_sdk import (
    AuthenticationError,
    ClientStateError,
    OutcomeStatus,
    Reason,
    RetryPolicy,
    SyncRehookClient,
)
from rehook_sdk.testing import FakeRehook

from .helpers import run_script, start_tracking_threads


@pytest.fixture
def fake() -> Iterator[FakeRehook]:
    """The fake Rehook on its own thread, since these tests block."""
    with FakeRehook.in_thread(conversion_events={"signup"}) as fake:
        yield fake


def sync_client(fake: FakeRehook, **settings: Any) -> SyncRehookClient:
    settings.setdefault("retry", RetryPolicy(time_scale=0))
    return SyncRehookClient(fake.api_key, fake.api_secret, base_url=fake.url, **settings)


def test_calls_from_plain_threads_are_delivered(fake: FakeRehook) -> None:
    """Many threads call track(); flush() waits for all; the counters are the async client's."""
    with sync_client(fake) as client:
        threads, handles = start_tracking_threads(client.track, threads=4, calls=25)
        for t in threads:
            t.join()
        assert client.flush(timeout=10) == 0
        stats = client.stats()

    assert stats.delivered == 100
    assert all(h.result(0).delivered for h in handles)
    assert len(fake.events) == 100


def test_same_signatures_and_outcomes(fake: FakeRehook) -> None:
    """identify/track/page/screen/group/alias/audience behave exactly as on the async client."""
    with sync_client(fake, conversion_events={"signup"}) as client:
        outcomes = [
            client.identify("u1", {"referral_code": "ABC"}).result(5),
            client.track("signup", {}, {"userId": "u2"}).result(5),
            client.page("Home", user_id="u1").result(5),
            client.screen("Settings", user_id="u1").result(5),
            client.group("g1", user_id="u1").result(5),
            client.alias("u1", "anon").result(5),
            client.audience("u1", "VIP Users").result(5),
        ]

    assert [(o.status, o.reason) for o in outcomes] == [
        (OutcomeStatus.DELIVERED, None),
        (OutcomeStatus.DROPPED, Reason.MISSING_REFERRAL_CODE),
        (OutcomeStatus.DROPPED, Reason.NO_MATCHING_MAPPING),  # page and screen: not sent by default
        (OutcomeStatus.DROPPED, Reason.NO_MATCHING_MAPPING),
        (OutcomeStatus.DROPPED, Reason.UNSUPPORTED_CALL),
        (OutcomeStatus.DROPPED, Reason.UNSUPPORTED_CALL),
        (OutcomeStatus.DELIVERED, None),
    ]


def test_wrong_types_raise_at_the_call(fake: FakeRehook) -> None:
    """Programmer errors raise TypeError in the caller's thread, as on the async client."""
    client = sync_client(fake)
    with pytest.raises(TypeError, match="event must be a str"):
        _ = client.track(5)  # type: ignore[arg-type]
    client.close()


def test_result_timeout(fake: FakeRehook) -> None:
    """handle.result(timeout) raises TimeoutError when the outcome takes longer."""
    fake.delay_next(1, seconds=0.5)
    with sync_client(fake) as client:
        handle = client.track("e", user_id="u1")
        with pytest.raises(TimeoutError, match="no outcome"):
            handle.result(timeout=0.01)
        assert handle.result(timeout=5).delivered


async def test_result_inside_an_event_loop_raises(fake: FakeRehook) -> None:
    """Blocking for a result inside async code is refused with a pointer to await, whether or not it is known."""
    client = sync_client(fake)
    try:
        handle = await asyncio.to_thread(client.track, "e", user_id="u1")
        with pytest.raises(RuntimeError, match="await handle"):
            handle.result()
        assert (await asyncio.to_thread(handle.result, 5)).delivered
        with pytest.raises(RuntimeError, match="await handle"):
            handle.result(0)  # known by now: still refused, so the mistake shows every time
    finally:
        await asyncio.to_thread(client.close)


def test_close_drains_and_later_calls_are_dropped(fake: FakeRehook) -> None:
    """close() delivers what is queued, stops the thread, and refuses later calls; a second close() is a no-op."""
    fake.delay_next(3, seconds=0.05)
    client = sync_client(fake)
    handles = [client.track("e", user_id=f"u{i}") for i in range(10)]

    client.close(timeout=10)
    client.close()

    assert all(h.done() and h.outcome is not None and h.outcome.delivered for h in handles)
    late = client.track("e", user_id="u1")
    assert late.result(0).reason is Reason.CLIENT_CLOSED
    assert not any(t.name == "rehook-sdk" for t in threading.enumerate())
    with pytest.raises(ClientStateError):
        client.start()


def test_close_deadline(fake: FakeRehook) -> None:
    """close(timeout) returns by its deadline; what is left fails as shutdown_timeout."""
    fake.delay_next(1, seconds=30)
    client = sync_client(fake, concurrency=1)
    slow = client.track("e", user_id="u1")
    queued = client.track("e", user_id="u2")
    started = time.monotonic()

    client.close(timeout=0.2)

    assert time.monotonic() - started < 5
    assert slow.result(0).reason is Reason.SHUTDOWN_TIMEOUT
    assert queued.result(0).reason is Reason.SHUTDOWN_TIMEOUT


def test_close_without_any_call(fake: FakeRehook) -> None:
    """A client that never sent anything closes without starting a thread, and refuses calls after."""
    client = sync_client(fake)
    client.close()
    assert client.track("e", user_id="u1").result(0).reason is Reason.CLIENT_CLOSED
    assert client.flush() == 0


def test_check_auth(fake: FakeRehook) -> None:
    """check_auth() blocks and raises AuthenticationError on bad credentials."""
    with sync_client(fake) as client:
        client.check_auth()
    with (
        SyncRehookClient(fake.api_key, "wrong", base_url=fake.url) as bad,
        pytest.raises(AuthenticationError),
    ):
        bad.check_auth()


def test_atexit_drains_an_unclosed_client(fake: FakeRehook) -> None:
    """A script that never calls close() still delivers its calls at interpreter exit."""
    fake.delay_next(3, seconds=0.1)
    result = run_script(
        f"""
        from rehook_sdk import SyncRehookClient
        client = SyncRehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}")
        for i in range(5):
            client.track("e", user_id=f"u{{i}}")
        print("exiting")
        """
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.events) == 5


def test_atexit_drain_has_a_deadline(fake: FakeRehook) -> None:
    """The exit drain gives up after atexit_timeout; the process does not hang on a silent Rehook."""
    fake.delay_next(5, seconds=30)
    started = time.monotonic()
    result = run_script(
        f"""
        from rehook_sdk import SyncRehookClient
        client = SyncRehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}", atexit_timeout=0.3)
        client.track("e", user_id="u1")
        """
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    # The lost call is reported where it is seen without any logging set up: a RuntimeWarning on stderr.
    assert "RuntimeWarning: rehook_sdk: 1 call was not delivered before the interpreter exited" in result.stderr


def test_fork_child_sends_its_own_calls_and_never_the_parents(fake: FakeRehook) -> None:
    """After os.fork() the child gets a fresh client; the parent's queued calls are delivered once, by the parent."""
    fake.delay_next(2, seconds=0.3)  # keep some of the parent's calls queued at the fork
    result = run_script(
        f"""
        import os
        from rehook_sdk import RehookClient, SyncRehookClient
        import asyncio

        sync = SyncRehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}", concurrency=1)
        parent_handles = [sync.track("parent-sync", user_id=f"p{{i}}") for i in range(4)]
        # An async client made at module level with calls buffered before any loop ran (gunicorn --preload).
        preloaded = RehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}")
        preloaded.track("parent-preloaded", user_id="p")

        pid = os.fork()
        if pid == 0:
            child = [sync.track("child-sync", user_id=f"c{{i}}") for i in range(3)]
            sync.close()
            async def child_async():
                outcome = await preloaded.track("child-async", user_id="c")
                await preloaded.aclose()
                return outcome
            ok = all(h.result(0).delivered for h in child) and asyncio.run(child_async()).delivered
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        sync.close()
        async def parent_async():
            await preloaded.aclose()
        asyncio.run(parent_async())
        assert all(h.result(0).delivered for h in parent_handles)
        print("child exit", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout
    names = sorted(e["event_name"] for e in fake.events)
    assert names == ["child-async"] + ["child-sync"] * 3 + ["parent-preloaded"] + ["parent-sync"] * 4
    assert fake.duplicates == 0


def test_fork_child_resolves_the_parents_handles_as_forked(fake: FakeRehook) -> None:
    """In the child, a handle of a call the parent still holds resolves as dropped 'forked' (no hang), and the
    call's callback runs once, in the parent only."""
    fake.delay_next(1, seconds=0.5)  # the first call is in flight at the fork, the others queued behind it
    result = run_script(
        f"""
        import asyncio, os, sys
        from rehook_sdk import RehookClient, SyncRehookClient

        ran = []
        sync = SyncRehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}", concurrency=1)
        handles = [sync.track("parent", user_id=f"p{{i}}", callback=lambda o: ran.append(os.getpid()))
                   for i in range(3)]
        preloaded = RehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}")
        queued = preloaded.track("parent-preloaded", user_id="p")

        pid = os.fork()
        if pid == 0:
            outcomes = [h.result(5) for h in handles]  # would block forever before
            async def child() -> str:
                return (await queued).reason
            reasons = [o.reason for o in outcomes] + [asyncio.run(child())]
            print("child", reasons, "callbacks", ran, "stats", sync.stats().dropped, flush=True)
            sync.close()
            os._exit(0 if reasons == ["forked"] * 4 and not ran else 3)
        _, status = os.waitpid(pid, 0)
        sync.close()
        asyncio.run(preloaded.aclose())
        assert all(h.result(0).delivered for h in handles)
        assert ran == [os.getpid()] * 3, ran
        print("child exit", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout, result.stdout
    assert "stats {}" in result.stdout  # the child's counters do not count the parent's calls
    assert sorted(e["event_name"] for e in fake.events) == ["parent"] * 3 + ["parent-preloaded"]
    assert fake.duplicates == 0


def test_fork_while_another_thread_holds_the_queue_lock(fake: FakeRehook) -> None:
    """A fork at the moment another thread is inside the queue's, the board's or the exit drain's lock does not
    deadlock the child (white box: the locks are taken by hand to make that moment certain)."""
    result = run_script(
        f"""
        import asyncio, os, threading, time
        from rehook_sdk import RehookClient, SyncRehookClient, _exit
        from rehook_sdk._client import delivery_engine

        client = RehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}")
        client.track("parent", user_id="p")
        sync = SyncRehookClient("{fake.api_key}", "{fake.api_secret}", base_url="{fake.url}")
        sync.track("sync-parent", user_id="s")  # started: its fork hook in the child releases it from the exit drain
        def hold(lock):
            with lock:
                time.sleep(1)
        for lock in (delivery_engine(client).queue._lock, delivery_engine(client).board._lock, _exit._lock):
            threading.Thread(target=hold, args=(lock,), daemon=True).start()
        time.sleep(0.2)
        pid = os.fork()
        if pid == 0:
            async def child() -> bool:
                async with client:
                    return (await client.track("child", user_id="c")).delivered
            os._exit(0 if asyncio.run(child()) else 3)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        asyncio.run(client.aclose())
        sync.close()
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout
    assert sorted(e["event_name"] for e in fake.events) == ["child", "parent", "sync-parent"]
