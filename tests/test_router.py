"""
The router's shortcut for the default mappings gives exactly what the general mapping engine gives.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rehook_sdk import DEFAULT_MAPPINGS, Call, CallType
from rehook_sdk._mapping.mappings import compile_mappings
from rehook_sdk._mapping.router import Router

COMPILED = compile_mappings(DEFAULT_MAPPINGS)
SHORTCUT = Router(COMPILED, frozenset({"signup"}))
GENERAL = Router(COMPILED, frozenset({"signup"}), shortcut=False)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=4),
    st.just(math.nan),
    st.builds(object),
    st.lists(st.integers(), max_size=2),
)
payloads = st.none() | st.dictionaries(
    st.sampled_from(["referral_code", "userId", "name", "price", "plan"]) | st.text(max_size=3), values, max_size=4
)
calls = st.builds(
    lambda kind, user_id, anonymous_id, event, name, data: Call(
        type=kind,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=event if kind is CallType.TRACK else None,
        name=name if kind in (CallType.PAGE, CallType.SCREEN) else None,
        properties=data if kind in (CallType.TRACK, CallType.PAGE, CallType.SCREEN) else None,
        traits=data if kind in (CallType.IDENTIFY, CallType.GROUP) else None,
    ),
    st.sampled_from(list(CallType)),
    st.none() | st.sampled_from(["", "u1"]),
    st.none() | st.just("anon"),
    st.sampled_from(["", "signup", "Order Completed"]),
    st.none() | st.text(max_size=3),
    payloads,
)


@settings(max_examples=500)
@given(call=calls)
def test_shortcut_routes_like_the_general_engine(call: Call) -> None:
    """Same steps, requests, drop reasons and messages, for any call."""
    expected: Any = GENERAL.route(call, "m")
    assert SHORTCUT.route(call, "m") == expected


def test_shortcut_only_for_the_defaults() -> None:
    """Any other set of mappings (even the defaults reordered) takes the general path."""
    assert SHORTCUT._defaults
    assert not GENERAL._defaults
    assert not Router(compile_mappings(list(reversed(DEFAULT_MAPPINGS))), frozenset())._defaults
