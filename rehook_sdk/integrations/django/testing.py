"""
For the tests of a Django project: `override_rehook` makes `get_rehook` give in-memory clients of a `FakeRehook`,
so that nothing is sent and ``fake.events`` / ``fake.customers`` show what would have been.
"""

from __future__ import annotations

import contextlib
from types import TracebackType

from ...testing import FakeRehook
from . import _Clients

__all__ = ["override_rehook"]


class override_rehook(contextlib.ContextDecorator):
    """
    While active (a ``with`` block, or a decorator on a test function or ``TestCase`` method), `get_rehook` gives
    in-memory clients of ``fake`` (a new `FakeRehook` when not given), in sync and async code alike.

    ::

        from rehook_sdk.integrations.django.testing import override_rehook

        @override_rehook()
        def test_signup_tracks(client):
            ...

        # or, as a pytest fixture
        @pytest.fixture
        def rehook():
            with override_rehook() as fake:
                yield fake

    On leaving, the sync client's calls are delivered to the fake and it is closed; in an async test, ``await
    get_rehook().flush()`` before looking at the fake.
    """

    def __init__(self, fake: FakeRehook | None = None) -> None:
        self.fake = fake
        self._saved: list[_Clients] = []

    def __enter__(self) -> FakeRehook:
        from .. import django as integration

        fake = self.fake if self.fake is not None else FakeRehook()
        with integration._swap_lock:
            self._saved.append(integration._clients)
            integration._clients = _Clients(fake.memory_sync_client, fake.memory_client)
        return fake

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from .. import django as integration

        with integration._swap_lock:
            overriding, integration._clients = integration._clients, self._saved.pop()
        if overriding.sync is not None:
            overriding.sync.close(timeout=5)
