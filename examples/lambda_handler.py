"""
An AWS Lambda handler that tracks a signup and delivers it before it returns (rehook_sdk.integrations.serverless).

    .venv/bin/python examples/lambda_handler.py

Run as a script, it invokes the handler the way the Lambda runtime does (an event and a context whose
get_remaining_time_in_millis() counts down from 3 s), twice, against the embedded fake Rehook; on Lambda, set
REHOOK_API_KEY and REHOOK_API_SECRET in the function's environment and point the handler at ``handler``.
"""

# Fire and forget: the handler does not await the handles; rehook_handler delivers them before it returns.
# mypy: disable-error-code="unused-awaitable"

from __future__ import annotations

import time
from typing import Any

from rehook_sdk.integrations.serverless import get_rehook, rehook_handler


@rehook_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rehook = get_rehook()
    rehook.identify(event["user_id"], {"email": event.get("email")})
    if event.get("referral_code"):
        rehook.track("signup", {"referral_code": event["referral_code"]}, user_id=event["user_id"])
    return {"statusCode": 200}


class LambdaContext:
    """What the Lambda runtime passes as ``context`` (the part the SDK reads)."""

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def main() -> None:
    import os

    from rehook_sdk.testing import FakeRehook

    with FakeRehook.in_thread(conversion_events={"signup"}) as fake:
        os.environ.update(REHOOK_API_KEY=fake.api_key, REHOOK_API_SECRET=fake.api_secret, REHOOK_BASE_URL=fake.url)
        for user in ("u1", "u2"):
            answer = handler({"user_id": user, "referral_code": "ADV001"}, LambdaContext(3.0))
            stats = get_rehook().stats()
            left = stats.in_queue + stats.in_flight
            print(f"{user}: {answer}; delivered so far {stats.delivered}, left in flight {left}")
        print(f"the fake recorded {len(fake.customers)} customers and {len(fake.events)} events")
        get_rehook().close()


if __name__ == "__main__":
    main()
