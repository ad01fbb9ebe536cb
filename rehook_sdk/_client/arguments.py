"""
analytics.js-style arguments in, a `Call` out; wrong argument types raise `TypeError` naming the argument.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .._core.encoding import safe_repr
from .._core.outcome import Outcome
from .._core.types import Call, CallType

__all__ = ["Callback", "build"]

Callback = Callable[[Outcome], object]

# analytics.js option keys and the Call fields they fill; any other key goes into context, as analytics.js does.
_OPTION_KEYS = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "timestamp": "timestamp",
    "context": "context",
    "integrations": "integrations",
    "messageId": "message_id",
}


def _id(value: object, argument: str) -> str | None:
    kind = type(value)
    if kind is str or value is None:
        return value  # type: ignore[return-value]
    # A subclass's own text or digits, never its __str__, which may do anything (or raise).
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, uuid.UUID):
        return uuid.UUID.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int.__repr__(value)
        except ValueError:
            raise ValueError(f"{argument} is an int too long to write as a str id") from None
    raise TypeError(f"{argument} must be a str, int or UUID, not {kind.__qualname__}")


def _mapping(value: object, argument: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            return dict(value)  # a shallow copy: rebinding keys later does not change what is sent
        except Exception as exc:  # a Mapping whose methods raise, or a dict another thread changes meanwhile
            raise TypeError(f"{argument} could not be read as a mapping: {safe_repr(exc)}") from None
    raise TypeError(f"{argument} must be a mapping (dict) or None, not {type(value).__qualname__}")


def _timestamp(value: object, argument: str) -> dt.datetime | str | None:
    if value is None or isinstance(value, dt.datetime | str):
        return value
    raise TypeError(f"{argument} must be a datetime, an ISO 8601 str or None, not {type(value).__qualname__}")


def identify_arguments(user_id: object, traits: object, options: object) -> tuple[object, object, object]:
    """
    ``(user_id, traits, options)`` of an identify call: ``identify(traits[, options])``, analytics.js's anonymous
    form, shifts them.

    Raises:
        TypeError: traits first, and three arguments.
    """
    if isinstance(user_id, Mapping):
        if traits is not None and options is not None:
            raise TypeError("identify(): with traits as the first argument, pass at most traits and options")
        return None, user_id, traits
    return user_id, traits, options


def build(
    method: str,
    call_type: CallType,
    *,
    options: object,
    callback: object,
    user_id: object = None,
    anonymous_id: object = None,
    timestamp: object = None,
    context: object = None,
    integrations: object = None,
    message_id: object = None,
    event: str | None = None,
    name: object = None,
    properties: object = None,
    traits: object = None,
    group_id: object = None,
    previous_id: object = None,
) -> tuple[Call, Callback | None]:
    """
    Normalise one call's arguments.

    Explicit arguments (positional or keyword) win over ``options``; for track/page/screen a ``userId`` inside
    the properties is the last resort for the user id.

    Raises:
        TypeError: an argument of the wrong type, named in the message.
    """
    options, callback = _options_and_callback(method, options, callback)
    props = _mapping(properties, f"{method}(): properties")
    traits_ = _mapping(traits, f"{method}(): traits")
    ctx = _mapping(context, f"{method}(): context")
    if options:
        user_id, anonymous_id, timestamp, ctx, integrations, message_id = _with_options(
            method, options, user_id, anonymous_id, timestamp, ctx, integrations, message_id
        )
    uid = _id(user_id, f"{method}(): userId")
    if uid is None and props is not None and "userId" in props:
        uid = _id(props["userId"], f"{method}(): properties['userId']")
    name = _name(method, name)
    if name is not None and (props is None or "name" not in props):
        props = {**(props or {}), "name": name}  # analytics.js puts a page's name into its properties
    if message_id is not None and not isinstance(message_id, str):
        raise TypeError(f"{method}(): messageId must be a str or None, not {type(message_id).__qualname__}")
    call = Call(
        type=call_type,
        user_id=uid,
        anonymous_id=_id(anonymous_id, f"{method}(): anonymousId"),
        event=event,
        name=name,
        properties=props,
        traits=traits_,
        group_id=_id(group_id, f"{method}(): group_id"),
        previous_id=_id(previous_id, f"{method}(): previous_id"),
        context=ctx,
        integrations=_mapping(integrations, f"{method}(): integrations"),
        timestamp=_timestamp(timestamp, f"{method}(): timestamp"),
        message_id=str.__str__(message_id) if message_id else None,
    )
    return call, callback


def _options_and_callback(
    method: str, options: object, callback: object
) -> tuple[Mapping[str, Any] | None, Callback | None]:
    # analytics.js lets the callback take the options slot.
    if options is not None and not isinstance(options, Mapping):
        if callable(options) and callback is None:
            options, callback = None, options
        else:
            raise TypeError(f"{method}(): options must be a mapping (dict) or None, not {type(options).__qualname__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"{method}(): callback must be callable, not {type(callback).__qualname__}")
    return options, callback


def _with_options(
    method: str,
    options: Mapping[str, Any],
    user_id: object,
    anonymous_id: object,
    timestamp: object,
    context: dict[str, Any] | None,
    integrations: object,
    message_id: object,
) -> tuple[object, object, object, dict[str, Any] | None, object, object]:
    """
    The fields with analytics.js ``options`` applied: an explicit argument wins over its option; other option keys
    go into the context.
    """
    extra: dict[str, Any] = {}
    given = {
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "timestamp": timestamp,
        "context": context,
        "integrations": integrations,
        "message_id": message_id,
    }
    for key, value in options.items():
        field = _OPTION_KEYS.get(key)
        if field is None:
            extra[key] = value
        elif given[field] is None:
            given[field] = value
    ctx = _mapping(given["context"], f"{method}(): options['context']")
    if extra:
        ctx = {**(ctx or {}), **extra}
    return given["user_id"], given["anonymous_id"], given["timestamp"], ctx, given["integrations"], given["message_id"]


def _name(method: str, name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"{method}(): name must be a str or None, not {type(name).__qualname__}")
    return str.__str__(name)
