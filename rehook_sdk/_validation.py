"""
Rehook's rules (as its Segment destination applies them), checked before anything is sent.
"""

from __future__ import annotations

from ._outcome import Reason
from ._types import Call, CallType

__all__ = ["check"]

_UNSUPPORTED = frozenset({CallType.GROUP, CallType.ALIAS})


def check(call: Call, conversion_events: frozenset[str]) -> tuple[Reason, str] | None:
    """
    Return why Rehook would drop ``call``, or ``None`` when it may be sent.
    """
    if call.type in _UNSUPPORTED:
        return (
            Reason.UNSUPPORTED_CALL,
            f"{call.type.value}() has no Rehook action; only identify, track, page and screen are sent",
        )
    if not call.user_id:
        if call.anonymous_id:
            return (
                Reason.ANONYMOUS_ONLY,
                f"{call.type.value}() has only an anonymousId; Rehook needs a userId",
            )
        return Reason.MISSING_USER_ID, f"{call.type.value}() has no userId; Rehook needs one"
    if call.type is CallType.TRACK:
        if not call.event:
            return Reason.INVALID_PAYLOAD, "track() has an empty event name"
        if call.event in conversion_events:
            code = call.properties.get("referral_code") if call.properties is not None else None
            if code is None or code == "":
                return (
                    Reason.MISSING_REFERRAL_CODE,
                    f"{call.event!r} is a conversion event and needs properties['referral_code']",
                )
    return None
