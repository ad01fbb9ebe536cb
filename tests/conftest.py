from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rehook_sdk import RehookClient
from rehook_sdk.testing import FakeRehook

pytest_plugins = ["rehook_sdk.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
async def no_sender_left_behind() -> AsyncIterator[None]:
    """
    After each test, no client's sender task is still running: every client was closed or drained.
    """
    yield
    for _ in range(100):  # a background drain (an unclosed client's) may still be finishing
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith("rehook-sender") and not t.done()]
        if not left:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{len(left)} sender tasks left running: a client was not closed")


@pytest.fixture
async def fake(fake_rehook: FakeRehook) -> FakeRehook:
    """
    The fake Rehook with "signup" as a conversion event, as the seed examples need.
    """
    fake_rehook.conversion_events = frozenset({"signup"})
    return fake_rehook


@pytest.fixture
async def client(fake: FakeRehook) -> AsyncIterator[RehookClient]:
    """
    A started client for the fake, with retries that do not really wait.
    """
    async with fake.client() as rehook:
        yield rehook
