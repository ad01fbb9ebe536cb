"""
Celery: one `SyncRehookClient` per worker process, started when the process starts and drained with a deadline
when it stops, so that tasks which track never lose calls when the pool recycles a child.

::

    from celery import Celery
    from rehook_sdk.integrations.celery import get_rehook, setup_rehook

    app = Celery("tasks", broker="redis://...")
    setup_rehook(shutdown_timeout=10.0)

    @app.task
    def reward(user_id):
        get_rehook().track("purchase", {"referral_code": "ABC"}, user_id=user_id)

Why it is needed: a prefork pool's child ends with ``os._exit()`` (when it is recycled by
``worker_max_tasks_per_child`` or ``worker_max_memory_per_child``, and at shutdown), which skips the interpreter's
exit hooks, and with them the client's exit drain: the calls its tasks made in their last moments would be lost.
`setup_rehook` connects to Celery's signals instead: ``worker_process_init`` makes the child's client,
``worker_process_shutdown`` (run in the child before it exits) drains it within ``shutdown_timeout``, and
``worker_shutdown`` does the same for the pools that run tasks in the worker process itself (solo, threads).

Needs the ``celery`` extra: ``pip install "rehook-sdk[celery]"``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

try:
    from celery import signals
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('rehook_sdk.integrations.celery needs Celery: pip install "rehook-sdk[celery]"') from exc

from .._client.sync import SyncRehookClient
from .._core.constants import DEFAULT_CLOSE_TIMEOUT
from .._report.outcome_log import calls

__all__ = ["get_rehook", "setup_rehook"]

logger = logging.getLogger("rehook_sdk")

ClientFactory = Callable[[], SyncRehookClient]


class _Process:
    """
    This process's client, its factory and its drain deadline.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.factory: ClientFactory = SyncRehookClient
        self.shutdown_timeout: float | None = DEFAULT_CLOSE_TIMEOUT
        self.client: SyncRehookClient | None = None
        self.pid = os.getpid()

    def get(self) -> SyncRehookClient:
        with self.lock:
            if self.pid != os.getpid():  # a forked child (the pool's): its own client, never the parent's
                self.client, self.pid = None, os.getpid()
            if self.client is None:
                made: object = self.factory()
                if not isinstance(made, SyncRehookClient):
                    raise TypeError(f"the client factory returned a {type(made).__qualname__}, not a SyncRehookClient")
                self.client = made
            return self.client

    def stop(self) -> None:
        with self.lock:
            client = self.client if self.pid == os.getpid() else None
            self.client = None
        if client is None:
            return
        before = client.stats()
        client.close(self.shutdown_timeout)
        lost = client.stats().failed_total - before.failed_total
        if lost:
            logger.warning(
                "Celery worker process %d stops with %s its tasks made undelivered (shutdown_timeout %s s)",
                os.getpid(),
                calls(lost),
                self.shutdown_timeout,
            )


_process = _Process()
_connected = False


def get_rehook() -> SyncRehookClient:
    """
    This worker process's client (made on first use if the worker's signals did not make it, as in eager tasks).
    """
    return _process.get()


def _on_process_init(**_: Any) -> None:
    _process.get()


def _on_shutdown(**_: Any) -> None:
    _process.stop()


def setup_rehook(client: ClientFactory | None = None, *, shutdown_timeout: float | None = 10.0) -> None:
    """
    Give each worker process its own client and drain it when the process stops. Call it where the Celery app is
    made (the module the worker imports); calling it again only changes the settings.

    Args:
        client: A function that makes the process's `SyncRehookClient` (default: from the environment,
            ``REHOOK_API_KEY``, ``REHOOK_API_SECRET``, ``REHOOK_BASE_URL``).
        shutdown_timeout: Seconds a stopping process keeps delivering (``None``: no limit); what is left then
            fails as ``shutdown_timeout`` (reported as the client reports failures: log, ``on_error``, dead-letter
            file). Keep it below the time your supervisor waits before it kills the worker.
    """
    global _connected
    if client is not None:
        _process.factory = client
    _process.shutdown_timeout = shutdown_timeout
    if not _connected:
        # weak=False: the receivers are module functions, kept anyway; dispatch_uid: once, however often called.
        signals.worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="rehook_sdk.init")
        signals.worker_process_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="rehook_sdk.process_shutdown")
        signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="rehook_sdk.shutdown")
        _connected = True
