from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """
    Poll ``condition`` until it holds; fail the test after ``timeout`` seconds.

    For state that has no event to wait on (what the fake received, a counter).
    """
    async with asyncio.timeout(timeout):
        # Polling is right here: what the fake received or a counter has no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
