"""
An optional middleware (off unless listed in ``MIDDLEWARE``): identifies the logged-in user to Rehook once per
session, so that Rehook knows the customers who sign in without a call in every view.

::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "rehook_sdk.integrations.django.middleware.IdentifyMiddleware",  # after the authentication middleware
    ]

The user id is ``str(user.pk)``; the traits are the user's non-empty ``email`` and full name, or what the
function named by the ``REHOOK_IDENTIFY_TRAITS`` setting (a callable, or its dotted path) returns for the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from . import get_rehook

__all__ = ["SESSION_KEY", "IdentifyMiddleware", "default_traits"]

SESSION_KEY = "_rehook_identified"
"""The session key that holds the id of the user this session identified."""


def default_traits(user: Any) -> dict[str, Any]:
    """
    The user's non-empty ``email`` and full name (``get_full_name()``), as Rehook's ``email`` and ``name``.
    """
    traits: dict[str, Any] = {}
    email = getattr(user, "email", None)
    if email:
        traits["email"] = email
    full_name = getattr(user, "get_full_name", None)
    name = full_name() if callable(full_name) else None
    if name:
        traits["name"] = name
    return traits


def _traits_function() -> Callable[[Any], dict[str, Any]]:
    chosen = getattr(django_settings, "REHOOK_IDENTIFY_TRAITS", None)
    if chosen is None:
        return default_traits
    function = import_string(chosen) if isinstance(chosen, str) else chosen
    if not callable(function):
        raise TypeError(f"settings.REHOOK_IDENTIFY_TRAITS must be a callable or its dotted path, not {chosen!r}")
    return function  # type: ignore[no-any-return]


class IdentifyMiddleware:
    """
    Calls ``identify(str(user.pk), traits)`` the first time a session is seen with a logged-in user (again when
    another user logs in on it). Needs the session and authentication middlewares before it.
    """

    sync_capable = True
    async_capable = False  # Django runs it in a thread under ASGI: get_rehook() then gives the sync client

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.traits = _traits_function()

    def __call__(self, request: Any) -> Any:
        user = getattr(request, "user", None)
        session = getattr(request, "session", None)
        if user is not None and session is not None and user.is_authenticated:
            user_id = str(user.pk)
            if session.get(SESSION_KEY) != user_id:
                _ = get_rehook().identify(user_id, self.traits(user))
                session[SESSION_KEY] = user_id
        return self.get_response(request)
