"""
A Celery app whose tasks track, with one client per worker process (rehook_sdk.integrations.celery).

    .venv/bin/pip install -q -e '.[celery]' && .venv/bin/python examples/celery_app.py

Run as a script, it is a demo with no broker server: it starts the fake Rehook, a worker with a prefork pool
whose children are recycled after every 2 tasks (Celery's filesystem transport in a temporary folder), sends 10
tasks, and stops the worker with SIGTERM once Rehook has them all. In production the broker is Redis or
RabbitMQ, and the worker is ``celery -A celery_app worker``.
"""

# Fire and forget: the task does not wait for the handle track() returns; the worker's process drains it.
# mypy: disable-error-code="unused-awaitable"

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from celery import Celery

from rehook_sdk.integrations.celery import get_rehook, setup_rehook

FOLDER = Path(os.environ.get("CELERY_DEMO_FOLDER") or tempfile.mkdtemp(prefix="rehook-celery-"))
for name in ("queue", "processed", "control"):
    (FOLDER / name).mkdir(parents=True, exist_ok=True)

app = Celery("celery_app")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": str(FOLDER / "queue"),
        "data_folder_out": str(FOLDER / "queue"),
        "processed_folder": str(FOLDER / "processed"),
        "control_folder": str(FOLDER / "control"),  # kombu's default is ./control, in the working directory
    },
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
setup_rehook(shutdown_timeout=10.0)


@app.task  # type: ignore[untyped-decorator]  # (Celery is untyped)
def signup(user_id: str, referral_code: str) -> None:
    get_rehook().track("signup", {"referral_code": referral_code}, user_id=user_id)


def main() -> None:
    import signal
    import subprocess
    import sys
    import time

    from rehook_sdk.testing import FakeRehook

    tasks = int(os.environ.get("DEMO_TASKS", "10"))
    recycle = os.environ.get("DEMO_MAX_TASKS_PER_CHILD", "2")
    with FakeRehook.in_thread(conversion_events={"signup"}) as fake:
        print(f"Using the embedded fake Rehook at {fake.url}")
        fake.delay_next(tasks, seconds=0.2)  # a slow Rehook: calls are in flight when children are recycled
        env = {
            **os.environ,
            "REHOOK_API_KEY": fake.api_key,
            "REHOOK_API_SECRET": fake.api_secret,
            "REHOOK_BASE_URL": fake.url,
            "CELERY_DEMO_FOLDER": str(FOLDER),
            "PYTHONPATH": str(Path(__file__).resolve().parent),
        }
        command = [
            *(sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=prefork", "--concurrency=2"),
            *(f"--max-tasks-per-child={recycle}", "--without-mingle", "--without-gossip", "--loglevel=WARNING"),
        ]
        # The tasks are queued before the worker starts, so that one process alone creates the filesystem
        # transport's routing table: kombu creates that file unlocked (two processes binding at once on a new
        # folder lost one binding 191 times in 200 here).
        for i in range(tasks):
            signup.delay(f"u{i}", "ADV001")
        worker = subprocess.Popen(command, env=env)
        try:
            deadline = time.monotonic() + 60
            while len(fake.events) < tasks and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        users = sorted(event["source_id"] for event in fake.events)
        print(f"Rehook received {len(users)} signup events from {tasks} tasks: {users}")


if __name__ == "__main__":
    main()
