"""
The pytest plugin of rehook-sdk: pytest loads it by itself once rehook-sdk is installed (a ``pytest11`` entry
point; listing it in ``pytest_plugins`` as 0.1.0 asked still works).

Fixtures:

- ``fake_rehook``: a started `FakeRehook` for async tests (needs pytest-asyncio, in its auto or strict mode).
- ``fake_rehook_sync``: the same fake served from a background thread, for synchronous tests (Django, Flask...).

Configure the fake of a test with a marker: ``@pytest.mark.fake_rehook(conversion_events={"signup"})`` (any
`FakeRehook` argument), or set its attributes and script its faults in the test (``fake_rehook.fail_next(2)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ._fake import FakeRehook

__all__ = ["fake_rehook", "fake_rehook_sync"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fake_rehook(**settings): FakeRehook arguments for the fake_rehook / fake_rehook_sync fixtures"
    )


def _settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("fake_rehook")
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError("@pytest.mark.fake_rehook takes keyword arguments only (FakeRehook's)")
    return dict(marker.kwargs)


# The plugin loads in every pytest run of a project that has rehook-sdk: it must work without pytest-asyncio.
try:
    import pytest_asyncio
except ImportError:
    _async_fixture: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None
else:
    _async_fixture = pytest_asyncio.fixture

if _async_fixture is not None:

    @_async_fixture
    async def fake_rehook(request: pytest.FixtureRequest) -> AsyncIterator[FakeRehook]:
        """
        A started `FakeRehook` on loopback; ``fake_rehook.client()`` makes a client for it.
        """
        async with FakeRehook(**_settings(request)) as fake:
            yield fake

else:  # tests run this branch in a venv without pytest-asyncio

    @pytest.fixture
    def fake_rehook() -> FakeRehook:  # the same fixture name, without pytest-asyncio
        """
        Needs pytest-asyncio; without it, use ``fake_rehook_sync``.
        """
        pytest.fail(
            "the fake_rehook fixture needs pytest-asyncio (pip install pytest-asyncio); fake_rehook_sync does not"
        )


@pytest.fixture
def fake_rehook_sync(request: pytest.FixtureRequest) -> Iterator[FakeRehook]:
    """
    A `FakeRehook` served from a background thread: point a `SyncRehookClient` (or a web app) at ``.url``.
    """
    with FakeRehook.in_thread(**_settings(request)) as fake:
        yield fake
