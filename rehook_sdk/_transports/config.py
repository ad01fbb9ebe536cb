"""
The network settings every transport obeys, checked when the client is made: the base URL, TLS trust, the proxy.
"""

from __future__ import annotations

import ipaddress
import os
import ssl

from yarl import URL

from .._core.exceptions import ConfigurationError

__all__ = ["check_base_url", "check_ssl", "is_loopback", "no_proxy_exempts", "proxy_for", "unverified"]


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


def unverified(context: ssl.SSLContext | None) -> str | None:
    """
    Why ``context`` (the caller's, checked when the client was made) no longer verifies the server, or None. The
    context stays the caller's object, so the transports ask again before each connection they open: a
    ``check_hostname = False`` set later must not weaken a client made with verification on.
    """
    if context is None or (context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname):
        return None
    return (
        "cannot connect: the ssl.SSLContext given as ssl= no longer verifies the server (its verify_mode or "
        "check_hostname was changed after the client was made); TLS verification cannot be turned off"
    )


def proxy_for(base_url: URL, proxy: str | None) -> URL | None:
    """
    The proxy requests to ``base_url`` go through: ``proxy`` when given, else the environment's, read once here as
    curl reads it: ``HTTPS_PROXY`` (or ``HTTP_PROXY`` for an http base URL), then ``ALL_PROXY``, lower case first,
    minus the hosts ``NO_PROXY`` exempts (`no_proxy_exempts`). Loopback hosts (a local fake Rehook) never take the
    environment's proxy, which could not reach them.

    Raises:
        ConfigurationError: the proxy is not an http(s) URL with a host (a ``socks5://`` proxy in the environment
            included: the SDK cannot use it, and connecting straight past the proxy an operator set is not its
            call), or ``proxy`` is given with a plain-http base URL and is not itself loopback (the Authorization
            header would cross the network in clear).
    """
    if proxy is not None:
        if not isinstance(proxy, str):
            raise ConfigurationError(f"proxy must be a URL str, not {type(proxy).__qualname__}")
        url = URL(proxy)
        if url.scheme not in ("http", "https") or not url.host:
            # The URL is not repeated: it may hold a password.
            raise ConfigurationError("proxy must be an http:// or https:// URL with a host (user:password@ allowed)")
        if base_url.scheme == "http" and not is_loopback(url.host):
            raise ConfigurationError(
                f"proxy: base_url {str(base_url)!r} is plain http, so the API secret would travel unencrypted to the "
                f"proxy at {url.host}; use an https base_url, or a proxy on this machine"
            )
        return url
    host = base_url.host or ""
    if is_loopback(host):
        return None
    found, variable = _environment_proxy(base_url.scheme)
    if found is None or no_proxy_exempts(_environment("no_proxy") or "", host, base_url.port):
        return None
    url = URL(found if "://" in found else f"http://{found}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"{variable} names a {url.scheme}:// proxy{'' if url.host else ' without a host'}; the SDK uses http:// "
            f"and https:// proxies only, and does not connect past a proxy the environment sets. Use an http(s) "
            f"proxy, pass proxy=, or exempt {host} in NO_PROXY"
        )
    return url


def _environment(name: str) -> str | None:
    # Lower case first, as curl; an empty variable is unset.
    for variable in (name, name.upper()):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return None


def _environment_proxy(scheme: str) -> tuple[str | None, str]:
    for name in (f"{scheme}_proxy", "all_proxy"):
        if (value := _environment(name)) is not None:
            return value, name.upper()
    return None, ""


def no_proxy_exempts(no_proxy: str, host: str, port: int | None) -> bool:
    """
    Whether ``NO_PROXY`` (comma- or space-separated, as curl documents it) exempts ``host``: ``*`` exempts every
    host; a name exempts itself and its subdomains, with or without a leading ``.`` or ``*.``; an entry with a
    ``:port`` only that port; an IP address itself and a CIDR block (``10.0.0.0/8``) the addresses in it.
    """
    host = host.strip("[]").rstrip(".").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower()
        if entry == "*":
            return True
        entry, wanted = _split_port(entry)
        if wanted is not None and wanted != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    # "host:443", "[::1]:443"; a bare IPv6 address ("::1", "fe80::/10") has colons but no port.
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        return inside, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
