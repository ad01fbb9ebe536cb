"""
Defaults in one place, so the docs, the settings and the tests agree.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DEFAULT_BASE_URL = "https://api.rehook.ai"
API_KEY_ENV = "REHOOK_API_KEY"
API_SECRET_ENV = "REHOOK_API_SECRET"
BASE_URL_ENV = "REHOOK_BASE_URL"
DISABLED_ENV = "REHOOK_DISABLED"
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024  # what the fake (aiohttp's default client_max_size) accepts

CUSTOMERS_PATH = "/customers"
EVENTS_PATH = "/events/invoke"
CHECK_AUTH_PATH = "/events/segment/check-auth"

IDEMPOTENCY_HEADER = "Idempotency-Key"

DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_CONCURRENCY = 64
DEFAULT_MAX_CONCURRENCY = 256  # concurrency="auto"'s ceiling
# Per HTTP request, connect included. Rehook answers in milliseconds; ten seconds means it is not answering.
DEFAULT_REQUEST_TIMEOUT = 10.0
# How long aclose() and the garbage-collection drain wait by default.
DEFAULT_CLOSE_TIMEOUT = 10.0
# How long an unclosed client keeps delivering at interpreter exit.
DEFAULT_ATEXIT_TIMEOUT = 2.0
# spool=: an owner whose heartbeat is older than this is taken for dead; appended calls wait this long for a group.
DEFAULT_SPOOL_LEASE = 30.0
# Seconds start() waits for a spool to open (a SQLite file another process holds locked, a slow database).
SPOOL_OPEN_TIMEOUT = 30.0
DEFAULT_SPOOL_INTERVAL = 0.005
DEFAULT_MAX_SPOOL_BYTES = 1024**3
# spool=: seconds failed calls are kept in the spool for the operator (rehook send --from-spool) before removal.
DEFAULT_SPOOL_RETENTION = 7 * 24 * 3600.0

# Retry policy. Attempts count the first try: 8 attempts wait about 0.5+1+2+4+8+16+30 s at most (full jitter).
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_INITIAL_WAIT = 0.5
DEFAULT_MAX_WAIT = 30.0
# A Retry-After longer than this is capped: one event must not hold a sender for minutes.
DEFAULT_MAX_RETRY_AFTER = 60.0

# Payload limits that keep a pathological value from stalling a sender.
MAX_NESTING_DEPTH = 64

try:
    VERSION = version("rehook-sdk")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0"
