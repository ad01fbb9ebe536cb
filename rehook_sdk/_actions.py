"""
Rehook's two actions: their fields, their default field mapping, and the one request each makes.

identify_user -> POST /customers      {"source_id", "metadata", "referral_code"?}
track_event   -> POST /events/invoke  {"event_name", "source_id", "metadata"}

Nothing else is sent: Rehook's bodies have no timestamp, context or message id fields (the message id travels
as the Idempotency-Key header instead).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._constants import CUSTOMERS_PATH, EVENTS_PATH
from ._encoding import PayloadError, json_safe, text_problem
from ._jsvalues import UNDEFINED
from ._outcome import Reason
from ._types import Action, Call

__all__ = ["ACTION_FIELDS", "DEFAULT_FIELDS", "REQUIRED_FIELDS", "Action", "Request", "build_request"]

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


ACTION_FIELDS: dict[Action, tuple[str, ...]] = {
    Action.IDENTIFY_USER: ("source_id", "metadata", "referral_code"),
    Action.TRACK_EVENT: ("event_name", "source_id", "metadata"),
}
REQUIRED_FIELDS: dict[Action, tuple[str, ...]] = {
    Action.IDENTIFY_USER: ("source_id",),
    Action.TRACK_EVENT: ("event_name", "source_id"),
}
# The Segment destination's default field mapping (../shared/rehook-api.md).
DEFAULT_FIELDS: dict[Action, dict[str, Any]] = {
    Action.IDENTIFY_USER: {
        "source_id": {"@path": "$.userId"},
        "metadata": {"@path": "$.traits"},
        "referral_code": {"@path": "$.traits.referral_code"},
    },
    Action.TRACK_EVENT: {
        "event_name": {"@path": "$.event"},
        "source_id": {"@path": "$.userId"},
        "metadata": {"@path": "$.properties"},
    },
}


class Request(NamedTuple):
    """
    One POST to Rehook: the path under base_url and the JSON body, already encoded.
    """

    path: str
    body: bytes


def build_request(
    action: Action,
    fields: Mapping[str, Any],
    call: Call,
    conversion_events: frozenset[str],
    *,
    trusted: bool,
) -> Request | tuple[Reason, str]:
    """
    Apply Rehook's rules to resolved ``fields`` and build the request, or say why the action is dropped.

    Args:
        action: Which action.
        fields: The mapping's resolved fields (missing ones absent).
        call: The call, for messages and the anonymous-only rule.
        conversion_events: Event names that need ``metadata.referral_code``.
        trusted: The fields came from directives over the JSON-safe event, so they need no second
            conversion; values from a user's callable are converted here.
    """
    source_id = fields.get("source_id", UNDEFINED)
    if isinstance(source_id, int) and not isinstance(source_id, bool):
        source_id = str(source_id)
    if source_id is UNDEFINED or source_id is None or source_id == "":
        if call.anonymous_id and not call.user_id:
            return Reason.ANONYMOUS_ONLY, f"{call.type.value}() has only an anonymousId; Rehook needs a userId"
        return Reason.MISSING_USER_ID, f"{call.type.value}() has no userId (source_id); Rehook needs one"
    if not isinstance(source_id, str):
        return Reason.INVALID_PAYLOAD, f"source_id must be a string, got {type(source_id).__qualname__}"
    if (problem := text_problem(source_id)) is not None:
        return Reason.INVALID_PAYLOAD, f"source_id (userId) {problem}"
    metadata = fields.get("metadata", UNDEFINED)
    if metadata is UNDEFINED or metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        return Reason.INVALID_PAYLOAD, f"metadata must be an object, got {type(metadata).__qualname__}"
    body: dict[str, Any]
    if action is Action.IDENTIFY_USER:
        body = {"source_id": source_id, "metadata": metadata}
        code = fields.get("referral_code", UNDEFINED)
        if code is not UNDEFINED:
            if isinstance(code, int) and not isinstance(code, bool):
                code = str(code)
            elif code is not None and not isinstance(code, str):
                return Reason.INVALID_PAYLOAD, (
                    f"traits.referral_code: must be a string or None, not {type(code).__qualname__}"
                )
            if code is not None and (problem := text_problem(code)) is not None:
                return Reason.INVALID_PAYLOAD, f"traits.referral_code {problem}"
            body["referral_code"] = code
        path = CUSTOMERS_PATH
    else:
        event_name = fields.get("event_name", UNDEFINED)
        if event_name is UNDEFINED or event_name is None:
            return Reason.MISSING_FIELD, "event_name resolved to nothing; Track Event needs it"
        if not isinstance(event_name, str):
            return Reason.INVALID_PAYLOAD, f"event_name must be a string, got {type(event_name).__qualname__}"
        if not event_name:
            return Reason.INVALID_PAYLOAD, f"{call.type.value}() has an empty event name"
        if (problem := text_problem(event_name)) is not None:
            return Reason.INVALID_PAYLOAD, f"event_name {problem}"
        if event_name in conversion_events and metadata.get("referral_code") in (None, ""):
            return Reason.MISSING_REFERRAL_CODE, (
                f"{event_name!r} is a conversion event and needs properties['referral_code']"
            )
        body = {"event_name": event_name, "source_id": source_id, "metadata": metadata}
        path = EVENTS_PATH
    if not trusted:
        try:
            body = json_safe(body, "fields")
        except PayloadError as exc:
            return Reason.INVALID_PAYLOAD, str(exc)
    try:
        return Request(path, _encode(body).encode())
    except (ValueError, UnicodeEncodeError) as exc:  # the checks above should leave nothing for this net to catch
        return Reason.INVALID_PAYLOAD, f"the request body cannot be encoded: {exc}"
