"""
A FastAPI app that sends identify/track from its handlers and drains the client on shutdown.

    .venv/bin/pip install -q -e '.[fastapi]' uvicorn && .venv/bin/python examples/fastapi_app.py
    curl -X POST localhost:8000/signup -H 'content-type: application/json' -d '{"user_id": "u1"}'

With no REHOOK_API_KEY/REHOOK_API_SECRET it also runs the fake Rehook (composed into the app's own lifespan).
"""

# Fire and forget: these handlers deliberately do not await the handles that identify()/track() return.
# mypy: disable-error-code="unused-awaitable"

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from rehook_sdk import RehookClient
from rehook_sdk.integrations.starlette import get_rehook, rehook_lifespan, running_client
from rehook_sdk.testing import FakeRehook

Rehook = Annotated[RehookClient, Depends(get_rehook)]


class Signup(BaseModel):
    user_id: str
    email: str | None = None
    referral_code: str | None = None


class Order(BaseModel):
    user_id: str
    total: float


def add_routes(app: FastAPI) -> FastAPI:
    @app.post("/signup")
    async def signup(body: Signup, rehook: Rehook) -> dict[str, bool]:
        rehook.identify(body.user_id, {"email": body.email})
        if body.referral_code:
            rehook.track("signup", {"referral_code": body.referral_code}, user_id=body.user_id)
        return {"ok": True}

    @app.post("/orders")
    async def order(body: Order, rehook: Rehook) -> dict[str, Any]:
        outcome = await rehook.track("Order Completed", {"total": body.total}, user_id=body.user_id)
        return {"rehook": outcome.status.value, "reason": outcome.reason}

    return app


def create_app(client: RehookClient | None = None) -> FastAPI:
    """
    The app with the client as its lifespan: ``client`` (for tests), or one from the environment.
    """
    return add_routes(FastAPI(lifespan=rehook_lifespan(client, close_timeout=5.0)))


@contextlib.asynccontextmanager
async def demo_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """
    Your own lifespan, with the client composed in: here it also runs the fake Rehook for the demo.
    """
    async with FakeRehook(conversion_events={"signup"}) as fake:
        print(f"Using the embedded fake Rehook at {fake.url}")
        async with running_client(fake.client(), close_timeout=5.0) as rehook:
            yield {"rehook": rehook}
        print("The fake Rehook received:")
        for r in fake.requests:
            print(f"  {r.method} {r.path} -> {r.status} {r.json}")


if __name__ == "__main__":
    import uvicorn

    demo = os.environ.get("REHOOK_API_KEY") is None
    uvicorn.run(
        add_routes(FastAPI(lifespan=demo_lifespan)) if demo else create_app(),
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
    )
