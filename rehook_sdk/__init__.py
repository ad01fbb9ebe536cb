"""
rehook-sdk: the asyncio Python SDK for Rehook (referrals, loyalty, rewards).
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from ._client import RehookClient
from ._exceptions import AuthenticationError, ClientStateError, ConfigurationError, MappingError, RehookError
from ._handle import EventHandle
from ._mappings import DEFAULT_MAPPINGS, MAX_MAPPINGS, Mapping
from ._outcome import ActionResult, Outcome, OutcomeStatus, Reason
from ._retry import Delivery, RetryPolicy
from ._stats import Stats
from ._sync import ClientSettings, SyncRehookClient
from ._types import Action, Call, CallType

try:
    __version__ = version("rehook-sdk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0.0.0"

logging.getLogger("rehook_sdk").addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_MAPPINGS",
    "MAX_MAPPINGS",
    "Action",
    "ActionResult",
    "AuthenticationError",
    "Call",
    "CallType",
    "ClientSettings",
    "ClientStateError",
    "ConfigurationError",
    "Delivery",
    "EventHandle",
    "Mapping",
    "MappingError",
    "Outcome",
    "OutcomeStatus",
    "Reason",
    "RehookClient",
    "RehookError",
    "RetryPolicy",
    "Stats",
    "SyncRehookClient",
    "__version__",
]
