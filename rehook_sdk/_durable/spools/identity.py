"""
Which Rehook application a spooled call belongs to: a keyed digest of the base URL and the API key, stored with
every row so that a spool several applications share never sends one application's calls with another's
credentials (#26).

The digest is HMAC-SHA-256 keyed with the API key over the canonical base URL, cut to 128 bits: equal for every
process of one application on one Rehook (whatever the secret, which rotates), different for a sandbox and a
production application or two tenants, and of no use for finding the key (it is keyed with it). The key itself is
never stored.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

from yarl import URL

from ..._core.constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from ..._transports.config import check_base_url

__all__ = ["application_identity", "identity_from"]

# Bumped only if the digest's inputs change: rows keep the prefix of the rule that made them.
_PREFIX = "a1:"


@functools.lru_cache(maxsize=16)
def application_identity(base_url: str, api_key: str) -> str:
    """
    The identity of the application ``api_key`` names on the Rehook at ``base_url`` (a URL already checked).
    """
    url = URL(base_url)
    canonical = f"{url.scheme}://{url.host}:{url.port}{url.path.rstrip('/')}"
    digest = hmac.new(api_key.encode("utf-8", "surrogatepass"), canonical.encode(), hashlib.sha256).hexdigest()
    return _PREFIX + digest[:32]


def identity_from(api_key: str | None, base_url: str | None) -> str | None:
    """
    The identity of the application an API key and base URL name, each defaulting to the environment as the
    client's do; None without an API key.

    Raises:
        ConfigurationError: a base URL the client would refuse.
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key or not isinstance(key, str):
        return None
    return application_identity(str(check_base_url(base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)), key)
