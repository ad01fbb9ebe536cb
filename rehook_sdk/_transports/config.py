"""
The network settings every transport obeys, checked when the client is made: the base URL, TLS trust, the proxy.
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.request

from yarl import URL

from .._exceptions import ConfigurationError

__all__ = ["check_base_url", "check_ssl", "is_loopback", "proxy_for"]


def check_base_url(base_url: str) -> URL:
    """
    Parse ``base_url``: https, or http only to a loopback host (a local fake Rehook).

    Raises:
        ConfigurationError: anything else, so credentials never travel in clear text.
    """
    url = URL(base_url)
    if url.user is not None or url.password is not None:
        # Checked first, and the URL is not repeated in the message: it holds a password.
        raise ConfigurationError(
            "base_url must not carry credentials (user:password@host); pass api_key and api_secret instead"
        )
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ConfigurationError(
            f"base_url {base_url!r} would send the API secret unencrypted; use https "
            "(plain http is allowed only to loopback hosts such as a local fake Rehook)"
        )
    if url.query_string or url.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment, got {base_url!r}")
    return url


def check_ssl(context: object) -> ssl.SSLContext | None:
    """
    ``ssl=``: a client `ssl.SSLContext` (a CA bundle, client certificates) that still verifies the server, or
    ``"system"``: the operating system's trust store, through the truststore package.

    Raises:
        ConfigurationError: anything else; verification cannot be turned off.
    """
    if context is None:
        return None
    if context == "system":
        try:
            import truststore
        except ImportError:
            raise ConfigurationError(
                "ssl='system' needs the truststore package: pip install 'rehook-sdk[truststore]'"
            ) from None
        system: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return system
    if not isinstance(context, ssl.SSLContext):
        raise ConfigurationError(
            f"ssl must be an ssl.SSLContext (for example ssl.create_default_context(cafile=...)) or 'system', "
            f"not {context!r}; "
            "TLS verification cannot be turned off"
        )
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ConfigurationError(
            "ssl: this SSLContext does not verify the server (verify_mode CERT_REQUIRED and check_hostname are "
            "needed); TLS verification cannot be turned off"
        )
    return context


def proxy_for(base_url: URL, proxy: str | None) -> URL | None:
    """
    The proxy requests to ``base_url`` go through: ``proxy`` when given, else the environment's
    (``HTTPS_PROXY``/``HTTP_PROXY``, lower case too, minus ``NO_PROXY``), read once here. Loopback hosts (a local
    fake Rehook) never take the environment's proxy, which could not reach them.

    Raises:
        ConfigurationError: ``proxy`` is not an http(s) URL with a host.
    """
    if proxy is not None:
        if not isinstance(proxy, str):
            raise ConfigurationError(f"proxy must be a URL str, not {type(proxy).__qualname__}")
        url = URL(proxy)
        if url.scheme not in ("http", "https") or not url.host:
            # The URL is not repeated: it may hold a password.
            raise ConfigurationError("proxy must be an http:// or https:// URL with a host (user:password@ allowed)")
        return url
    host = base_url.host or ""
    if is_loopback(host):
        return None
    found = urllib.request.getproxies_environment().get(base_url.scheme)
    if not found or urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]  # untyped, stdlib
        return None
    url = URL(found if "://" in found else f"http://{found}")
    return url if url.scheme in ("http", "https") and url.host else None


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
