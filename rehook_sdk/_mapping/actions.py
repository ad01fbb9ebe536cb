"""
Rehook's two actions: their fields, their default field mapping, and the one request each makes.

identify_user -> POST /customers      {"source_id", "metadata", "referral_code"?}
track_event   -> POST /events/invoke  {"event_name", "source_id", "metadata"}

Nothing else is sent: Rehook's bodies have no timestamp, context or message id fields (the message id travels
as the Idempotency-Key header instead).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .._core.constants import CUSTOMERS_PATH, DEFAULT_MAX_PAYLOAD_BYTES, EVENTS_PATH
from .._core.encoding import PayloadError, json_safe, text_problem
from .._core.outcome import Reason
from .._core.types import Action, Call
from .jsvalues import UNDEFINED, js_string

__all__ = ["ACTION_FIELDS", "DEFAULT_FIELDS", "REQUIRED_FIELDS", "Action", "Request", "build_request"]


def _unknown(value: object) -> object:
    raise TypeError(f"a {type(value).__qualname__} value is not JSON")


def _make_encoder() -> Callable[[Any], str]:
    """
    Compact UTF-8 JSON, NaN refused. The C encoder made once, rather than per body as ``JSONEncoder.encode``
    does (which doubles the cost of a body). Without circular-reference markers: every body is built from values
    the JSON-safety walk (or its plain check) passed, which contain no cycles.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_unknown).encode
    chunks = c_make_encoder(None, _unknown, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_encode = _make_encoder()


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
        "event_name": {
            "@if": {"exists": {"@path": "$.event"}, "then": {"@path": "$.event"}, "else": {"@path": "$.type"}}
        },
        "source_id": {"@path": "$.userId"},
        "metadata": {"@path": "$.properties"},
    },
}
# The JSON schema type of each field, as the destination declares it: "string", "string?" (string or null) or
# "object"; and the label Segment's messages use.
_TYPES: dict[Action, dict[str, str]] = {
    Action.IDENTIFY_USER: {"source_id": "string", "metadata": "object", "referral_code": "string?"},
    Action.TRACK_EVENT: {"event_name": "string", "source_id": "string", "metadata": "object"},
}


class _Invalid(Exception):
    pass


def _coerce(key: str, value: Any, kind: str) -> Any:
    """
    Segment's payload validation (ajv with ``coerceTypes: "array"``) of one field: what is sent, or `_Invalid`.
    """
    if kind == "object":
        if isinstance(value, Mapping):
            return value
        raise _Invalid(f"{key} must be an object but it was {_kind(value)}")
    if isinstance(value, str):
        return value
    if value is None:
        return value  # only "string?" fields keep a null (the others lost it before)
    if isinstance(value, bool | int | float):
        return js_string(value)
    if isinstance(value, list | tuple) and len(value) == 1:
        (item,) = value
        if item is None:
            return ""
        if isinstance(item, bool | int | float):
            return js_string(item)
        if isinstance(item, str) and kind == "string":
            return item  # a string-or-null field refuses it: ajv's coercion of a union type (checked with Segment)
    raise _Invalid(f"{key} must be a string{' or null' if kind == 'string?' else ''} but it was {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    return "null" if value is None else "an object"


def _payload(action: Action, fields: Mapping[str, Any]) -> dict[str, Any] | tuple[Reason, str, str]:
    """
    The body Segment's destination would post for these resolved fields: removeEmptyValues (a null where the
    field does not allow one, an empty string at the root: gone), then the schema's coercion. On failure: the
    reason, the field and a message.
    """
    body: dict[str, Any] = {}
    for key, kind in _TYPES[action].items():
        value = fields.get(key, UNDEFINED)
        empty = value == ""
        if (value is None and kind != "string?") or empty:
            value = UNDEFINED
        if value is UNDEFINED:
            if key in REQUIRED_FIELDS[action]:
                what = "is an empty string, which Segment drops" if empty else "resolved to nothing"
                return Reason.MISSING_FIELD, key, f"{key} {what}; {_TITLES[action]} needs it"
            continue
        try:
            body[key] = _coerce(key, value, kind)
        except _Invalid as exc:
            return Reason.INVALID_PAYLOAD, key, str(exc)
    return body


_TITLES = {Action.IDENTIFY_USER: "Identify User", Action.TRACK_EVENT: "Track Event"}


class Request(NamedTuple):
    """
    One POST to Rehook: the path under base_url and the JSON body, already encoded.
    """

    path: str
    body: bytes


def _plain_track(fields: Mapping[str, Any], conversion_events: frozenset[str], max_bytes: int) -> Request | None:
    """
    The common Track Event, built without the general rules when each of them holds as it stands: a non-empty ASCII
    event name that is not a conversion event, a non-empty ASCII user id, an object of JSON-safe properties, a body
    within ``max_bytes``. None sends it down the general path (which then says what is wrong).
    """
    name = fields.get("event_name")
    source = fields.get("source_id")
    metadata = fields.get("metadata")
    if not (
        type(name) is str
        and type(source) is str
        and type(metadata) is dict
        and name
        and source
        and name.isascii()
        and source.isascii()
        and name not in conversion_events
    ):
        return None
    try:
        encoded = _encode({"event_name": name, "source_id": source, "metadata": metadata}).encode()
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
    return Request(EVENTS_PATH, encoded) if len(encoded) <= max_bytes else None


def build_request(
    action: Action,
    fields: Mapping[str, Any],
    call: Call,
    conversion_events: frozenset[str],
    *,
    trusted: bool,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Request | tuple[Reason, str]:
    """
    Apply Rehook's rules to resolved ``fields`` and build the request, or say why the action is dropped.

    Args:
        action: Which action.
        fields: The mapping's resolved fields (missing ones absent).
        call: The call, for messages and the anonymous-only rule.
        conversion_events: Event names that need ``metadata.referral_code``.
        max_bytes: The largest body sent; a larger one drops the action as ``payload_too_large``.
        trusted: The fields came from directives over the JSON-safe event, so they need no second
            conversion; values from a user's callable are converted here.
    """
    if trusted and action is Action.TRACK_EVENT and len(fields) == 3:
        fast = _plain_track(fields, conversion_events, max_bytes)
        if fast is not None:
            return fast
    payload = _payload(action, fields)
    if isinstance(payload, tuple):
        reason, key, message = payload
        if key == "source_id" and reason is Reason.MISSING_FIELD:
            if call.anonymous_id and not call.user_id:
                return Reason.ANONYMOUS_ONLY, f"{call.type.value}() has only an anonymousId; Rehook needs a userId"
            return Reason.MISSING_USER_ID, f"{call.type.value}() has no userId (source_id); Rehook needs one"
        return reason, message
    for key, label in (
        ("source_id", "source_id (userId)"),
        ("event_name", "event_name"),
        ("referral_code", "referral_code"),
    ):
        text = payload.get(key)
        if isinstance(text, str) and (problem := text_problem(text)) is not None:
            return Reason.INVALID_PAYLOAD, f"{label} {problem}"
    body = payload
    if action is Action.IDENTIFY_USER:
        path = CUSTOMERS_PATH
    else:
        event_name = body["event_name"]
        metadata = body.get("metadata", {})
        if event_name in conversion_events and metadata.get("referral_code") in (None, ""):
            return Reason.MISSING_REFERRAL_CODE, (
                f"{event_name!r} is a conversion event and needs properties['referral_code']"
            )
        path = EVENTS_PATH
    if not trusted:
        try:
            body = json_safe(body, "fields")
        except PayloadError as exc:
            return Reason.INVALID_PAYLOAD, str(exc)
    try:
        encoded = _encode(body).encode()
    except (ValueError, TypeError, UnicodeEncodeError) as exc:  # the checks above should leave nothing here
        return Reason.INVALID_PAYLOAD, f"the request body cannot be encoded: {exc}"
    if len(encoded) > max_bytes:
        return Reason.PAYLOAD_TOO_LARGE, (
            f"the request body is {len(encoded):,} bytes, more than max_payload_bytes ({max_bytes:,})"
        )
    return Request(path, encoded)
