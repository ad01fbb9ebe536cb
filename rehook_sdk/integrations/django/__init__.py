"""
Django: an app that gives each process one client, configured from the ``REHOOK`` setting, and one accessor for
sync and async code.

::

    # settings.py
    INSTALLED_APPS = [..., "rehook_sdk.integrations.django"]
    REHOOK = {"conversion_events": {"signup"}}  # any client setting; credentials default to the environment

    # views.py
    from rehook_sdk.integrations.django import get_rehook

    def signup(request):
        get_rehook().track("signup", {"referral_code": "ABC"}, user_id=str(request.user.pk))
        ...

`get_rehook` gives the process's `SyncRehookClient` in sync code (WSGI views, management commands, sync views
under ASGI, which Django runs in a worker thread), and in async code on the main thread's event loop (async views
under an ASGI server) a `RehookClient` of that loop. Async code on a loop of another thread (an async view under
WSGI, which Django runs on a new loop in a new thread per request) gets the sync client: its handles can be
awaited from any loop. Both are made on first use and drain at process exit (``atexit_timeout``, 2 s by
default). A forked worker (gunicorn, uWSGI, with or without ``--py-call-uwsgi-fork-hooks``) makes its own: the
accessor checks the process id.

Needs the ``django`` extra: ``pip install "rehook-sdk[django]"``. Tests: `rehook_sdk.integrations.django.testing`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

try:
    from django.conf import settings as django_settings
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('rehook_sdk.integrations.django needs Django: pip install "rehook-sdk[django]"') from exc

from ..._client.client import RehookClient
from ..._client.sync import SyncRehookClient
from ..._core.exceptions import ConfigurationError

__all__ = ["SETTING", "get_rehook"]

SETTING = "REHOOK"
"""The Django setting: a dict of `RehookClient` settings (``api_key``, ``api_secret``, ``base_url``...)."""


class _Clients:
    """
    One process's clients: the sync one, and one async client per event loop.
    """

    def __init__(self, sync: Callable[[], SyncRehookClient], on_loop: Callable[[], RehookClient]) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.make_sync = sync
        self.make_async = on_loop
        self.sync: SyncRehookClient | None = None
        self.loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RehookClient] = weakref.WeakKeyDictionary()

    def get(self) -> RehookClient | SyncRehookClient:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock:
            # ASGI servers run their loop in the main thread. A loop in another thread is short-lived: the one
            # asgiref makes for each async view under WSGI, for instance. Its calls go to the sync client, whose
            # handles can be awaited from any loop, rather than to a client that would die with that loop.
            if loop is None or threading.current_thread() is not threading.main_thread():
                if self.sync is None:
                    self.sync = self.make_sync()
                return self.sync
            client = self.loops.get(loop)
            if client is None:
                client = self.loops[loop] = self.make_async()
            return client


def settings() -> dict[str, Any]:
    """
    The ``REHOOK`` setting, checked.

    Raises:
        ConfigurationError: it is not a dict.
    """
    value = getattr(django_settings, SETTING, None) or {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"settings.{SETTING} must be a dict of client settings, not {type(value).__qualname__}"
        )
    return dict(value)


def _make(kind: Callable[..., Any]) -> Any:
    try:
        return kind(**settings())
    except TypeError as exc:  # an unknown setting
        raise ConfigurationError(f"settings.{SETTING}: {exc}") from None


def _sync_client() -> SyncRehookClient:
    client: SyncRehookClient = _make(SyncRehookClient)
    return client


def _async_client() -> RehookClient:
    client: RehookClient = _make(RehookClient)
    return client


_clients = _Clients(_sync_client, _async_client)
_swap_lock = threading.Lock()


def _current() -> _Clients:
    global _clients
    clients = _clients
    if clients.pid != os.getpid():  # a forked child, whether or not the fork ran os.register_at_fork's hooks
        with _swap_lock:
            if _clients.pid != os.getpid():
                _clients = _Clients(_clients.make_sync, _clients.make_async)
            clients = _clients
    return clients


def get_rehook() -> RehookClient | SyncRehookClient:
    """
    This process's client: the `SyncRehookClient` in sync code, the running loop's `RehookClient` in async code
    on the main thread (an ASGI server's loop), the `SyncRehookClient` again on any other thread's loop. Their
    calls (``identify``, ``track``...) are the same and return at once.

    Raises:
        ConfigurationError: the ``REHOOK`` setting is invalid, or the credentials are missing.
    """
    return _current().get()
