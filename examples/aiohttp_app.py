"""
An aiohttp web app that sends identify/track from its handlers and drains the client on shutdown.

    python examples/aiohttp_app.py      # then: curl -X POST localhost:8000/signup -d '{"user_id": "u1"}'

With no REHOOK_API_KEY/REHOOK_API_SECRET it also serves the fake Rehook and prints what it received at shutdown.
"""

# Fire and forget: these handlers deliberately do not await the handles that identify()/track() return.
# mypy: disable-error-code="unused-awaitable"

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from rehook_sdk import RehookClient
from rehook_sdk.integrations.aiohttp import REHOOK, rehook_cleanup_ctx
from rehook_sdk.testing import FakeRehook

FAKE: web.AppKey[FakeRehook] = web.AppKey("fake_rehook", FakeRehook)


async def signup(request: web.Request) -> web.Response:
    """
    A user signs up, maybe with an advocate's referral code.
    """
    body = await request.json()
    rehook = request.app[REHOOK]
    rehook.identify(body["user_id"], {"email": body.get("email")})
    if code := body.get("referral_code"):
        rehook.track("signup", {"referral_code": code}, user_id=body["user_id"])
    return web.json_response({"ok": True})


async def order(request: web.Request) -> web.Response:
    """
    An order completes: a Track Event Rehook's campaigns can reward, awaited here to show its outcome.
    """
    body = await request.json()
    outcome = await request.app[REHOOK].track(
        "Order Completed", {"total": body["total"], "currency": "EUR"}, user_id=body["user_id"]
    )
    return web.json_response({"rehook": outcome.status.value, "reason": outcome.reason})


def create_app(client: RehookClient | None = None) -> web.Application:
    """
    The app; ``client`` (for tests) or one from the environment, or the embedded fake Rehook's.
    """
    app = web.Application()
    app.router.add_post("/signup", signup)
    app.router.add_post("/orders", order)
    if client is None and not os.environ.get("REHOOK_API_KEY"):
        app.cleanup_ctx.append(_fake_rehook)  # listed first: it starts before the client and stops after it
        app.cleanup_ctx.append(rehook_cleanup_ctx(lambda: app[FAKE].client(), close_timeout=5.0))
    else:
        app.cleanup_ctx.append(rehook_cleanup_ctx(client, close_timeout=5.0))
    return app


async def _fake_rehook(app: web.Application) -> AsyncIterator[None]:
    async with FakeRehook(conversion_events={"signup"}) as fake:
        print(f"Using the embedded fake Rehook at {fake.url}")
        app[FAKE] = fake
        yield
        print("The fake Rehook received:")
        for r in fake.requests:
            print(f"  {r.method} {r.path} -> {r.status} {r.json}")


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
