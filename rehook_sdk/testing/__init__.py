"""
Test helpers for code that uses rehook-sdk: a fake Rehook server to point a client at, and a fault proxy that
breaks the network between a client and a server on purpose, and a probe of how long the event loop is held.

``FakeRehook().memory_client()`` answers a client's requests in memory, without a server. In pytest the
``fake_rehook`` and ``fake_rehook_sync`` fixtures are there once rehook-sdk is installed. From a shell:
``python -m rehook_sdk.testing --port 8080``.
"""

from __future__ import annotations

from ._fake import DEFAULT_API_KEY, DEFAULT_API_SECRET, FakeRehook, RecordedRequest, key_digest
from ._probe import LoopProbe
from ._proxy import FaultKind, FaultProxy, ProxiedRequest, ProxyFault

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "FakeRehook",
    "FaultKind",
    "FaultProxy",
    "LoopProbe",
    "ProxiedRequest",
    "ProxyFault",
    "RecordedRequest",
    "key_digest",
]
