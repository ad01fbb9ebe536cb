"""
The analytics.js calls (identify, track, page, screen, group, alias, audience) with their argument rules: each
turns what the caller passed into one queued call, through the two hooks a client defines (`Calls._fast` for the
common shape, `Calls._submit` for a built `Call`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from .._core.types import Call, CallType
from .._delivery.handle import EventHandle
from .._mapping.audience import audience_key, engage_context
from .arguments import Callback, build, identify_arguments

__all__ = ["Calls"]


class Calls:
    """
    The calls a client takes, as analytics.js spells them; the client behind them decides where they go.
    """

    __slots__ = ()

    def _fast(self, kind: CallType, user_id: str, event: str | None, data: dict[str, Any] | None) -> EventHandle:
        """
        Queue a call of the common shape: a str user id, plain properties or traits, nothing else.
        """
        raise NotImplementedError

    def _submit(self, call: Call, callback: Callback | None) -> EventHandle:
        """
        Queue a call built from any arguments, with its callback.
        """
        raise NotImplementedError

    def identify(
        self,
        user_id: str | int | UUID | Mapping[str, Any] | None = None,
        traits: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Create or update the customer ``user_id`` in Rehook (Identify User: ``POST /customers``).

        ``traits`` become the customer's metadata; ``traits["referral_code"]`` is also sent as the customer's
        own referral code. As in analytics.js, ``identify(traits)`` with a dict first means "no user id" (the
        call is then dropped: Rehook needs one).

        Args:
            user_id: The customer's id in your system (``source_id`` in Rehook). An int or UUID becomes its str.
            traits: What you know about the customer.
            options: analytics.js options: ``userId``, ``anonymousId``, ``timestamp``, ``context``,
                ``integrations``, ``messageId``; other keys go into ``context``.
            callback: Called with the `Outcome` once it is known.
            anonymous_id, timestamp, context, integrations, message_id: The same as the options, in Python
                spelling; they win over ``options``. ``message_id`` becomes the Idempotency-Key header.

        Returns:
            A handle; ``await`` it for the `Outcome`, or ignore it.

        Raises:
            TypeError: an argument of the wrong type.
        """
        if (
            type(user_id) is str
            and (traits is None or type(traits) is dict)
            and options is None
            and callback is None
            and anonymous_id is None
            and timestamp is None
            and context is None
            and integrations is None
            and message_id is None
        ):
            # The common shape, checked with exact types; equal to what build() would make (tests compare them).
            return self._fast(CallType.IDENTIFY, user_id, None, traits.copy() if traits is not None else None)
        user_id, traits, options = identify_arguments(user_id, traits, options)  # type: ignore[assignment]
        call, cb = build(
            "identify",
            CallType.IDENTIFY,
            options=options,
            callback=callback,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
            integrations=integrations,
            message_id=message_id,
            traits=traits,
        )
        return self._submit(call, cb)

    def track(
        self,
        event: str,
        properties: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Record that a user did ``event`` (Track Event: ``POST /events/invoke``).

        The user id comes from ``user_id=``, else ``options["userId"]``, else ``properties["userId"]`` (as in
        Segment's Rehook example that carries ``userId`` inside the properties). ``properties`` are the event's
        metadata, which Rehook's campaign rules read (keep numbers as numbers). For a conversion event (see
        ``conversion_events``) ``properties["referral_code"]`` must hold the advocate's referral code.

        Args:
            event: The event name, e.g. ``"signup"``.
            properties: The event's properties.
            options: analytics.js options, as for `identify`.
            callback: Called with the `Outcome` once it is known.
            user_id, anonymous_id, timestamp, context, integrations, message_id: As in `identify`.

        Returns:
            A handle; ``await`` it for the `Outcome`, or ignore it.

        Raises:
            TypeError: an argument of the wrong type.
        """
        if (
            type(event) is str
            and type(user_id) is str
            and (properties is None or type(properties) is dict)
            and options is None
            and callback is None
            and anonymous_id is None
            and timestamp is None
            and context is None
            and integrations is None
            and message_id is None
        ):
            # The hot path of a request handler: exact types only, nothing else to normalise. Equal to what
            # build() would make (tests compare them); the Call itself is built later, in the sender.
            return self._fast(CallType.TRACK, user_id, event, properties.copy() if properties is not None else None)
        if not isinstance(event, str):
            raise TypeError(f"track(): event must be a str, not {type(event).__qualname__}")
        call, cb = build(
            "track",
            CallType.TRACK,
            options=options,
            callback=callback,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=timestamp,
            context=context,
            integrations=integrations,
            message_id=message_id,
            event=str.__str__(event),
            properties=properties,
        )
        return self._submit(call, cb)

    def page(
        self,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Record a page view: sent as a Track Event named ``"page"`` (Segment's Rehook mapping).

        ``name`` is added to the metadata as ``"name"`` unless the properties already have one. Arguments and
        return value as in `track`.
        """
        call, cb = build(
            "page", CallType.PAGE, options=options, callback=callback, name=name, properties=properties,
            user_id=user_id, anonymous_id=anonymous_id, timestamp=timestamp, context=context,
            integrations=integrations, message_id=message_id,
        )  # fmt: skip
        return self._submit(call, cb)

    def screen(
        self,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Record a mobile screen view: sent as a Track Event named ``"screen"``. As `page` otherwise.
        """
        call, cb = build(
            "screen", CallType.SCREEN, options=options, callback=callback, name=name, properties=properties,
            user_id=user_id, anonymous_id=anonymous_id, timestamp=timestamp, context=context,
            integrations=integrations, message_id=message_id,
        )  # fmt: skip
        return self._submit(call, cb)

    def group(
        self,
        group_id: str | int | UUID | None = None,
        traits: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        user_id: str | int | UUID | None = None,
        anonymous_id: str | int | UUID | None = None,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Accepted for drop-in compatibility with analytics.js; Rehook has no group action, so the call ends
        dropped as ``unsupported_call`` (reported like every other outcome).
        """
        call, cb = build(
            "group", CallType.GROUP, options=options, callback=callback, group_id=group_id, traits=traits,
            user_id=user_id, anonymous_id=anonymous_id, timestamp=timestamp, context=context,
            integrations=integrations, message_id=message_id,
        )  # fmt: skip
        return self._submit(call, cb)

    def alias(
        self,
        user_id: str | int | UUID | None = None,
        previous_id: str | int | UUID | None = None,
        options: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        *,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Accepted for drop-in compatibility with analytics.js; Rehook has no alias action, so the call ends
        dropped as ``unsupported_call``.
        """
        call, cb = build(
            "alias", CallType.ALIAS, options=options, callback=callback, user_id=user_id,
            previous_id=previous_id, timestamp=timestamp, context=context, integrations=integrations,
            message_id=message_id,
        )  # fmt: skip
        return self._submit(call, cb)

    def audience(
        self,
        user_id: str | int | UUID,
        audience_name: str,
        member: bool = True,
        callback: Callback | None = None,
        *,
        timestamp: Any = None,
        context: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> EventHandle:
        """
        Say that ``user_id`` entered (``member=True``) or left an Engage audience, as Segment Engage does.

        Sends an identify whose only trait is the audience name snake_cased as lodash does (as Engage keys it) with
        a boolean: ``audience("u1", "Order Completed Last 30 Days")`` identifies ``u1`` with
        ``{"order_completed_last_30_days": True}``, and ``context.personas`` carries ``computation_class``
        ``"audience"`` and ``computation_key``, as Engage's do. Mappings apply as to any identify.

        Raises:
            TypeError: ``audience_name`` is not a str or ``member`` not a bool.
            ValueError: the audience name's key would be empty (no letter, digit or emoji).
        """
        if not isinstance(audience_name, str):
            raise TypeError(f"audience(): audience_name must be a str, not {type(audience_name).__qualname__}")
        if not isinstance(member, bool):
            raise TypeError(f"audience(): member must be a bool, not {type(member).__qualname__}")
        key = audience_key(audience_name)
        personas = {**(context or {}).get("personas", {}), **engage_context(key)}
        return self.identify(
            user_id,
            {key: member},
            None,
            callback,
            timestamp=timestamp,
            context={**(context or {}), "personas": personas},
            message_id=message_id,
        )
