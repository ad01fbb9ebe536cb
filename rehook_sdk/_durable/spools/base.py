"""
What every spool shares: the states a spooled call goes through, the row handed back when calls are adopted, and the
record a call is stored as.

A spooled call is owned by one process at a time (the one that accepted it, or the one that adopted it after its
owner died or let it go). Its state says how far delivery got, so that whoever adopts it knows whether Rehook may
already have it:

- ``QUEUED``: no request has been written for it;
- ``SENDING``: a request may have been written (the mark is committed before the first request goes out);
- ``FAILED``: it ended without reaching Rehook and is kept for the operator, with its outcome (`failure_text`),
  until ``rehook send --from-spool`` sends it again.

A delivered call's row is deleted.

Every row also names the application that accepted it (`application_identity`); a process takes only its own
application's rows. Rows written before rows carried one (schema version 1) have none, and are taken only by a
process told to (``take_unidentified``).
"""

from __future__ import annotations

import enum
import json
import json.encoder
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs

from ..._core.encoding import json_safe
from ..._core.types import Call, CallType
from ..._mapping.event import call_to_segment

__all__ = [
    "RECORD_VERSION",
    "Adopted",
    "Holdings",
    "Replay",
    "SpoolState",
    "decode_record",
    "encode_record",
    "failure_maybe_delivered",
    "failure_text",
    "others_by_kind",
]

RECORD_VERSION = 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _unknown(value: object) -> Any:
    raise TypeError(f"{type(value).__qualname__} is not JSON")


# The C encoder JSONEncoder.encode makes for every call (about 1.5 us of the writer thread's time per record), made
# once; without circular checks (a circular value ends in RecursionError, and the sender's conversion names it).
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encoder = (
    _make_encoder(None, _unknown, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if _make_encoder is not None
    else None
)


def _fast_dumps(value: Any) -> str:
    return "".join(_encoder(value, 0)) if _encoder is not None else _dumps(value)


class SpoolState(enum.IntEnum):
    QUEUED = 0
    SENDING = 1
    FAILED = 2


class Adopted(NamedTuple):
    """
    A call taken over from the spool: its row, how far its delivery got, and the call (with its messageId, when
    one was fixed before it was spooled or before its first request).
    """

    row: int
    state: SpoolState
    call: Call


class Holdings(NamedTuple):
    """
    What a spool holds that this process may not take now, counted in the database.

    Attributes:
        calls: This application's calls held by other processes still alive (a heartbeat within the lease).
        processes: How many processes hold those.
        seconds: Until the first of those leases ends (from the database's clock).
        others: Calls of other applications, not failed: never taken here.
        others_failed: Failed calls of other applications.
        unidentified: Calls written before rows named their application, not failed, when not taken here.
        unidentified_failed: Failed calls of those, when not taken here.
    """

    calls: int = 0
    processes: int = 0
    seconds: float = 0.0
    others: int = 0
    others_failed: int = 0
    unidentified: int = 0
    unidentified_failed: int = 0


def others_by_kind(groups: list[tuple[Any, Any, Any]]) -> tuple[int, int, int, int]:
    """
    (unidentified?, failed?, count) groups of the rows that are not this application's -> `Holdings`' others,
    others_failed, unidentified, unidentified_failed.
    """
    counts = {(bool(unidentified), bool(failed)): int(n) for unidentified, failed, n in groups}
    count = counts.get
    return count((False, False), 0), count((False, True), 0), count((True, False), 0), count((True, True), 0)


@attrs.define(kw_only=True)
class Replay:
    """
    Where a replay of failed calls (``rehook send --from-spool``) is: the rows after ``after`` are looked at
    next. Changed by the writer thread while an adoption runs; read once its future is done.

    Attributes:
        resend_maybe_delivered: Also take the calls whose request may have reached Rehook.
        after: The last row looked at.
        skipped: Failed calls left as they are because their request may have reached Rehook.
        done: Every failed row has been looked at.
    """

    resend_maybe_delivered: bool = False
    after: int = 0
    skipped: int = 0
    done: bool = False


def failure_text(reason: str, message: str, *, maybe_delivered: bool, attempts: int, http_status: int | None) -> str:
    """
    What a failed row keeps of its outcome (its ``reason`` column): JSON, for the operator and for replays.
    """
    return _dumps(
        {
            "reason": reason,
            "message": message,
            "maybe_delivered": maybe_delivered,
            "attempts": attempts,
            "http_status": http_status,
        }
    )


def failure_maybe_delivered(text: str | None) -> bool:
    """
    Whether a failed row's request may have reached Rehook; a reason this SDK did not write counts as maybe.
    """
    try:
        failure = json.loads(text) if text is not None else None
    except ValueError:
        return True
    return not isinstance(failure, dict) or failure.get("maybe_delivered") is not False


def encode_record(call: Call) -> str:
    """
    The call as the spool stores it: its Segment-spec message, made JSON-safe as the sender would make it.

    Raises:
        PayloadError: a value the SDK cannot send (the sender drops such a call as ``invalid_payload``).
    """
    message = call_to_segment(call)
    try:
        # The C encoder first (in the spool's writer thread, whose time is taken from the application's): most
        # calls hold plain values. A lone surrogate it lets through (not UTF-8), a value it refuses (a set, a
        # datetime, NaN) or nesting it cannot follow takes the sender's conversion, which names the problem. What
        # it writes and that conversion refuses (a float, bool or None key; nesting deeper than the sender takes)
        # is stored as JSON writes it: the sender drops such a call (invalid_payload), which ends its row.
        text = _fast_dumps({"v": RECORD_VERSION, "call": message})
        if text.isascii() or not _SURROGATE.search(text):
            return text
    except (TypeError, ValueError, RecursionError):
        pass
    return _dumps({"v": RECORD_VERSION, "call": json_safe(message, "call")})


def decode_record(text: str, message_id: str | None) -> Call:
    """
    The call a record holds; ``message_id`` (the row's, fixed before its first request) wins over the record's.

    Raises:
        ValueError: not a record of a version this SDK reads.
    """
    record = json.loads(text)
    if not isinstance(record, dict) or record.get("v") != RECORD_VERSION or not isinstance(record.get("call"), dict):
        raise ValueError(f"not a spool record of version {RECORD_VERSION}: {text[:80]!r}")
    message: dict[str, Any] = record["call"]
    kind = CallType(message["type"])
    bag: Mapping[str, Any] | None = message.get("traits") if kind in (CallType.IDENTIFY, CallType.GROUP) else None
    properties: Mapping[str, Any] | None = message.get("properties")
    return Call(
        type=kind,
        user_id=message.get("userId"),
        anonymous_id=message.get("anonymousId"),
        event=message.get("event"),
        name=message.get("name"),
        properties=properties,
        traits=bag,
        group_id=message.get("groupId"),
        previous_id=message.get("previousId"),
        context=message.get("context"),
        integrations=message.get("integrations"),
        timestamp=message.get("timestamp"),  # a datetime was stored as its ISO text, which is what Segment sends
        message_id=message_id if message_id is not None else message.get("messageId"),
    )
