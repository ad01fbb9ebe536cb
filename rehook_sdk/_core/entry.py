"""
The one format of a queued call: two plain values, its `Meta` tuple (a token and fields, or its `Call` on the
general path) and its `Data` (the properties or traits dict, or None), as the queue, the spool, the dead letter and
the senders keep them; and the `Call` they stand for.
"""

from __future__ import annotations

from typing import Any

import attrs

from .types import Call, CallType

__all__ = ["CODE_KINDS", "KIND_CODES", "Data", "Entry", "Meta", "build_call", "entry_call", "queued"]

# (token, the Call or None, kind code, user id, event name, when it was accepted: time.monotonic() when the client
# times its calls for metrics, else 0.0)
Meta = tuple[int, Call | None, int, str | None, str | None, float]
Data = dict[str, Any] | None
Entry = tuple[Meta, Data]


# Queued calls carry their type as a small int rather than the CallType member: an enum member is an object the
# garbage collector tracks, and a tuple that holds one stays tracked.
KIND_CODES: dict[CallType, int] = {CallType.IDENTIFY: 0, CallType.TRACK: 1}
CODE_KINDS: tuple[CallType, ...] = (CallType.IDENTIFY, CallType.TRACK)


def build_call(
    kind: CallType | None,
    user_id: str | None,
    event: str | None,
    data: dict[str, Any] | None,
    message_id: str | None = None,
) -> Call:
    """
    The `Call` of a fast-path track/identify, from the fields it was queued with.
    """
    if kind is CallType.IDENTIFY:
        return Call(type=CallType.IDENTIFY, user_id=user_id, traits=data, message_id=message_id)
    assert kind is CallType.TRACK
    return Call(type=CallType.TRACK, user_id=user_id, event=event, properties=data, message_id=message_id)


def entry_call(meta: tuple[Any, ...], data: dict[str, Any] | None, message_id: str | None = None) -> Call:
    """
    The `Call` of a queued entry: the one queued on the general path, or one built from the fast path's fields;
    with ``message_id``, a call without a messageId of its own gets that one.
    """
    call: Call | None = meta[1]
    if call is None:
        return build_call(CODE_KINDS[meta[2]], meta[3], meta[4], data, message_id)
    if call.message_id is None and message_id is not None:
        return attrs.evolve(call, message_id=message_id)
    return call


def queued(token: int, call: Call, accepted: float = 0.0) -> Meta:
    """
    The `Meta` of a call queued on the general path (its `Call` made), accepted at ``accepted`` (see `Meta`).
    """
    return (token, call, -1, None, None, accepted)
