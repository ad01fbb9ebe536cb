"""
A `Call` as the Segment event JSON that triggers and mapping directives read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ._encoding import json_safe
from ._types import Call, CallType

__all__ = ["segment_event"]

_PROPERTIES_TYPES = frozenset({CallType.TRACK, CallType.PAGE, CallType.SCREEN})
_TRAITS_TYPES = frozenset({CallType.IDENTIFY, CallType.GROUP})


def segment_event(call: Call, message_id: str, keys: frozenset[str] | None) -> dict[str, Any]:
    """
    The Segment-spec event for ``call``, JSON-safe (as Segment would have received it).

    Args:
        call: The call.
        message_id: Its messageId (the user's, or the one the SDK made).
        keys: The top-level keys the mappings read; only those are converted (``None``: all of them).

    Raises:
        PayloadError: a value the mappings read cannot be carried as JSON.
    """
    event: dict[str, Any] = {"type": call.type.value, "messageId": message_id}
    if call.user_id is not None:
        event["userId"] = call.user_id
    if call.anonymous_id is not None:
        event["anonymousId"] = call.anonymous_id
    if call.event is not None:
        event["event"] = call.event
    if call.name is not None:
        event["name"] = call.name
    if call.group_id is not None:
        event["groupId"] = call.group_id
    if call.previous_id is not None:
        event["previousId"] = call.previous_id
    if call.timestamp is not None:
        ts = call.timestamp
        event["timestamp"] = ts.isoformat() if isinstance(ts, dt.datetime) else ts
    # The user's dicts are converted (and so copied) only when a mapping reads them.
    if call.type in _PROPERTIES_TYPES and (keys is None or "properties" in keys):
        event["properties"] = json_safe(call.properties or {}, "properties")
    if call.type in _TRAITS_TYPES and (keys is None or "traits" in keys):
        event["traits"] = json_safe(call.traits or {}, "traits")
    if call.context is not None and (keys is None or "context" in keys):
        event["context"] = json_safe(call.context, "context")
    if call.integrations is not None and (keys is None or "integrations" in keys):
        event["integrations"] = json_safe(call.integrations, "integrations")
    return event
