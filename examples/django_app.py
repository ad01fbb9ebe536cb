"""
A Django app in one file that sends identify/track from a sync view and an async view
(rehook_sdk.integrations.django).

    .venv/bin/pip install -q -e '.[django]' && .venv/bin/python examples/django_app.py
    curl -X POST localhost:8000/signup -H 'content-type: application/json' -d '{"user_id": "u1", "referral_code": "A1"}'
    curl -X POST localhost:8000/orders -H 'content-type: application/json' -d '{"user_id": "u1", "total": 10}'

With no REHOOK_API_KEY/REHOOK_API_SECRET it also runs the fake Rehook and prints what it received when you stop
the server with Ctrl-C. In a project, the views and URLs live in an app and the settings in settings.py:
INSTALLED_APPS gets "rehook_sdk.integrations.django", and REHOOK = {...} holds the client settings.
"""

# Fire and forget: the sync view does not wait for the handles identify()/track() return.
# mypy: disable-error-code="unused-awaitable"

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path

from rehook_sdk import SyncRehookClient
from rehook_sdk.integrations.django import get_rehook


def signup(request: HttpRequest) -> JsonResponse:
    """A sync view (WSGI, or a worker thread under ASGI): get_rehook() is the process's SyncRehookClient."""
    body = json.loads(request.body)
    rehook = get_rehook()
    rehook.identify(body["user_id"], {"email": body.get("email")})
    if body.get("referral_code"):
        rehook.track("signup", {"referral_code": body["referral_code"]}, user_id=body["user_id"])
    return JsonResponse({"ok": True})


async def order(request: HttpRequest) -> JsonResponse:
    """An async view (on the ASGI server's loop): get_rehook() is that loop's RehookClient, so it can be awaited."""
    body = json.loads(request.body)
    outcome = await get_rehook().track("Order Completed", {"total": body["total"]}, user_id=body["user_id"])
    return JsonResponse({"rehook": outcome.status.value, "reason": outcome.reason})


urlpatterns = [path("signup", signup), path("orders", order)]


def settings_for(rehook: dict[str, Any]) -> dict[str, Any]:
    """What this one-file project's settings.py would hold."""
    return {
        "DEBUG": True,
        "SECRET_KEY": "example only",
        "ROOT_URLCONF": __name__,
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
        "INSTALLED_APPS": ["rehook_sdk.integrations.django"],
        "REHOOK": {"conversion_events": {"signup"}, **rehook},
    }


def main() -> None:
    import django
    from django.conf import settings
    from django.core.management import execute_from_command_line

    port = os.environ.get("PORT", "8000")
    if os.environ.get("REHOOK_API_KEY") is not None:
        settings.configure(**settings_for({}))
        django.setup()
        execute_from_command_line([sys.argv[0], "runserver", "--noreload", port])
        return
    from rehook_sdk.testing import FakeRehook

    with FakeRehook.in_thread(conversion_events={"signup"}) as fake:
        print(f"Using the embedded fake Rehook at {fake.url}")
        settings.configure(
            **settings_for({"api_key": fake.api_key, "api_secret": fake.api_secret, "base_url": fake.url})
        )
        django.setup()
        try:
            execute_from_command_line([sys.argv[0], "runserver", "--noreload", port])
        finally:
            client = get_rehook()
            assert isinstance(client, SyncRehookClient)  # no event loop runs here
            client.close(timeout=5)
            print("The fake Rehook received:")
            for r in fake.requests:
                print(f"  {r.method} {r.path} -> {r.status} {r.json}")


if __name__ == "__main__":
    main()
