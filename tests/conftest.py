from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rehook_sdk import RehookClient
from rehook_sdk.testing import FakeRehook

pytest_plugins = ["rehook_sdk.testing.pytest_plugin"]


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
