"""
Write a call in your own PostgreSQL transaction, so that it commits (or rolls back) with your rows: a signup and
its ``signup`` event are kept together or not at all, whatever happens to the process after the commit.

The call goes into the tables of a PostgreSQL spool (``spool="postgresql://..."``) in the connection's schema, and a
client on that spool delivers it: your application's `RehookClient` or `SyncRehookClient` made with that spool, or
``rehook relay --spool postgresql://...``. A ``NOTIFY`` sent with the commit tells them at once. The clients apply
Rehook's rules and your mappings when they deliver it, as for any call, and report its outcome (the log,
``on_error``, ``stats()``; a failed call stays in the spool).

    with psycopg.connect(url) as connection, connection.transaction():
        connection.execute("INSERT INTO users (id, email) VALUES (%s, %s)", ("u1", "bob@example.com"))
        outbox.track(connection, "signup", {"referral_code": "ADV001"}, user_id="u1")

``connection`` is a DB-API connection whose parameters are written ``%s``: psycopg 3's ``Connection`` and Django's
``django.db.connection`` on PostgreSQL are tested (psycopg2's is the same kind); `atrack` and `aidentify` take
psycopg 3's ``AsyncConnection``. The call is written by the transaction the connection is in; with autocommit on, it
commits at once. The first call in a database without the spool's tables creates them, in that transaction.

Each row names the Rehook application it is for, and only a client of that application takes it: the application
of ``api_key`` and ``base_url`` (default ``$REHOOK_API_KEY`` and ``$REHOOK_BASE_URL``, as for the client), stored as
a keyed digest, never the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from ._client.arguments import build, identify_arguments
from ._core.constants import API_KEY_ENV
from ._core.exceptions import ConfigurationError
from ._core.types import CallType
from ._durable.spools.identity import identity_from
from ._durable.spools.outbox import Write, prepare, write_async, write_sync

__all__ = ["aidentify", "atrack", "identify", "track"]


def track(
    connection: Any,
    event: str,
    properties: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    user_id: str | int | UUID | None = None,
    anonymous_id: str | int | UUID | None = None,
    timestamp: Any = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
) -> str:
    """
    Write a track call in ``connection``'s transaction, to be delivered once it commits.

    The arguments are those of `RehookClient.track` (without the callback: the outcome is reported by the client
    that delivers it), and the application's ``api_key`` and ``base_url`` as for `RehookClient`: only a client of
    that application delivers the call.

    Returns:
        The call's messageId (``message_id``, or a new one): its Idempotency-Key, and how the log names it.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a value the SDK cannot send (NaN, a lone surrogate...), named by its key path.
        ConfigurationError: no API key (neither ``api_key`` nor ``$REHOOK_API_KEY``), or a base URL the client
            would refuse.
    """
    write = _track(
        event,
        properties,
        options,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        context=context,
        integrations=integrations,
        message_id=message_id,
        app=_application(api_key, base_url),
    )
    write_sync(connection, write)
    return write.message_id


def identify(
    connection: Any,
    user_id: str | int | UUID | Mapping[str, Any] | None = None,
    traits: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    anonymous_id: str | int | UUID | None = None,
    timestamp: Any = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
) -> str:
    """
    Write an identify call in ``connection``'s transaction, to be delivered once it commits.

    The arguments are those of `RehookClient.identify` (without the callback), and ``api_key`` and ``base_url`` as
    for `track`.

    Returns:
        The call's messageId (``message_id``, or a new one).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a value the SDK cannot send, named by its key path.
        ConfigurationError: as for `track`.
    """
    write = _identify(
        user_id,
        traits,
        options,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        context=context,
        integrations=integrations,
        message_id=message_id,
        app=_application(api_key, base_url),
    )
    write_sync(connection, write)
    return write.message_id


async def atrack(
    connection: Any,
    event: str,
    properties: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    user_id: str | int | UUID | None = None,
    anonymous_id: str | int | UUID | None = None,
    timestamp: Any = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
) -> str:
    """
    `track` on psycopg 3's ``AsyncConnection``.
    """
    write = _track(
        event,
        properties,
        options,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        context=context,
        integrations=integrations,
        message_id=message_id,
        app=_application(api_key, base_url),
    )
    await write_async(connection, write)
    return write.message_id


async def aidentify(
    connection: Any,
    user_id: str | int | UUID | Mapping[str, Any] | None = None,
    traits: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    anonymous_id: str | int | UUID | None = None,
    timestamp: Any = None,
    context: Mapping[str, Any] | None = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
) -> str:
    """
    `identify` on psycopg 3's ``AsyncConnection``.
    """
    write = _identify(
        user_id,
        traits,
        options,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        context=context,
        integrations=integrations,
        message_id=message_id,
        app=_application(api_key, base_url),
    )
    await write_async(connection, write)
    return write.message_id


def _application(api_key: str | None, base_url: str | None) -> str:
    app = identity_from(api_key, base_url)
    if app is None:
        raise ConfigurationError(
            f"the outbox needs the Rehook application's API key, to name the application a call is for: pass "
            f"api_key or set {API_KEY_ENV}"
        )
    return app


def _write(method: str, call_type: CallType, options: object, *, app: str, **fields: object) -> Write:
    call, callback = build(method, call_type, options=options, callback=None, **fields)  # type: ignore[arg-type]
    if callback is not None:  # build() takes a callable in the options slot as analytics.js's callback
        raise TypeError(f"{method}(): options must be a mapping (dict) or None, not {type(callback).__qualname__}")
    return prepare(call, app)


def _track(event: object, properties: object, options: object, *, app: str, **fields: object) -> Write:
    if not isinstance(event, str):
        raise TypeError(f"track(): event must be a str, not {type(event).__qualname__}")
    return _write("track", CallType.TRACK, options, app=app, event=event, properties=properties, **fields)


def _identify(user_id: object, traits: object, options: object, *, app: str, **fields: object) -> Write:
    user_id, traits, options = identify_arguments(user_id, traits, options)
    return _write("identify", CallType.IDENTIFY, options, app=app, user_id=user_id, traits=traits, **fields)
