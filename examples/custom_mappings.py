"""
Custom mappings: choose which calls reach Rehook, as which action, with which fields.

Runs against the embedded fake Rehook (no credentials needed) and prints what each call became and what the fake
received.

    python examples/custom_mappings.py
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from rehook_sdk import DEFAULT_MAPPINGS, Mapping, Outcome
from rehook_sdk.testing import FakeRehook

MAPPINGS = [
    # Keep the default for identify, but not for every track...
    DEFAULT_MAPPINGS[0],
    # ...send page and screen calls (Segment's destination sends none by default) as Track Event "page"/"screen"...
    Mapping(
        name="Pages and screens",
        trigger='type = "page" or type = "screen"',
        action="track_event",
        fields={"event_name": {"@path": "$.type"}},
    ),
    # ...only orders, renamed, with the metadata Rehook's campaign rules need.
    Mapping(
        name="Orders",
        trigger='type = "track" and event = "Order Completed"',
        action="track_event",
        fields={
            "event_name": "order_success",
            "source_id": {"@path": "$.userId"},
            "metadata": {
                "amount": {"@path": "$.properties.total"},
                "mode": {"@path": "$.properties.payment"},
                "coupon": {"@if": {"exists": {"@path": "$.properties.coupon"}, "then": True, "else": "none"}},
            },
        },
    ),
    # Signups become Rehook's conversion event, carrying the advocate's code.
    Mapping(
        name="Signups",
        trigger='type = "track" and match(event, "Signed Up*")',
        action="track_event",
        fields={"event_name": "signup"},
    ),
    # Code instead of FQL: big orders also update the customer.
    Mapping(
        name="Big spenders",
        trigger=lambda event: event["type"] == "track" and event.get("properties", {}).get("total", 0) >= 100,
        action="identify_user",
        fields=lambda event: {"metadata": {"big_spender": True}},
    ),
]


def show(label: str, outcome: Outcome) -> None:
    reason = f"{outcome.reason}: " if outcome.reason else ""
    print(f"  {label:<30} {outcome.status.upper():<9} {reason}{outcome.message}")
    for result in outcome.results if len(outcome.results) > 1 else ():
        print(f"      {result.mapping:<14} {result.action:<14} {result.status}")


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    async with FakeRehook(conversion_events={"signup"}) as fake:
        async with fake.client(mappings=MAPPINGS, conversion_events={"signup"}) as rehook:
            big_order = {"total": 120, "payment": "card"}
            small_order = {"total": 20, "payment": "paypal", "coupon": "X"}
            calls: list[tuple[str, Any]] = [
                ("identify advocate", rehook.identify("adv-1", {"referral_code": "ADV001", "plan": "pro"})),
                ("order of 120 (two actions)", rehook.track("Order Completed", big_order, user_id="adv-1")),
                ("order of 20", rehook.track("Order Completed", small_order, user_id="adv-1")),
                ("Product Viewed (no mapping)", rehook.track("Product Viewed", {"price": 3}, user_id="adv-1")),
                ("friend signs up", rehook.track("Signed Up (web)", {"referral_code": "ADV001"}, user_id="friend-1")),
                ("signup without a code", rehook.track("Signed Up (app)", {}, user_id="friend-2")),
                ("Engage audience", rehook.audience("adv-1", "High LTV Customers")),
            ]
            print("Outcomes:")
            for label, handle in calls:
                show(label, await handle)
        print("The fake Rehook received:")
        for request in fake.requests:
            print(f"  {request.method} {request.path} -> {request.status}  {json.dumps(request.json)}")


if __name__ == "__main__":
    asyncio.run(main())
