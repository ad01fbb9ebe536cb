"""
rehook-sdk: the asyncio Python SDK for Rehook (referrals, loyalty, rewards).
"""

from __future__ import annotations

import logging

from ._client.client import RehookClient
from ._client.settings import ClientSettings
from ._client.sync import SyncRehookClient
from ._core.constants import VERSION as __version__
from ._core.exceptions import (
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    MappingError,
    RehookError,
    SpoolError,
)
from ._core.outcome import ActionResult, Outcome, OutcomeStatus, Reason
from ._core.retry import Delivery, RetryPolicy
from ._core.types import Action, Call, CallType
from ._delivery.handle import EventHandle
from ._mapping.mappings import DEFAULT_MAPPINGS, MAX_MAPPINGS, Mapping
from ._report.stats import Stats

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
