"""
Secrets kept out of what the SDK shows: a location (a spool's database URL or libpq connection string, a proxy
URL, a base URL) without its password, and a text (an answer's body, an error) without the credentials in any form
a server could echo them in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["MIN_SECRET", "REDACTED", "Redactor", "basic_token", "looks_like_conninfo", "redact_location"]

REDACTED = "[redacted]"
MIN_SECRET = 4
"""Secrets shorter than this are not searched for in texts: replacing a 2-letter secret would garble every text."""

# libpq's keywords whose values are secrets (a password, the password of the client key).
_SECRET_KEYS = frozenset({"password", "sslpassword"})
_MASK = "***"
_CONNINFO = re.compile(r"\s*[A-Za-z_]+\s*=")
# A libpq keyword=value pair: the value bare, or single-quoted with \' and \\ escapes.
_PAIR = re.compile(r"([A-Za-z_]+)(\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
_PAIRS = re.compile(rf"\s*(?:{_PAIR.pattern}(?=\s|$)\s*)*")
_SECRET_KEY = re.compile(r"(?i)\b(?:ssl)?password\s*=\s*")


def looks_like_conninfo(location: str) -> bool:
    """
    Whether ``location`` is a libpq ``keyword=value`` connection string (``host=db password=... dbname=app``).
    """
    return "://" not in location and _CONNINFO.match(location) is not None


def redact_location(location: str) -> str:
    """
    ``location`` as messages may show it: a URL's ``user:password@`` password and its ``password=`` and
    ``sslpassword=`` query parameters, and the same keywords of a libpq ``keyword=value`` string, replaced by
    ``***``. Anything else (a file path) is returned as it is.
    """
    if "://" in location:
        return _redact_url(location)
    if looks_like_conninfo(location):
        if _PAIRS.fullmatch(location):
            return _PAIR.sub(_mask_pair, location)
        # Not pairs libpq reads: where a password ends is not known, so nothing after its keyword is shown.
        secret = _SECRET_KEY.search(location)
        return location if secret is None else location[: secret.end()] + _MASK + " …"
    return location


def _mask_pair(match: re.Match[str]) -> str:
    key, equals, value = match.groups()
    return f"{key}{equals}{_MASK}" if key.lower() in _SECRET_KEYS and value else match.group(0)


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    # The authority ends at the first "/", "?" or "#"; its user information at its last "@" (a password may hold
    # an unescaped "@", which libpq accepts).
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.split(':', 1)[0]}:{_MASK}@{hosts}"
    path, question, query = tail.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            secret = equals and value and unquote(key).lower() in _SECRET_KEYS
            pairs.append(f"{key}={_MASK}" if secret else pair)
        tail = f"{path}?{'&'.join(pairs)}{hash_}{fragment}"
    return f"{scheme}://{authority}{tail}"


class Redactor:
    """
    Replaces secrets in texts by ``[redacted]``, in every form a server that echoes them could use: as they are;
    for a Basic token, also without its ``=`` padding (which decodes to the whole ``key:secret``); and any of
    their characters JSON-escaped (``\\u0073``, ``\\/``) or percent-encoded (``%73``, ``+`` for a space).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                forms.add(secret)
                if secret.endswith("=") and len(secret.rstrip("=")) >= MIN_SECRET:
                    forms.add(secret.rstrip("="))
        self._forms = tuple(sorted(forms, key=len, reverse=True))  # the longest first: a token holds the key
        self.shortest = len(self._forms[-1]) if forms else 1 << 62  # a text shorter than this holds no secret
        self._escaped = (
            re.compile("|".join(_escaped_pattern(form) for form in self._forms), re.IGNORECASE) if forms else None
        )

    def redact(self, text: str) -> str:
        if len(text) < self.shortest:  # most answers ("{}"): nothing to look for
            return text
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        if self._escaped is not None and ("\\" in text or "%" in text or "+" in text):
            text = self._escaped.sub(REDACTED, text)
        return text


def _escaped_pattern(form: str) -> str:
    return "".join(_char_pattern(char) for char in form)


def _char_pattern(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        ways = [re.escape(char), rf"\\u{code:04x}"]
    else:  # JSON escapes it as a UTF-16 surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        ways = [re.escape(char), rf"\\u{high:04x}\\u{low:04x}"]
    if char in '"\\/':
        ways.append(re.escape("\\" + char))
    encoded = char.encode("utf-8")
    ways.append("".join(f"%{byte:02x}" for byte in encoded))
    if char == " ":
        ways.append(r"\+")
    return f"(?:{'|'.join(ways)})"


def basic_token(user: str, password: str) -> str:
    """
    The Basic authorization token of ``user:password`` (RFC 7617, UTF-8).
    """
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
