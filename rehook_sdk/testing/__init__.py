"""
Test helpers for code that uses rehook-sdk: a fake Rehook server to point a client at.

In pytest, enable the ``fake_rehook`` fixture with ``pytest_plugins = ["rehook_sdk.testing.pytest_plugin"]``.
From a shell: ``python -m rehook_sdk.testing --port 8080``.
"""

from __future__ import annotations

from ._fake import DEFAULT_API_KEY, DEFAULT_API_SECRET, FakeRehook, RecordedRequest, key_digest

__all__ = ["DEFAULT_API_KEY", "DEFAULT_API_SECRET", "FakeRehook", "RecordedRequest", "key_digest"]
