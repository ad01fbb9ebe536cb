"""
rehook_sdk.integrations.celery with a real worker (a prefork pool whose children are recycled) on Celery's
filesystem transport, no broker server: every call a task makes reaches the fake exactly once, though a recycled
child ends with os._exit() and so never runs the interpreter's exit hooks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import signals

from rehook_sdk import SyncRehookClient
from rehook_sdk.integrations import celery as integration
from rehook_sdk.integrations.celery import get_rehook, setup_rehook

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "celery_app.py"


def run_example(tmp_path: Path, tasks: int, recycle: int) -> str:
    # Not Django's settings module either (the Django tests set it): Celery's Django fixup would import it, and
    # from the demo's empty working directory `tests` cannot be imported (the worker died at start from the sdist).
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHOOK_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(CELERY_DEMO_FOLDER=str(tmp_path), DEMO_TASKS=str(tasks), DEMO_MAX_TASKS_PER_CHILD=str(recycle))
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    try:  # within pytest-timeout's 60 s, so that a hang shows what the demo and its worker printed
        result = subprocess.run(
            [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=50, env=env, cwd=workdir
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the demo did not finish in 50 s; it printed:\n{exc.stdout!r}\n{exc.stderr!r}")
    assert result.returncode == 0, result.stderr
    assert list(workdir.iterdir()) == [], "the demo wrote into the working directory"
    return result.stdout


@pytest.mark.parametrize(("tasks", "recycle"), [(10, 2), (12, 1)])
def test_every_tasks_call_reaches_rehook_once_across_recycled_children(
    tmp_path: Path, tasks: int, recycle: int
) -> None:
    """Rehook answers slowly, so a child's last calls are still in flight when the pool recycles it (after every
    task with recycle=1): the child drains them in worker_process_shutdown. Without setup_rehook the same run
    loses the last calls of each recycled child."""
    out = run_example(tmp_path, tasks, recycle)
    users = sorted(f"'u{i}'" for i in range(tasks))
    assert f"Rehook received {tasks} signup events from {tasks} tasks: [{', '.join(users)}]" in out


def test_setup_connects_once_and_get_rehook_gives_one_client_per_process() -> None:
    made: list[SyncRehookClient] = []

    def factory() -> SyncRehookClient:
        made.append(SyncRehookClient("k", "s", base_url="http://127.0.0.1:9"))
        return made[-1]

    saved = integration._process.factory, integration._process.shutdown_timeout
    try:
        setup_rehook(factory, shutdown_timeout=1.0)
        setup_rehook(factory, shutdown_timeout=1.0)
        receivers = [r for r in signals.worker_process_shutdown.receivers if "rehook_sdk" in str(r[0])]
        assert len(receivers) == 1
        signals.worker_process_init.send(sender=None)
        assert get_rehook() is get_rehook() is made[0]
        signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
        assert len(made) == 1
        assert repr(made[0]).endswith("thread='closed'>")
        integration._process.factory = lambda: "no client"  # type: ignore[assignment, return-value]
        with pytest.raises(TypeError, match="not a SyncRehookClient"):
            get_rehook()
    finally:
        integration._process.factory, integration._process.shutdown_timeout = saved
        integration._process.client = None


def test_celery_integration_without_the_extra_names_it() -> None:
    code = "import sys; sys.modules['celery'] = None; import rehook_sdk.integrations.celery"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert 'pip install "rehook-sdk[celery]"' in result.stderr
