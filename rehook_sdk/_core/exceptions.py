"""
The errors rehook-sdk raises.

Only programmer errors and explicit requests raise; anything that happens to an event after it was accepted
becomes an `Outcome` instead (see ``_core/outcome.py``)::

    RehookError
    ├── ConfigurationError (also ValueError)   bad settings at construction: missing credentials, bad URL
    │   └── MappingError                       an invalid Mapping: trigger syntax, directive, field, limit
    ├── ClientStateError (also RuntimeError)   start() on a closed client, a client used from two loops
    └── AuthenticationError                    check_auth() got 401: the key/secret pair is wrong

Wrong argument *types* at a call raise the builtin `TypeError`, naming the argument.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClientStateError",
    "ConfigurationError",
    "MappingError",
    "RehookError",
    "SpoolError",
]


class RehookError(Exception):
    """
    Base class of every error rehook-sdk raises.
    """


class ConfigurationError(RehookError, ValueError):
    """
    A setting given to the client is missing or invalid.
    """


class MappingError(ConfigurationError):
    """
    A mapping is invalid. The message says which mapping, what is wrong, and where.

    Attributes:
        index: The mapping's position in the list given to the client (``None`` for the list itself).
        name: The mapping's name.
        part: What is wrong: ``"trigger"``, ``"action"``, ``"fields.<field>..."``, or ``"mappings"``.
        text: The offending text (the trigger, or the field value), when there is one.
        position: The 0-based position in ``text`` of the problem, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        name: str | None = None,
        part: str = "mappings",
        text: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.name = name
        self.part = part
        self.text = text
        self.position = position


class ClientStateError(RehookError, RuntimeError):
    """
    The client cannot do this in its current state (for example start() after aclose()).
    """


class AuthenticationError(RehookError):
    """
    Rehook refused the API key and secret (HTTP 401).
    """

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class SpoolError(RehookError):
    """
    The spool (``spool=``) cannot be opened or used: not a SQLite database, damaged, of a newer format, locked
    for too long, or opened by the parent of a forked process.
    """
