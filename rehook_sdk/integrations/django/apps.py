"""
The Django app: ``"rehook_sdk.integrations.django"`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

from django.apps import AppConfig


class RehookConfig(AppConfig):  # type: ignore[misc]  # (Django is untyped)
    """
    Checks the ``REHOOK`` setting at startup (a bad setting or missing credentials fail ``manage.py`` and the
    server's start, not the first request) by making the process's sync client; its thread starts on first use.
    """

    name = "rehook_sdk.integrations.django"
    label = "rehook"
    verbose_name = "Rehook"

    def ready(self) -> None:
        from . import _current

        clients = _current()
        with clients.lock:
            if clients.sync is None:
                clients.sync = clients.make_sync()
