"""
The ``rehook`` command's arguments: one function per command, and the checked argument types.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .._core.constants import (
    API_KEY_ENV,
    API_SECRET_ENV,
    DEFAULT_CONCURRENCY,
    DEFAULT_SPOOL_LEASE,
    DEFAULT_SPOOL_RETENTION,
    VERSION,
)
from ..testing.__main__ import __doc__ as fake_doc
from ..testing.__main__ import add_arguments as add_fake_arguments


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _count(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rehook", description="Send calls to Rehook, check credentials, run a fake.")
    top.add_argument("--version", action="version", version=f"rehook-sdk {VERSION}")
    commands = top.add_subparsers(dest="command", required=True)
    _send_how(_send_what(commands.add_parser))
    _relay(commands.add_parser)
    _spool(commands.add_parser)
    auth_p = commands.add_parser("check-auth", help="check the API key and secret")
    _credentials(auth_p)

    fake_p = commands.add_parser(
        "fake-server", help="run the fake Rehook (the same as python -m rehook_sdk.testing)", description=fake_doc
    )
    add_fake_arguments(fake_p)
    return top


def _send_what(add_parser: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """
    ``rehook send``: what to send, and where the calls that are not delivered go.
    """
    send_p = add_parser(
        "send",
        help="send the calls in JSON Lines files (or - for stdin)",
        description="Send every call in the files. A run that is not interrupted delivers all it read, however long "
        "that takes; Ctrl-C stops reading, delivers what was read for at most --drain-timeout seconds, and says "
        "how to resume. Failed calls go to the failed file, which `rehook send` replays.",
    )
    send_p.add_argument("files", nargs="*", metavar="FILE", help="JSON Lines: one Segment call per line (- is stdin)")
    _credentials(send_p)
    send_p.add_argument(
        "--from-spool",
        default=None,
        metavar="SPOOL",
        help="instead of files: send again the calls this spool (a SQLite file or a postgresql:// URL) keeps as "
        "failed; delivered ones leave it, failed ones stay with their new outcome",
    )
    send_p.add_argument(
        "--failed-to",
        default=None,
        metavar="PATH",
        help="write failed calls here, replayable (default: a new "
        "rehook-failed-<time>.jsonl in the current folder, removed when nothing failed)",
    )
    send_p.add_argument(
        "--dropped-to", default=None, metavar="PATH", help="write the calls a rule dropped here, with the reason"
    )
    send_p.add_argument("--dry-run", action="store_true", help="validate and map, print the requests, send nothing")
    return send_p


def _send_how(send_p: argparse.ArgumentParser) -> None:
    """
    ``rehook send``: how to send.
    """
    send_p.add_argument(
        "--concurrency", type=_positive_int, default=DEFAULT_CONCURRENCY, help="requests in flight (default 64)"
    )
    send_p.add_argument(
        "--conversion-event",
        action="append",
        default=[],
        metavar="NAME",
        help="an event name Rehook needs a referral_code for (repeatable)",
    )
    send_p.add_argument(
        "--max-attempts", type=_positive_int, default=8, help="requests per call, retries included (default 8)"
    )
    send_p.add_argument(
        "--max-queue", type=_positive_int, default=10_000, help="calls read ahead of their outcome (default 10000)"
    )
    send_p.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=10.0,
        help="after Ctrl-C only: seconds to deliver the calls already read (default 10)",
    )
    send_p.add_argument(
        "--skip",
        type=_count,
        default=0,
        metavar="N",
        help="skip the first N non-blank lines (to resume where an interrupted run stopped)",
    )
    send_p.add_argument(
        "--resend-maybe-delivered",
        action="store_true",
        help="also send failed-file lines (or failed spool calls) whose request may have reached Rehook (skipped "
        "by default: Rehook has no idempotency key, so they may be duplicated)",
    )
    _take_unidentified(send_p)
    send_p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _relay(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    relay_p = add_parser(
        "relay",
        help="deliver the calls a spool holds for processes that are gone",
        description="Run a delivery worker over a spool (a SQLite file, or a postgresql:// URL): it takes over the "
        "calls of processes that died (once their lease expires) or closed before delivering them, and delivers "
        "them, until SIGINT/SIGTERM (or, with --once, until none is left). For apps whose processes are "
        "short-lived or killed. Calls a live process owns are left to it. Exit status: 0 nothing left for it, 1 some "
        "calls failed, 3 (--once) calls were left that processes with a live heartbeat hold (without --wait) or that "
        "name no application (without --take-unidentified). It takes only the calls of the application whose API key "
        "and base URL it is given: run one relay per application.",
    )
    relay_p.add_argument("--spool", required=True, help="the spool: a SQLite file or a postgresql:// URL")
    _credentials(relay_p)
    relay_p.add_argument("--once", action="store_true", help="stop when nothing is left to take over")
    _take_unidentified(relay_p)
    relay_p.add_argument(
        "--wait",
        action="store_true",
        help="with --once: also wait for calls other processes still hold (until their leases end) and take them over",
    )
    relay_p.add_argument(
        "--lease",
        type=_positive_seconds,
        default=DEFAULT_SPOOL_LEASE,
        help="seconds without a heartbeat after which a process is taken for dead (default 30)",
    )
    relay_p.add_argument(
        "--concurrency", type=_positive_int, default=DEFAULT_CONCURRENCY, help="requests in flight (default 64)"
    )
    relay_p.add_argument(
        "--max-queue", type=_positive_int, default=10_000, help="calls taken over at a time (default 10000)"
    )
    relay_p.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=10.0,
        help="when stopped: seconds to deliver what was taken over; the rest stays in the spool (default 10)",
    )


def _spool(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    spool_p = add_parser(
        "spool",
        help="what a spool holds, and removing its old failed calls",
        description="Look at a spool (a SQLite file or a postgresql:// URL), or remove its old failed calls. Rows "
        "name their application: the API key and base URL say which are this application's (the secret is not "
        "needed).",
    )
    spool_commands = spool_p.add_subparsers(dest="spool_command", required=True, help="what to do with it")
    stats_p = spool_commands.add_parser(
        "stats", help="count the calls by application and state, with their bytes and the oldest failed one's age"
    )
    purge_p = spool_commands.add_parser(
        "purge", help="remove this application's failed calls accepted more than --older-than seconds ago"
    )
    for sub in (stats_p, purge_p):
        sub.add_argument("--spool", required=True, help="the spool: a SQLite file or a postgresql:// URL")
        _credentials(sub)
    purge_p.add_argument(
        "--older-than",
        type=_seconds,
        default=DEFAULT_SPOOL_RETENTION,
        metavar="SECONDS",
        help="remove the failed calls accepted more than this many seconds ago (default 604800, 7 days: what "
        "spool_retention keeps; 0 removes every failed call)",
    )


def _credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-key", default=None, help=f"the API key (default ${API_KEY_ENV})")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument(
        "--api-secret-file",
        default=None,
        metavar="PATH",
        help=f"read the API secret from this file's first line (- reads it from standard input); default "
        f"${API_SECRET_ENV}; never printed",
    )
    secret.add_argument(
        "--api-secret",
        default=None,
        help="deprecated, and unsafe: every user of this machine can read a command's arguments (ps, "
        f"/proc/PID/cmdline); use ${API_SECRET_ENV} or --api-secret-file",
    )
    p.add_argument("--base-url", default=None, help="Rehook's URL (default $REHOOK_BASE_URL or https://api.rehook.ai)")


def _take_unidentified(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--take-unidentified",
        action="store_true",
        help="also take the spool's calls that name no application (spooled before rows named one) as this "
        "application's: only where no other application has used the spool",
    )
