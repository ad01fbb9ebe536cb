"""
rehook-sdk: the asyncio Python SDK for Rehook (referrals, loyalty, rewards).
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from ._client import RehookClient
from ._exceptions import AuthenticationError, ClientStateError, ConfigurationError, RehookError
from ._outcome import EventHandle, Outcome, OutcomeStatus, Reason
from ._retry import Delivery, RetryPolicy
from ._stats import Stats
from ._types import Call, CallType

try:
    __version__ = version("rehook-sdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0.0.0"

logging.getLogger("rehook_sdk").addHandler(logging.NullHandler())

__all__ = [
    "AuthenticationError",
    "Call",
    "CallType",
    "ClientStateError",
    "ConfigurationError",
    "Delivery",
    "EventHandle",
    "Outcome",
    "OutcomeStatus",
    "Reason",
    "RehookClient",
    "RehookError",
    "RetryPolicy",
    "Stats",
    "__version__",
]
