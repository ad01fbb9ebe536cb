"""
No I/O before start (#26), counted in a real PostgreSQL: a forking server whose master makes the client (gunicorn
``--preload`` with the Django integration, whose app makes the sync client at startup) and a Celery prefork pool
whose master makes one too. The master must hold no spool connection while it forks, and each started client
exactly two (its writer's and its listener's): 2 per worker, not 2 + 4 per worker.

Connections are told apart by ``application_name`` (``rehook-sdk spool|listener <pid>:<token> <host>``), so the
test knows which process holds each one. Each worker waits at a barrier (a folder of process ids) until all four
run, so the count does not depend on how the kernel or Celery spread the work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rehook_sdk.testing import FakeRehook

WORKERS = 4

BARRIER = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    def barrier(folder: str, count: int) -> None:
        # Until `count` processes have arrived (at most 40 s: the test then fails on what it finds).
        (Path(folder) / str(os.getpid())).touch()
        deadline = time.monotonic() + 40
        while len(os.listdir(folder)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def family(root: int) -> set[int]:
    """``root`` and every process descended from it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def spool_connections(url: str, processes: set[int]) -> Counter[tuple[str, int]]:
    """(role, pid) of every rehook-sdk connection that these processes hold, counted (other processes on this
    server, such as another test run, are not this test's)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        names = connection.execute(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'rehook-sdk %'"
        ).fetchall()
    found: Counter[tuple[str, int]] = Counter()
    for (name,) in names:
        _, role, owner, _ = name.split(" ", 3)
        pid = int(owner.split(":")[0])
        if pid in processes:
            found[(role, pid)] += 1
    return found


def settle(url: str, processes: Callable[[], set[int]], expected: Counter[tuple[str, int]]) -> Counter[tuple[str, int]]:
    """The processes' connections once they are as expected (listeners connect in the background; the server ends
    a closed connection's backend a moment after), or after 30 s."""
    deadline = time.monotonic() + 30
    found = spool_connections(url, processes())
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        found = spool_connections(url, processes())
    return found


def expected_for(pids: set[int]) -> Counter[tuple[str, int]]:
    return Counter({(role, pid): 1 for pid in pids for role in ("spool", "listener")})


@pytest.fixture
def env(threaded_fake: FakeRehook, postgres_url: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("REHOOK_") and k != "DJANGO_SETTINGS_MODULE"},
        "REHOOK_API_KEY": threaded_fake.api_key,
        "REHOOK_API_SECRET": threaded_fake.api_secret,
        "REHOOK_BASE_URL": threaded_fake.url,
        "SPOOL": postgres_url,
    }


DJANGO_SITE = textwrap.dedent(
    """
    import os
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    from barrier import barrier

    def track(request):
        from rehook_sdk.integrations.django import get_rehook

        get_rehook().track("viewed", user_id=f"u{os.getpid()}")
        barrier(os.environ["BARRIER"], int(os.environ["WORKERS"]))
        return HttpResponse(str(os.getpid()))

    urlpatterns = [path("track", track)]
    settings.configure(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["rehook_sdk.integrations.django"],
        REHOOK={"spool": os.environ["SPOOL"]},
    )
    django.setup()  # the app makes the process's sync client here: in gunicorn's master, with --preload

    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    """
)


def test_gunicorn_preload_with_django_holds_two_connections_per_worker_and_none_in_the_master(
    tmp_path: Path, env: dict[str, str], threaded_fake: FakeRehook
) -> None:
    (tmp_path / "barrier.py").write_text(BARRIER)
    (tmp_path / "site_app.py").write_text(DJANGO_SITE)
    (tmp_path / "barrier").mkdir()
    port = free_port()
    env.update(BARRIER=str(tmp_path / "barrier"), WORKERS=str(WORKERS))
    command = [
        *(sys.executable, "-m", "gunicorn", "--preload", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"),
        *("--chdir", str(tmp_path), "--graceful-timeout", "20", "site_app:application"),
    ]
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as server:
        try:
            _until_listening(port, server)
            with ThreadPoolExecutor(WORKERS) as pool:
                pids = set(pool.map(lambda _: _get(f"http://127.0.0.1:{port}/track"), range(WORKERS)))
            assert len(pids) == WORKERS
            assert server.pid not in pids
            found = settle(env["SPOOL"], lambda: family(server.pid), expected_for(pids))
            # 2 per worker; the master (and every worker's inherited client): 0
            assert found == expected_for(pids), f"{found.total()} connections: {sorted(found.items())}"
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert sorted(e["source_id"] for e in threaded_fake.events) == sorted(f"u{pid}" for pid in pids)
    assert settle(env["SPOOL"], lambda: pids, Counter()) == Counter()  # each worker closed its own at exit


CELERY_APP = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from celery import Celery

    from barrier import barrier
    from rehook_sdk import SyncRehookClient
    from rehook_sdk.integrations.celery import get_rehook, setup_rehook

    FOLDER = Path(os.environ["FOLDER"])
    app = Celery("celery_site")
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={
            "data_folder_in": str(FOLDER / "queue"),
            "data_folder_out": str(FOLDER / "queue"),
            "processed_folder": str(FOLDER / "processed"),
            "control_folder": str(FOLDER / "control"),
        },
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    # What Django's app does in Celery's master (django.setup()): a client made before the pool forks.
    MASTER_CLIENT = SyncRehookClient(spool=os.environ["SPOOL"])
    setup_rehook(lambda: SyncRehookClient(spool=os.environ["SPOOL"]), shutdown_timeout=20.0)

    @app.task
    def viewed(i):
        get_rehook().track("viewed", user_id=f"u{i}")
        barrier(os.environ["BARRIER"], int(os.environ["WORKERS"]))
    """
)


def test_a_celery_prefork_pool_holds_two_connections_per_child_and_none_in_the_master(
    tmp_path: Path, env: dict[str, str], threaded_fake: FakeRehook
) -> None:
    (tmp_path / "barrier.py").write_text(BARRIER)
    (tmp_path / "celery_site.py").write_text(CELERY_APP)
    for name in ("queue", "processed", "control", "barrier"):
        (tmp_path / name).mkdir()
    env.update(FOLDER=str(tmp_path), BARRIER=str(tmp_path / "barrier"), WORKERS=str(WORKERS), PYTHONPATH=str(tmp_path))
    # Queued before the worker starts: one process alone creates the filesystem transport's routing table.
    enqueue = f"from celery_site import viewed\nfor i in range({WORKERS}): viewed.delay(i)"
    subprocess.run([sys.executable, "-c", enqueue], env=env, cwd=tmp_path, check=True, timeout=30)
    command = [
        *(sys.executable, "-m", "celery", "-A", "celery_site", "worker", "--pool=prefork"),
        *(f"--concurrency={WORKERS}", "-O", "fair", "--without-mingle", "--without-gossip", "--loglevel=WARNING"),
    ]
    with subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as worker:
        try:
            folder = tmp_path / "barrier"
            deadline = time.monotonic() + 40
            while len(os.listdir(folder)) < WORKERS and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
            pids = {int(name) for name in os.listdir(folder)}
            assert len(pids) == WORKERS
            assert worker.pid not in pids
            found = settle(env["SPOOL"], lambda: family(worker.pid), expected_for(pids))
            assert found == expected_for(pids), f"{found.total()} connections: {sorted(found.items())}"
            deadline = time.monotonic() + 30
            while len(threaded_fake.events) < WORKERS and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=40)
    assert worker.returncode == 0, err
    assert sorted(e["source_id"] for e in threaded_fake.events) == [f"u{i}" for i in range(WORKERS)]
    assert settle(env["SPOOL"], lambda: pids, Counter()) == Counter()


def _until_listening(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    _, err = server.communicate(timeout=10) if server.poll() is not None else ("", "still starting")
    pytest.fail(f"gunicorn did not listen on {port}: {err}")


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=50) as response:
        return int(response.read())
