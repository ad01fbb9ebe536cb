"""
From a call to the Rehook requests its mappings fire: match every trigger, resolve the fields, apply Rehook's
rules. Runs in the sender tasks, never on the caller's path.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._actions import Request, build_request
from ._encoding import PayloadError
from ._event import segment_event
from ._mappings import CompiledMapping
from ._outcome import Reason
from ._types import Call, CallType

__all__ = ["Router", "Step"]

_NO_ACTION_TYPES = frozenset({CallType.GROUP, CallType.ALIAS})


@attrs.frozen
class Step:
    """
    One fired mapping: the request to send, or why it is dropped.
    """

    mapping: CompiledMapping
    request: Request | None
    drop: tuple[Reason, str] | None = None


class Router:
    """
    The compiled mappings of one client, and Rehook's rules that depend on its settings.
    """

    def __init__(self, mappings: Sequence[CompiledMapping], conversion_events: frozenset[str]) -> None:
        self._mappings = tuple(mappings)
        self._conversion_events = conversion_events
        # The event keys any mapping reads; None (convert everything) when one of them may read anything.
        parts = [m.reads for m in self._mappings]
        self._reads = None if None in parts else frozenset().union(*(p for p in parts if p is not None))

    def route(self, call: Call, message_id: str) -> list[Step] | tuple[Reason, str]:
        """
        The steps ``call`` fires, in mapping order, or why the whole call is dropped.
        """
        try:
            event = segment_event(call, message_id, self._reads)
        except PayloadError as exc:
            return Reason.INVALID_PAYLOAD, str(exc)
        steps: list[Step] = []
        for mapping in self._mappings:
            try:
                fired = mapping.matches(event)
            except Exception as exc:  # a user's trigger callable: report it on the call, keep the sender alive
                steps.append(Step(mapping, None, (Reason.INVALID_PAYLOAD, f"the trigger raised {exc!r}")))
                continue
            if not fired:
                continue
            try:
                fields = mapping.resolve(event)
            except Exception as exc:  # a directive that met a wrong value, or a user's fields callable
                steps.append(Step(mapping, None, (Reason.INVALID_PAYLOAD, f"resolving the fields failed: {exc}")))
                continue
            built = build_request(mapping.action, fields, call, self._conversion_events, trusted=mapping.trusted)
            if isinstance(built, Request):
                steps.append(Step(mapping, built))
            else:
                steps.append(Step(mapping, None, built))
        if steps:
            return steps
        if call.type in _NO_ACTION_TYPES:
            return (
                Reason.UNSUPPORTED_CALL,
                f"{call.type.value}() has no Rehook action and no mapping sends it; "
                "only identify, track, page and screen are sent by default",
            )
        return Reason.NO_MATCHING_MAPPING, f"no mapping's trigger matched this {call.type.value}() call"
