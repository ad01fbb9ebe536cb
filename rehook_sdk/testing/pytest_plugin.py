"""
A pytest plugin with a ``fake_rehook`` fixture: ``pytest_plugins = ["rehook_sdk.testing.pytest_plugin"]``.

Needs pytest-asyncio (pytest-aiohttp brings it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ._fake import FakeRehook

__all__ = ["fake_rehook"]


@pytest_asyncio.fixture
async def fake_rehook() -> AsyncIterator[FakeRehook]:
    """
    A started `FakeRehook` on loopback; ``fake_rehook.client()`` makes a client for it.
    """
    async with FakeRehook() as fake:
        yield fake
