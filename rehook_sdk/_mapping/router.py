"""
From a call to the Rehook requests its mappings fire: match every trigger, resolve the fields, apply Rehook's
rules. Runs in the sender tasks, never on the caller's path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .._core.constants import DEFAULT_MAX_PAYLOAD_BYTES
from .._core.encoding import PayloadError, header_problem, json_safe, safe_repr
from .._core.outcome import Reason
from .._core.types import Call, CallType
from .actions import Request, build_request
from .event import segment_event
from .mappings import DEFAULT_MAPPINGS, CompiledMapping

__all__ = ["Router", "Step"]

_NO_ACTION_TYPES = frozenset({CallType.GROUP, CallType.ALIAS})
_NO_PAGE_MAPPING = (
    "{}() is not sent by default: Segment's Rehook destination sends only identify and track; "
    "add a Mapping for page and screen calls (docs/mappings.md) to send them as Track Event"
)


class Step(NamedTuple):
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

    def __init__(
        self,
        mappings: Sequence[CompiledMapping],
        conversion_events: frozenset[str],
        *,
        shortcut: bool = True,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._mappings = tuple(mappings)
        self._conversion_events = conversion_events
        self._max = max_payload_bytes
        # With exactly the default mappings, route() takes a shortcut that resolves their fields directly,
        # without building the Segment event (about 6 us less per call in the sender); the tests check that it
        # gives the same steps as the general path.
        self._only_defaults = [m.source for m in self._mappings] == list(DEFAULT_MAPPINGS)
        self._defaults = shortcut and self._only_defaults
        # The event keys any mapping reads; None (convert everything) when one of them may read anything.
        parts = [m.reads for m in self._mappings]
        self._reads = None if None in parts else frozenset().union(*(p for p in parts if p is not None))

    def route(self, call: Call, message_id: str) -> list[Step] | tuple[Reason, str]:
        """
        The steps ``call`` fires, in mapping order, or why the whole call is dropped.
        """
        if call.message_id is not None and (problem := header_problem(call.message_id)) is not None:
            # Sent as the Idempotency-Key header: a character a header cannot carry would be refused, or worse,
            # silently dropped, so that two distinct ids share one key.
            return Reason.INVALID_PAYLOAD, f"messageId {problem}"
        if call.integrations is not None and not _sends_to_rehook(call.integrations):
            return (
                Reason.INTEGRATION_DISABLED,
                f"options.integrations {safe_repr(dict(call.integrations))} turns Rehook off for this call, "
                "as Segment would",
            )
        if self._defaults:
            return self._route_defaults(call)
        try:
            event = segment_event(call, message_id, self._reads)
        except PayloadError as exc:
            return Reason.INVALID_PAYLOAD, str(exc)
        steps: list[Step] = []
        for mapping in self._mappings:
            try:
                fired = mapping.matches(event)
            except Exception as exc:  # a user's trigger callable: report it on the call, keep the sender alive
                steps.append(Step(mapping, None, (Reason.INVALID_PAYLOAD, f"the trigger raised {safe_repr(exc)}")))
                continue
            if not fired:
                continue
            try:
                fields = mapping.resolve(event)
            except Exception as exc:  # a directive that met a wrong value, or a user's fields callable
                steps.append(
                    Step(mapping, None, (Reason.INVALID_PAYLOAD, f"resolving the fields failed: {safe_repr(exc)}"))
                )
                continue
            built = build_request(
                mapping.action,
                fields,
                call,
                self._conversion_events,
                trusted=mapping.trusted,
                max_bytes=self._max,
            )
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
                "only identify and track are sent by default",
            )
        if self._only_defaults:
            return Reason.NO_MATCHING_MAPPING, _NO_PAGE_MAPPING.format(call.type.value)
        return Reason.NO_MATCHING_MAPPING, f"no mapping's trigger matched this {call.type.value}() call"

    def _route_defaults(self, call: Call) -> list[Step] | tuple[Reason, str]:
        # DEFAULT_MAPPINGS, resolved by hand: identify -> Identify User (source_id <- userId, metadata <- traits,
        # referral_code <- traits.referral_code); track -> Track Event (event_name <- event, which a track call
        # always has, metadata <- properties).
        kind = call.type
        fields: dict[str, Any]
        try:
            if kind is CallType.IDENTIFY:
                mapping = self._mappings[0]
                traits = json_safe(call.traits or {}, "traits")
                fields = {"source_id": call.user_id, "metadata": traits}
                if "referral_code" in traits:
                    fields["referral_code"] = traits["referral_code"]
            elif kind is CallType.TRACK:
                mapping = self._mappings[1]
                properties = json_safe(call.properties or {}, "properties")
                fields = {"event_name": call.event, "source_id": call.user_id, "metadata": properties}
            elif kind is CallType.PAGE or kind is CallType.SCREEN:
                json_safe(call.properties or {}, "properties")  # the general path converts them before matching
                return Reason.NO_MATCHING_MAPPING, _NO_PAGE_MAPPING.format(kind.value)
            else:
                if kind is CallType.GROUP:
                    json_safe(call.traits or {}, "traits")  # the general path converts them before matching
                return (
                    Reason.UNSUPPORTED_CALL,
                    f"{kind.value}() has no Rehook action and no mapping sends it; "
                    "only identify and track are sent by default",
                )
        except PayloadError as exc:
            return Reason.INVALID_PAYLOAD, str(exc)
        built = build_request(mapping.action, fields, call, self._conversion_events, trusted=True, max_bytes=self._max)
        if isinstance(built, Request):
            return [Step(mapping, built)]
        return [Step(mapping, None, built)]


def _sends_to_rehook(integrations: Mapping[str, Any]) -> bool:
    """
    analytics.js's rule: ``"Rehook": false`` turns Rehook off; without a "Rehook" key, ``"All": false`` does.
    Any other value (true, a settings object) leaves it on. Names match exactly, as in Segment.
    """
    setting = integrations.get("Rehook", integrations.get("All"))
    return setting is not False
