"""
Interpreter exit, in real subprocesses: every call a script made is delivered by the exit drain, or reported with a
warning that Python's default filters show (and written to the dead-letter file). delivered + reported == made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rehook_sdk.testing import FakeRehook

from .helpers import run_script


@pytest.fixture
def fake() -> Iterator[FakeRehook]:
    with FakeRehook.in_thread() as running:
        yield running


def test_sync_client_in_a_local_variable(fake: FakeRehook) -> None:
    """A SyncRehookClient kept only in a function's local variable: its 500 calls are delivered at exit."""
    result = run_script(
        """
        from rehook_sdk import SyncRehookClient

        def main():
            client = SyncRehookClient()
            for i in range(500):
                client.track("e", {"i": i}, user_id=f"u{i}")

        main()
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.delivered_keys) == 500
    assert "Warning" not in result.stderr


def test_sigterm_mapped_to_sys_exit(fake: FakeRehook) -> None:
    """SIGTERM handled as sys.exit() (as servers and CLIs do) in the middle of main(): every call is delivered."""
    result = run_script(
        """
        import os, signal, sys
        from rehook_sdk import SyncRehookClient

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

        def main():
            client = SyncRehookClient()
            for i in range(300):
                client.track("e", user_id=f"u{i}")
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()

        main()
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.delivered_keys) == 300


def test_exit_with_dead_letter_reports_what_it_could_not_deliver(fake: FakeRehook, tmp_path: Path) -> None:
    """Rehook silent at exit, dead_letter= set: no error, a visible warning, and every call is in the file."""
    fake.hang_next(10_000)
    path = tmp_path / "dead.jsonl"
    result = run_script(
        f"""
        from rehook_sdk import SyncRehookClient

        client = SyncRehookClient(dead_letter={str(path)!r}, atexit_timeout=0.5, request_timeout=30)
        for i in range(2000):
            client.track("e", user_id=f"u{{i}}")
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert "can't register atexit" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "RuntimeWarning: rehook_sdk: 2000 calls were not delivered before the interpreter exited" in result.stderr
    assert str(path) in result.stderr
    users = [json.loads(line)["call"]["userId"] for line in path.read_text().splitlines()]
    assert sorted(users) == sorted(f"u{i}" for i in range(2000))


def test_async_client_that_never_starts(fake: FakeRehook) -> None:
    """A module-level RehookClient tracking at import, no loop ever running: delivered at exit (with a host name to
    resolve, which at exit cannot use an executor thread on Python 3.12)."""
    port = fake.url.rsplit(":", 1)[1]
    result = run_script(
        f"""
        from rehook_sdk import RehookClient

        rehook = RehookClient(base_url="http://localhost:{port}")
        for i in range(50):
            rehook.track("booted", user_id=f"worker-{{i}}")
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.delivered_keys) == 50


def test_async_client_that_never_starts_and_cannot_deliver(fake: FakeRehook, tmp_path: Path) -> None:
    """The same with Rehook silent: what is left is reported by a RuntimeWarning and the dead-letter file."""
    fake.hang_next(10_000)
    path = tmp_path / "dead.jsonl"
    result = run_script(
        f"""
        from rehook_sdk import RehookClient

        def boot():
            rehook = RehookClient(dead_letter={str(path)!r}, atexit_timeout=0.3, request_timeout=30)
            for i in range(50):
                rehook.track("booted", user_id=f"worker-{{i}}")

        boot()  # the client is garbage-collected here, its calls unsent
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning: rehook_sdk: 50 calls were not delivered" in result.stderr
    assert len(path.read_text().splitlines()) == 50


def test_forgotten_aclose(fake: FakeRehook) -> None:
    """asyncio.run(main()) that tracks 100 calls and never closes the client: all 100 are delivered at exit."""
    result = run_script(
        """
        import asyncio
        from rehook_sdk import RehookClient

        async def main():
            client = RehookClient()
            for i in range(100):
                client.track("e", user_id=f"u{i}")

        asyncio.run(main())
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.delivered_keys) == 100


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
def test_forgotten_aclose_with_calls_in_flight(fake: FakeRehook, delivery: str) -> None:
    """The loop ends while requests are in flight: at least once they are sent again at exit; at most once they are
    reported by a visible warning. The rest is delivered either way."""
    fake.hang_next(5)
    result = run_script(
        f"""
        import asyncio, json, os, urllib.request
        from rehook_sdk import RehookClient

        client = RehookClient(concurrency=5, request_timeout=30, delivery="{delivery}")

        def requests_seen():  # what the fake received (its summary needs no credentials)
            with urllib.request.urlopen(os.environ["REHOOK_BASE_URL"] + "/_fake/summary") as answer:
                return json.load(answer)["requests"]

        async def main():
            for i in range(100):
                client.track("e", user_id=f"u{{i}}")
            while await asyncio.to_thread(requests_seen) < 5:  # the 5 hanging requests reached the fake
                await asyncio.sleep(0.01)

        asyncio.run(main())
        print(client.stats().failed_total)
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    if delivery == "at_most_once":
        assert (
            "RuntimeWarning: unclosed RehookClient: the event loop stopped without aclose(); 5 calls" in result.stderr
        )
        assert result.stdout.strip() == "5"
        assert len(fake.delivered_keys) == 95
    else:
        assert result.stderr == ""
        assert result.stdout.strip() == "0"
        assert len(fake.delivered_keys) == 100


def test_client_on_a_loop_in_another_thread(fake: FakeRehook) -> None:
    """The client runs on a loop in a daemon thread that is still running at exit: drained on that loop."""
    fake.delay_next(20, seconds=0.05)  # still in flight or queued when the script ends
    result = run_script(
        """
        import asyncio, threading
        from rehook_sdk import RehookClient

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        client = RehookClient()

        async def send():
            for i in range(200):
                client.track("e", user_id=f"u{i}")

        asyncio.run_coroutine_threadsafe(send(), loop).result()
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.delivered_keys) == 200


def test_client_on_a_loop_stopped_but_not_closed(fake: FakeRehook) -> None:
    """run_until_complete() returned and the loop was left open (not closed): the exit drain runs it again."""
    result = run_script(
        """
        import asyncio
        from rehook_sdk import RehookClient

        client = RehookClient()

        async def main():
            for i in range(100):
                client.track("e", user_id=f"u{i}")

        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(fake.delivered_keys) == 100


def test_dead_letter_lines_pending_at_aclose_are_written_before_exit(fake: FakeRehook, tmp_path: Path) -> None:
    """aclose() returned at its deadline with lines still being written, then the script ended at once: the
    interpreter waits for the writer thread, so every line is on disk."""
    path = tmp_path / "dead.jsonl"
    result = run_script(
        f"""
        import asyncio
        from rehook_sdk import RehookClient

        client = RehookClient(dead_letter={str(path)!r}, max_queue_size=50_000)
        for i in range(50_000):
            client.track("e", user_id=f"u{{i}}")
        asyncio.run(client.aclose(0.001))
        """,
        fake,
    )
    assert result.returncode == 0, result.stderr
    assert len(path.read_bytes().splitlines()) == 50_000


def test_a_child_forked_without_the_hooks_exits_without_its_parents_calls(fake: FakeRehook) -> None:
    """A child forked from C (uWSGI without --py-call-uwsgi-fork-hooks: no os.register_at_fork hook runs) holds a
    copy of its parent's started SyncRehookClient, thread and all, though the thread is not in the child: its exit
    drain must see that, not wait on that thread's loop forever, and not send the parent's calls."""
    fake.delay_next(1, seconds=0.5)
    result = run_script(
        """
        import ctypes, os
        from rehook_sdk import SyncRehookClient

        client = SyncRehookClient()
        _ = client.track("e", user_id="parent")  # in flight (slow answer) when the process forks
        pid = ctypes.PyDLL(None).fork()
        if pid == 0:
            raise SystemExit(0)  # the exit drain runs here, in the child
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        client.close()
        """,
        fake,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert [event["source_id"] for event in fake.events] == ["parent"]
