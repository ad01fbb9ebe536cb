"""
A `Call` as the Segment event JSON that triggers and mapping directives read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .._core.encoding import json_safe
from .._core.types import Call, CallType

__all__ = ["call_to_segment", "segment_event"]

_PROPERTIES_TYPES = frozenset({CallType.TRACK, CallType.PAGE, CallType.SCREEN})
_TRAITS_TYPES = frozenset({CallType.IDENTIFY, CallType.GROUP})
_DICT_KEYS = ("properties", "traits", "context", "integrations")


def call_to_segment(call: Call) -> dict[str, Any]:
    """
    The call as a Segment-spec message (analytics.js field names), with only the fields it has, values as given.
    """
    out: dict[str, Any] = {"type": call.type.value}
    timestamp = call.timestamp.isoformat() if isinstance(call.timestamp, dt.datetime) else call.timestamp
    fields = (
        ("userId", call.user_id),
        ("anonymousId", call.anonymous_id),
        ("event", call.event),
        ("name", call.name),
        ("groupId", call.group_id),
        ("previousId", call.previous_id),
        ("context", call.context),
        ("integrations", call.integrations),
        ("timestamp", timestamp),
        ("messageId", call.message_id),
    )
    for key, value in fields:
        if value is not None:
            out[key] = value
    if call.type in _TRAITS_TYPES:
        out["traits"] = call.traits or {}
    elif call.type in _PROPERTIES_TYPES:
        out["properties"] = call.properties or {}
    return out


def segment_event(call: Call, message_id: str, keys: frozenset[str] | None) -> dict[str, Any]:
    """
    The Segment-spec event for ``call``, JSON-safe (as Segment would have received it).

    Args:
        call: The call.
        message_id: Its messageId (the user's, or the one the SDK made).
        keys: The top-level keys the mappings read; only those of the user's dicts are converted (``None``: all).

    Raises:
        PayloadError: a value the mappings read cannot be carried as JSON.
    """
    event = call_to_segment(call)
    event["messageId"] = message_id
    # The user's dicts are converted (and so copied) only when a mapping reads them.
    for key in _DICT_KEYS:
        if key in event:
            if keys is None or key in keys:
                event[key] = json_safe(event[key], key)
            else:
                del event[key]
    return event
