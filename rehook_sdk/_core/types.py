"""
The call a user made, as a value: what identify()/track()/page()/screen()/group()/alias() captured.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from .encoding import safe_repr

__all__ = ["Action", "Call", "CallType"]


class CallType(enum.StrEnum):
    """
    The Segment spec call a `Call` came from.
    """

    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class Action(enum.StrEnum):
    """
    The Rehook actions a `Mapping` can send.
    """

    IDENTIFY_USER = "identify_user"
    """Identify User: ``POST /customers`` (create or update the customer ``source_id``)."""
    TRACK_EVENT = "track_event"
    """Track Event: ``POST /events/invoke``."""


@attrs.frozen(kw_only=True)
class Call:
    """
    One call as the user made it, after argument normalisation and before any Rehook rule.

    Ids are strings (a numeric id became its ``str``); ``traits``/``properties`` are shallow copies of what was
    passed, so rebinding keys in the caller's dict afterwards does not change what is sent. Nested values are
    read when the event is sent: do not mutate them after the call. Its ``repr`` never raises, whatever the
    user's values do.

    Attributes:
        type: Which call this was.
        user_id: ``userId``: the positional id, ``user_id=``, ``options["userId"]``, or for track/page/screen
            ``properties["userId"]``, in that order of precedence.
        anonymous_id: ``anonymousId``, kept to tell "anonymous only" from "no id at all".
        event: The track event name.
        name: The page/screen name.
        properties: Track/page/screen properties (Rehook's event ``metadata``).
        traits: Identify/group traits (Rehook's customer ``metadata``).
        group_id: The group() id.
        previous_id: The alias() previous id.
        context: analytics.js ``context``, plus any unknown ``options`` keys (as analytics.js does).
        integrations: analytics.js ``integrations``.
        timestamp: When the call happened, if the user said so (Rehook's API takes no timestamp).
        message_id: ``messageId``, sent as the ``Idempotency-Key`` header: the user's, or (in the call that
            ``before_send`` and outcomes see) a random one the SDK gave it when a sender took it.
    """

    type: CallType
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    name: str | None = None
    properties: Mapping[str, Any] | None = attrs.field(default=None, repr=safe_repr)
    traits: Mapping[str, Any] | None = attrs.field(default=None, repr=safe_repr)
    group_id: str | None = None
    previous_id: str | None = None
    context: Mapping[str, Any] | None = attrs.field(default=None, repr=safe_repr)
    integrations: Mapping[str, Any] | None = attrs.field(default=None, repr=safe_repr)
    timestamp: dt.datetime | str | None = attrs.field(default=None, repr=safe_repr)
    message_id: str | None = None
