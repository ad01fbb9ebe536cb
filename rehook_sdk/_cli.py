"""
The ``rehook`` command: send and replay calls from JSON Lines files, check credentials, run the fake Rehook.

    rehook send calls.jsonl [more.jsonl | -] [--failed-to failed.jsonl] [--dry-run] [--concurrency 64] ...
    rehook check-auth
    rehook fake-server [--port 8080] [--conversion-event signup]

Credentials come from --api-key/--api-secret or REHOOK_API_KEY/REHOOK_API_SECRET; the secret is never printed.
The progress bar needs the ``cli`` extra: ``pip install "rehook-sdk[cli]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any, TextIO

from ._client import RehookClient
from ._constants import API_KEY_ENV, API_SECRET_ENV, DEFAULT_CONCURRENCY
from ._exceptions import AuthenticationError, ConfigurationError, RehookError
from ._handle import EventHandle
from ._mappings import DEFAULT_MAPPINGS, compile_mappings
from ._outcome import Outcome, OutcomeStatus
from ._retry import RetryPolicy
from ._router import Router
from ._types import CallType

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# analytics.js message fields -> the options the client takes.
_OPTION_FIELDS = ("userId", "anonymousId", "timestamp", "context", "integrations", "messageId")


class BadLine(Exception):
    """
    A line that is not a call: reported with its file and line number, counted, and skipped.
    """


def read_calls(paths: Sequence[str], stdin: TextIO) -> Iterator[tuple[str, int, str]]:
    """
    (file name, line number, text) for every non-blank line, read lazily: a file of any size in constant memory.
    """
    for path in paths:
        stream: IO[str]
        with contextlib.ExitStack() as stack:
            if path == "-":
                stream, name = stdin, "<stdin>"
            else:
                stream, name = stack.enter_context(open(path, encoding="utf-8")), path
            for number, line in enumerate(stream, 1):
                if line.strip():
                    yield name, number, line


def count_lines(paths: Sequence[str]) -> int | None:
    """
    How many lines the files hold, if all are regular files (counted in binary chunks, fast); else None.
    """
    total = 0
    for path in paths:
        if path == "-" or not os.path.isfile(path):
            return None
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                total += chunk.count(b"\n")
    return total


def parse_call(text: str) -> dict[str, Any]:
    """
    One Segment-spec call from a line: a message, or a dead-letter line (``{"v": 1, "call": {...}}``).

    Raises:
        BadLine: not JSON, not an object, or not a call this tool can send.
    """
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(message, dict) and isinstance(message.get("call"), dict) and "v" in message:
        if message["v"] != 1:
            raise BadLine(f"dead-letter format version {message['v']!r} is not supported (this tool reads 1)")
        message = message["call"]
    if not isinstance(message, dict):
        raise BadLine(f"a call must be a JSON object, not {type(message).__name__}")
    kind = message.get("type")
    if kind not in {t.value for t in CallType}:
        raise BadLine(f"unknown call type {kind!r}; expected identify, track, page, screen, group or alias")
    return message


def call_arguments(message: dict[str, Any]) -> tuple[CallType, dict[str, Any]]:
    """
    The client method and keyword arguments that make ``message``'s call.
    """
    kind = CallType(message["type"])
    options = {key: message[key] for key in _OPTION_FIELDS if key in message}
    args: dict[str, Any] = {"options": options or None}
    if kind is CallType.IDENTIFY:
        args |= {"user_id": message.get("userId"), "traits": message.get("traits")}
    elif kind is CallType.TRACK:
        if "event" not in message:
            raise BadLine("a track call needs an 'event'")
        args |= {"event": message["event"], "properties": message.get("properties")}
    elif kind in (CallType.PAGE, CallType.SCREEN):
        args |= {"name": message.get("name"), "properties": message.get("properties")}
    elif kind is CallType.GROUP:
        args |= {"group_id": message.get("groupId"), "traits": message.get("traits")}
    else:
        args |= {"user_id": message.get("userId"), "previous_id": message.get("previousId")}
    return kind, args


def submit(client: RehookClient, message: dict[str, Any], callback: Any) -> EventHandle:
    kind, args = call_arguments(message)
    method = getattr(client, kind.value)
    try:
        handle: EventHandle = method(callback=callback, **args)
    except TypeError as exc:
        raise BadLine(str(exc)) from None
    return handle


class Tally:
    """
    Outcomes by status and reason, bad lines, and what the progress bar shows.
    """

    def __init__(self) -> None:
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.bad_lines = 0
        self.accepted = 0

    def add(self, outcome: Outcome) -> None:
        self.outcomes[(outcome.status.value, outcome.reason.value if outcome.reason else "")] += 1

    def count(self, status: OutcomeStatus) -> int:
        return sum(n for (s, _), n in self.outcomes.items() if s == status.value)

    def table(self) -> str:
        rows = [("status", "reason", "calls")]
        rows += [(s, r or "-", str(n)) for (s, r), n in sorted(self.outcomes.items())]
        if self.bad_lines:
            rows.append(("bad line", "-", str(self.bad_lines)))
        rows.append(("total", "", str(sum(self.outcomes.values()) + self.bad_lines)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        line = "+".join("-" * (w + 2) for w in widths)
        out = [line]
        for i, row in enumerate(rows):
            out.append(
                " | ".join(cell.ljust(widths[j]) if j < 2 else cell.rjust(widths[j]) for j, cell in enumerate(row))
            )
            if i == 0 or i == len(rows) - 2:
                out.append(line)
        return "\n".join(out)


def _progress(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        print('rehook: no progress bar (pip install "rehook-sdk[cli]" for one)', file=sys.stderr)
        return None
    # disable=None: a bar on a terminal, nothing when stderr is a file or a pipe (logs stay clean).
    return tqdm(total=total, unit="call", dynamic_ncols=True, file=sys.stderr, disable=None)


def _client_from(args: argparse.Namespace, **settings: Any) -> RehookClient:
    return RehookClient(args.api_key, args.api_secret, base_url=args.base_url, **settings)


async def send(args: argparse.Namespace) -> int:
    """
    ``rehook send``: deliver every call in the files through the normal client; summary; exit code.
    """
    if args.dry_run:
        return dry_run(args)
    failed_to = args.failed_to or f"rehook-failed-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl"
    tally = Tally()
    outstanding = asyncio.Semaphore(args.max_queue)  # reading waits when this many calls have no outcome yet
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    client = _client_from(
        args,
        concurrency=args.concurrency,
        max_queue_size=args.max_queue + 1,
        conversion_events=args.conversion_event,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        dead_letter=failed_to,
    )
    # The total (for the ETA) costs one fast pass over the files: only when a bar will show it.
    show_bar = not args.no_progress and sys.stderr.isatty()
    bar = _progress(count_lines(args.files) if show_bar else None, show_bar)

    def done(outcome: Outcome) -> None:
        tally.add(outcome)
        outstanding.release()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                delivered=tally.count(OutcomeStatus.DELIVERED),
                dropped=tally.count(OutcomeStatus.DROPPED),
                failed=tally.count(OutcomeStatus.FAILED),
                refresh=False,
            )

    lines = read_calls(args.files, sys.stdin)
    async with client:
        # Lines are read in batches in a thread, so a slow stdin never holds the event loop (and the deliveries).
        while not stop.is_set() and (batch := await asyncio.to_thread(_take, lines, 500)):
            for name, number, text in batch:
                if stop.is_set():
                    break
                await outstanding.acquire()
                try:
                    _ = submit(client, parse_call(text), done)
                    tally.accepted += 1
                except BadLine as exc:
                    outstanding.release()
                    tally.bad_lines += 1
                    if bar is not None:
                        bar.update(1)
                        bar.write(f"{name}:{number}: {exc}", file=sys.stderr)  # above the bar, not through it
                    else:
                        print(f"{name}:{number}: {exc}", file=sys.stderr)
        if stop.is_set():
            print(f"rehook: interrupted; delivering what was accepted (up to {args.drain_timeout} s)", file=sys.stderr)
        await client.aclose(timeout=args.drain_timeout)
    if bar is not None:
        bar.close()
    print(tally.table())
    failed = tally.count(OutcomeStatus.FAILED)
    resendable = failed + tally.outcomes[("dropped", "queue_full")] + tally.outcomes[("dropped", "client_closed")]
    _report_failed_file(failed_to, resendable, keep=args.failed_to is not None)
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed or tally.bad_lines else EXIT_OK


def _take(lines: Iterator[tuple[str, int, str]], n: int) -> list[tuple[str, int, str]]:
    return [line for _, line in zip(range(n), lines, strict=False)]


def _report_failed_file(path: str, resendable: int, *, keep: bool) -> None:
    if resendable:
        print(f"rehook: {resendable} calls that can be sent again are in {path} (replay: rehook send {path})")
    elif not keep and os.path.exists(path) and os.path.getsize(path) == 0:
        os.remove(path)  # nothing failed: leave no empty file behind


def dry_run(args: argparse.Namespace) -> int:
    """
    ``rehook send --dry-run``: validate and map every call, print the requests it would send, send nothing.
    """
    router = Router(compile_mappings(DEFAULT_MAPPINGS), frozenset(args.conversion_event))
    # Calls are made on a client that never starts (nothing can be sent), so they are checked exactly as
    # `send` checks them; its queue is emptied as it goes.
    checker = RehookClient("dry-run", "dry-run", base_url="http://127.0.0.1:1")
    bad = 0
    for name, number, text in read_calls(args.files, sys.stdin):
        try:
            call = submit(checker, parse_call(text), None).call
        except BadLine as exc:
            bad += 1
            print(f"{name}:{number}: {exc}", file=sys.stderr)
            continue
        finally:
            checker._flusher.queue.take_all()
        routed = router.route(call, call.message_id or "<message id>")
        if isinstance(routed, tuple):
            print(f"{name}:{number}: DROP {routed[0].value}: {routed[1]}")
            continue
        for step in routed:
            if step.request is not None:
                print(f"{name}:{number}: POST {step.request.path} {step.request.body.decode()}")
            elif step.drop is not None:
                print(f"{name}:{number}: DROP {step.drop[0].value}: {step.drop[1]}")
    return EXIT_FAILED if bad else EXIT_OK


async def check_auth(args: argparse.Namespace) -> int:
    """
    ``rehook check-auth``: ask Rehook whether the key and secret are valid.
    """
    async with _client_from(args) as client:
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rehook", description="Send calls to Rehook, check credentials, run a fake.")
    commands = top.add_subparsers(dest="command", required=True)

    def credentials(p: argparse.ArgumentParser) -> None:
        p.add_argument("--api-key", default=None, help=f"default ${API_KEY_ENV}")
        p.add_argument("--api-secret", default=None, help=f"default ${API_SECRET_ENV} (never printed)")
        p.add_argument("--base-url", default=None, help="default $REHOOK_BASE_URL or https://api.rehook.ai")

    send_p = commands.add_parser("send", help="send the calls in JSON Lines files (or - for stdin)")
    send_p.add_argument("files", nargs="+", metavar="FILE", help="JSON Lines: one Segment call per line")
    credentials(send_p)
    send_p.add_argument("--failed-to", default=None, metavar="PATH", help="write failed calls here, replayable")
    send_p.add_argument("--dry-run", action="store_true", help="validate and map, print the requests, send nothing")
    send_p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight (64)")
    send_p.add_argument("--conversion-event", action="append", default=[], metavar="NAME", help="repeatable")
    send_p.add_argument("--max-attempts", type=int, default=8, help="requests per call, retries included (8)")
    send_p.add_argument("--max-queue", type=int, default=10_000, help="calls read ahead of their outcome (10000)")
    send_p.add_argument("--drain-timeout", type=float, default=10.0, help="seconds to deliver after Ctrl-C (10)")
    send_p.add_argument("--no-progress", action="store_true", help="no progress bar")

    auth_p = commands.add_parser("check-auth", help="check the API key and secret")
    credentials(auth_p)

    fake_p = commands.add_parser("fake-server", help="run the fake Rehook from rehook_sdk.testing")
    fake_p.add_argument("--port", type=int, default=8080)
    fake_p.add_argument("--conversion-event", action="append", default=[], metavar="NAME")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "fake-server":
        from .testing.__main__ import main as fake_main

        extra = [arg for name in args.conversion_event for arg in ("--conversion-event", name)]
        fake_main(["--port", str(args.port), *extra])
        return EXIT_OK
    needs_credentials = not (args.command == "send" and args.dry_run)
    try:
        if needs_credentials:
            _client_from(args)  # fail early and clearly on missing credentials or a bad URL
        run = send if args.command == "send" else check_auth
        return asyncio.run(run(args))
    except ConfigurationError as exc:
        print(f"rehook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
