"""
From a valid `Call` to the one HTTP request Rehook's matching action takes.

identify            -> POST /customers      {"source_id", "metadata": traits, "referral_code"?}
track               -> POST /events/invoke  {"event_name": event, "source_id", "metadata": properties}
page / screen       -> POST /events/invoke  {"event_name": "page"/"screen", "source_id", "metadata"}

Nothing else of the call is sent: Rehook's bodies have no timestamp, context or message id fields (the
message id travels as the Idempotency-Key header instead).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ._constants import CUSTOMERS_PATH, EVENTS_PATH
from ._encoding import PayloadError, json_safe
from ._types import Call, CallType

__all__ = ["Request", "to_request"]

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


@attrs.frozen
class Request:
    """
    One POST to Rehook: the path under base_url and the JSON body, already encoded.
    """

    path: str
    body: bytes


def to_request(call: Call) -> Request:
    """
    Map a call that passed `_validation.check` to its request.

    Raises:
        PayloadError: a value cannot be carried as JSON (the call ends as ``invalid_payload``).
    """
    if call.type is CallType.IDENTIFY:
        traits = json_safe(call.traits or {}, "traits")
        body: dict[str, Any] = {"source_id": call.user_id, "metadata": traits}
        if "referral_code" in traits:
            code = traits["referral_code"]
            if code is not None and not isinstance(code, str):
                if isinstance(code, bool) or not isinstance(code, int):
                    raise PayloadError(
                        "traits.referral_code", f"must be a string or None, not {type(code).__qualname__}"
                    )
                code = str(code)
            body["referral_code"] = code
        return Request(CUSTOMERS_PATH, _encode(body).encode())
    # page and screen: Segment's newer Rehook mapping sends the call's type as the event name.
    event_name = call.event if call.type is CallType.TRACK else call.type.value
    metadata = json_safe(call.properties or {}, "properties")
    if call.name is not None and "name" not in metadata:
        # analytics.js puts a page's name into its properties; keep it rather than lose it.
        metadata["name"] = call.name
    body = {"event_name": event_name, "source_id": call.user_id, "metadata": metadata}
    return Request(EVENTS_PATH, _encode(body).encode())
