"""
Send the Rehook seed examples and print what became of each call.

With no credentials this starts the fake Rehook from ``rehook_sdk.testing`` on loopback and also prints what it
recorded. With REHOOK_API_KEY and REHOOK_API_SECRET set it talks to the real Rehook instead (careful: those are
real events).

    python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os

from rehook_sdk import Outcome, RehookClient
from rehook_sdk.testing import FakeRehook


def show(label: str, outcome: Outcome) -> None:
    detail = f"HTTP {outcome.http_status}" if outcome.delivered else f"{outcome.reason}: {outcome.message}"
    print(f"  {label:<40} {outcome.status.upper():<9} {detail}")


async def send_examples(rehook: RehookClient) -> None:
    # The seed's examples, as Segment's Rehook documentation writes them, in Python.
    identify = rehook.identify(
        "userId12345", {"firstName": "Bob", "email": "bob.dole@example.com", "referral_code": "ERTYUS"}
    )
    viewed = rehook.track("Product Viewed", {"product_id": "507f1f779439011", "price": 18.99}, user_id="userId12345")
    # Segment's example carries the userId inside the properties: the SDK uses it as the user id.
    in_props = rehook.track("Product Viewed", {"userId": "userId12345", "product_id": "507f1f7794", "price": 5})
    signup = rehook.track("signup", {"referral_code": "ERTYUS"}, {"userId": "userId12345"})
    # Calls Rehook would drop are not lost silently: each ends with a named reason.
    anonymous = rehook.track("Product Viewed", {"price": 1}, anonymous_id="anon-1")
    no_code = rehook.track("signup", {}, user_id="userId67890")

    print("Outcomes:")
    show('identify("userId12345", ...)', await identify)
    show('track("Product Viewed", user_id=...)', await viewed)
    show('track("Product Viewed", {"userId": ...})', await in_props)
    show('track("signup", {"referral_code": ...})', await signup)
    show("track(..., anonymous_id=...) only", await anonymous)
    show('track("signup") without a referral code', await no_code)
    print(f"Stats: {rehook.stats()}")


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the outcomes are printed above; keep the drop warnings quiet
    if os.environ.get("REHOOK_API_KEY") and os.environ.get("REHOOK_API_SECRET"):
        print("Sending to the real Rehook (REHOOK_API_KEY is set).")
        async with RehookClient(conversion_events={"signup"}) as rehook:
            await rehook.check_auth()
            await send_examples(rehook)
        return
    async with FakeRehook(conversion_events={"signup"}) as fake:
        print(f"No REHOOK_API_KEY/REHOOK_API_SECRET: using the fake Rehook at {fake.url}")
        async with fake.client() as rehook:
            await send_examples(rehook)
        print("The fake Rehook recorded:")
        for request in fake.requests:
            print(f"  {request.method} {request.path} -> {request.status}  {json.dumps(request.json)}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
