"""
aiohttp and FastAPI/Starlette: the client starts with the app, handlers use it, shutdown drains it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as AiohttpTestClient
from aiohttp.test_utils import TestServer
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from rehook_sdk import RehookClient, RetryPolicy
from rehook_sdk.integrations.aiohttp import REHOOK, rehook_cleanup_ctx
from rehook_sdk.integrations.starlette import get_rehook, rehook_lifespan, running_client
from rehook_sdk.testing import FakeRehook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import aiohttp_app
import fastapi_app


async def test_aiohttp_example_app_delivers_and_drains(fake: FakeRehook) -> None:
    """The aiohttp example: handlers queue calls; stopping the app drains them to Rehook."""
    client = AiohttpTestClient(TestServer(aiohttp_app.create_app(fake.client())))
    await client.start_server()
    try:
        signup = await client.post("/signup", json={"user_id": "friend", "referral_code": "ADV001"})
        assert signup.status == 200
        order = await client.post("/orders", json={"user_id": "friend", "total": 42.5})
        assert await order.json() == {"rehook": "delivered", "reason": None}
    finally:
        await client.close()  # runs the app's cleanup: the client drains here

    assert "friend" in fake.customers
    assert sorted(e["event_name"] for e in fake.events) == ["Order Completed", "signup"]


async def test_aiohttp_cleanup_ctx_with_factory_and_custom_key(fake: FakeRehook) -> None:
    """A factory runs at startup on the app's loop; the client is stored under the key given, and closed after."""
    made: list[RehookClient] = []
    key = web.AppKey("other", RehookClient)

    def factory() -> RehookClient:
        made.append(fake.client())
        return made[-1]

    async def handler(request: web.Request) -> web.Response:
        _ = request.app[key].track("e", user_id="u1")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    app.cleanup_ctx.append(rehook_cleanup_ctx(factory, key=key, close_timeout=5))
    client = AiohttpTestClient(TestServer(app))
    await client.start_server()
    assert (await client.get("/")).status == 200
    await client.close()

    assert len(made) == 1
    assert REHOOK not in app
    assert repr(made[0]).endswith("state='closed'>")
    assert len(fake.events) == 1


def _client_for(fake: FakeRehook) -> RehookClient:
    return RehookClient(fake.api_key, fake.api_secret, base_url=fake.url, retry=RetryPolicy(time_scale=0))


def test_fastapi_example_app_delivers_and_drains(threaded_fake: FakeRehook) -> None:
    """The FastAPI example: the lifespan starts the client, handlers use the dependency, shutdown drains."""
    app = fastapi_app.create_app(_client_for(threaded_fake))
    with TestClient(app) as http:
        assert http.post("/signup", json={"user_id": "friend", "referral_code": "ADV001"}).json() == {"ok": True}
        assert http.post("/orders", json={"user_id": "friend", "total": 10}).json() == {
            "rehook": "delivered",
            "reason": None,
        }
        assert isinstance(app.state.rehook, RehookClient)

    assert "friend" in threaded_fake.customers
    assert sorted(e["event_name"] for e in threaded_fake.events) == ["Order Completed", "signup"]


def test_fastapi_own_lifespan_composes_running_client(threaded_fake: FakeRehook) -> None:
    """running_client() inside your own lifespan; get_rehook finds the client in the lifespan state."""
    import contextlib
    from collections.abc import AsyncIterator

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with running_client(lambda: _client_for(threaded_fake), close_timeout=5) as rehook:
            yield {"rehook": rehook, "other": 1}

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def index(rehook: RehookClient = Depends(get_rehook)) -> dict[str, str]:  # noqa: B008
        _ = rehook.track("visit", user_id="u1")
        return {"ok": "yes"}

    with TestClient(app) as http:
        assert http.get("/").json() == {"ok": "yes"}

    assert [e["event_name"] for e in threaded_fake.events] == ["visit"]


def test_get_rehook_without_lifespan_says_what_to_do() -> None:
    """A handler asking for the client of an app without the lifespan gets a clear error."""
    app = FastAPI()

    @app.get("/")
    async def index(rehook: RehookClient = Depends(get_rehook)) -> dict[str, str]:  # noqa: B008
        return {}

    with TestClient(app, raise_server_exceptions=True) as http, pytest.raises(RuntimeError, match="rehook_lifespan"):
        http.get("/")


def test_running_client_rejects_a_bad_source() -> None:
    """Something that is neither a client nor a factory is a TypeError at startup."""
    app = FastAPI(lifespan=rehook_lifespan("not a client"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client must be a RehookClient"), TestClient(app):
        pass


def test_starlette_integration_without_the_extra_names_it() -> None:
    """Without Starlette installed, importing the integration says which extra to install."""
    code = "import sys; sys.modules['starlette'] = None; import rehook_sdk.integrations.starlette"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert 'pip install "rehook-sdk[fastapi]"' in result.stderr
