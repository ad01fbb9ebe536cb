"""
rehook-sdk: the asyncio Python SDK for Rehook (referrals, loyalty, rewards).
"""

from __future__ import annotations

import logging

from ._client import RehookClient
from ._constants import VERSION as __version__
from ._delivery.handle import EventHandle
from ._exceptions import (
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    MappingError,
    RehookError,
    SpoolError,
)
from ._mapping.mappings import DEFAULT_MAPPINGS, MAX_MAPPINGS, Mapping
from ._outcome import ActionResult, Outcome, OutcomeStatus, Reason
from ._report.stats import Stats
from ._retry import Delivery, RetryPolicy
from ._sync import ClientSettings, SyncRehookClient
from ._types import Action, Call, CallType

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
    "SpoolError",
    "Stats",
    "SyncRehookClient",
    "__version__",
]
