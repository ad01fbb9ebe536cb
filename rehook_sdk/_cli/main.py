"""
The ``rehook`` command: parse, read the secret, run the command, turn errors into messages and exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from .._core.constants import (
    API_KEY_ENV,
    API_SECRET_ENV,
)
from .._core.exceptions import AuthenticationError, ConfigurationError, RehookError, SpoolError
from .._durable.files import private_error
from ..testing.__main__ import serve as serve_fake
from .common import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, client_from
from .lines import unreadable
from .parser import parser
from .relay import relay
from .send import open_appending, send, send_usage
from .spool import spool_command


async def check_auth(args: argparse.Namespace) -> int:
    """
    ``rehook check-auth``: ask Rehook whether the key and secret are valid.
    """
    async with client_from(args) as client:
        try:
            await client.check_auth()
        except AuthenticationError as exc:
            print(f"rehook: credentials refused: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except RehookError as exc:
            print(f"rehook: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"ok: Rehook accepted the API key and secret ({client!r})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "fake-server":
        serve_fake(args)
        return EXIT_OK
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader went away (rehook send --dry-run | head): stop quietly, as a program killed by SIGPIPE does.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace) -> int:
    if args.command == "send":
        if (problem := send_usage(args)) is not None:
            print(f"rehook send: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if (problem := unreadable(args.files)) is not None:
            print(f"rehook send: {problem}", file=sys.stderr)
            return EXIT_USAGE
        try:
            args.dropped_file = open_appending(args.dropped_to) if args.dropped_to else None
        except OSError as exc:
            print(f"rehook send: cannot write {args.dropped_to}: {private_error(exc)}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return _run_command(args)
    finally:
        if getattr(args, "dropped_file", None) is not None:
            args.dropped_file.close()


def _take_secret(args: argparse.Namespace) -> str | None:
    """
    Put the secret from ``--api-secret-file`` in ``args.api_secret`` (or warn about ``--api-secret``); a problem, or
    None.
    """
    path = getattr(args, "api_secret_file", None)
    if path is None:
        if getattr(args, "api_secret", None) is not None:
            print(
                "rehook: warning: --api-secret shows the secret to every user of this machine (ps, "
                f"/proc/PID/cmdline) and is deprecated; set {API_SECRET_ENV} or use --api-secret-file",
                file=sys.stderr,
            )
        return None
    if path == "-":
        if args.command == "send" and (not args.files or "-" in args.files):
            return "--api-secret-file -: standard input carries the calls; put the secret in a file or the environment"
        line = sys.stdin.readline()
    else:
        try:
            with open(path, encoding="utf-8") as stream:
                line = stream.readline()
        except OSError as exc:
            return f"cannot read the secret from {path}: {private_error(exc)}"
        except UnicodeDecodeError:  # its message would quote the secret's bytes
            return f"cannot read the secret from {path}: it is not UTF-8 text"
    args.api_secret = line.rstrip("\r\n")
    if not args.api_secret:
        return f"--api-secret-file {path}: its first line is empty"
    return None


def _run_command(args: argparse.Namespace) -> int:
    needs_credentials = not (args.command == "send" and args.dry_run)
    if (problem := _take_secret(args)) is not None:
        print(f"rehook: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "spool":
            return spool_command(args)
        if needs_credentials:
            client_from(args)  # fail early and clearly on missing credentials or a bad URL
        run = {"send": send, "relay": relay}.get(args.command, check_auth)
        return asyncio.run(run(args))
    except ConfigurationError as exc:
        message = str(exc)
        if "credentials are missing" in message:
            message = (
                f"Rehook credentials are missing: set {API_KEY_ENV} and {API_SECRET_ENV}, or pass --api-key and "
                "--api-secret-file"
            )
        print(f"rehook: {message}", file=sys.stderr)
        return EXIT_USAGE
    except SpoolError as exc:
        print(f"rehook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
