"""
Flask: an extension that gives each app one `SyncRehookClient`, configured from ``app.config``.

::

    from flask import Flask
    from rehook_sdk.integrations.flask import Rehook, get_rehook

    app = Flask(__name__)
    app.config["REHOOK_SETTINGS"] = {"conversion_events": {"signup"}}
    Rehook(app)  # or rehook = Rehook(); rehook.init_app(app) in an app factory

    @app.post("/signup")
    def signup():
        get_rehook().track("signup", {"referral_code": "ABC"}, user_id="u1")
        return {"ok": True}

Needs the ``flask`` extra: ``pip install "rehook-sdk[flask]"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from flask import Flask, current_app
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('rehook_sdk.integrations.flask needs Flask: pip install "rehook-sdk[flask]"') from exc

from .._client.sync import SyncRehookClient
from .._core.constants import DEFAULT_ATEXIT_TIMEOUT
from .._core.exceptions import ConfigurationError

__all__ = ["EXTENSION_KEY", "Rehook", "get_rehook"]

EXTENSION_KEY = "rehook"
"""The key of ``app.extensions`` the app's client is stored under."""


class Rehook:
    """
    The Flask extension. `init_app` makes the app's client from its config (at once, so that a bad setting fails
    at startup rather than in a request):

    - ``REHOOK_API_KEY``, ``REHOOK_API_SECRET``, ``REHOOK_BASE_URL``: default to the environment variables of the
      same names (as for `SyncRehookClient`);
    - ``REHOOK_SETTINGS``: a dict of any other `SyncRehookClient` settings (``conversion_events``, ``spool``...);
    - ``REHOOK_ATEXIT_TIMEOUT``: seconds to deliver what is left when the process exits (default 2);
    - ``REHOOK_CLIENT``: a ready client to use instead (tests: ``FakeRehook.memory_sync_client()``).

    The client's thread starts on its first call, so it is safe under ``gunicorn --preload`` and other forking
    servers (each worker starts its own). It drains when the process exits (``REHOOK_ATEXIT_TIMEOUT``), or when
    you call ``get_rehook().close(timeout)``.

    Args:
        app: The app, or None to call `init_app` later (the app factory pattern).
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """
        Make ``app``'s client and store it in ``app.extensions["rehook"]``.

        Raises:
            ConfigurationError: a setting is invalid, or the credentials are missing.
        """
        app.extensions[EXTENSION_KEY] = _client_from(app.config)

    @property
    def client(self) -> SyncRehookClient:
        """
        The current app's client (inside an app or request context).
        """
        return get_rehook()


def _client_from(config: Mapping[str, Any]) -> SyncRehookClient:
    ready = config.get("REHOOK_CLIENT")
    if ready is not None:
        if not isinstance(ready, SyncRehookClient):
            raise ConfigurationError(f"REHOOK_CLIENT must be a SyncRehookClient, not {type(ready).__qualname__}")
        return ready
    settings = config.get("REHOOK_SETTINGS") or {}
    if not isinstance(settings, Mapping):
        raise ConfigurationError(
            f"REHOOK_SETTINGS must be a dict of client settings, not {type(settings).__qualname__}"
        )
    settings = dict(settings)
    if config.get("REHOOK_BASE_URL") is not None:
        settings["base_url"] = config["REHOOK_BASE_URL"]
    try:
        return SyncRehookClient(
            config.get("REHOOK_API_KEY"),
            config.get("REHOOK_API_SECRET"),
            atexit_timeout=config.get("REHOOK_ATEXIT_TIMEOUT", DEFAULT_ATEXIT_TIMEOUT),
            **settings,
        )
    except TypeError as exc:  # an unknown setting
        raise ConfigurationError(f"REHOOK_SETTINGS: {exc}") from None


def get_rehook() -> SyncRehookClient:
    """
    The current app's client, inside an app or request context.

    Raises:
        RuntimeError: outside an app context, or the app has no `Rehook` extension.
    """
    client = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(client, SyncRehookClient):
        raise RuntimeError("this Flask app has no Rehook extension: call Rehook(app) or Rehook().init_app(app)")
    return client
