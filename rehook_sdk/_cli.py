"""
The ``rehook`` command: send and replay calls from JSON Lines files, check credentials, run the fake Rehook.

    rehook send calls.jsonl [more.jsonl | -] [--failed-to failed.jsonl] [--dry-run] [--concurrency 64] ...
    rehook check-auth
    rehook fake-server [--port 8080] [--conversion-event signup]

Credentials come from REHOOK_API_KEY/REHOOK_API_SECRET, --api-key and --api-secret-file (--api-secret is deprecated:
other users can read a command's arguments); the secret is never printed.
The progress bar needs the ``cli`` extra: ``pip install "rehook-sdk[cli]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import math
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, TextIO

from . import __version__
from ._cli_spool import spool_command
from ._client.client import RehookClient, delivery_engine
from ._core.constants import (
    API_KEY_ENV,
    API_SECRET_ENV,
    DEFAULT_CONCURRENCY,
    DEFAULT_SPOOL_LEASE,
    DEFAULT_SPOOL_RETENTION,
)
from ._core.exceptions import AuthenticationError, ConfigurationError, RehookError, SpoolError
from ._core.outcome import Outcome, OutcomeStatus, Reason
from ._core.redaction import redact_location
from ._core.retry import RetryPolicy
from ._core.types import CallType
from ._delivery.handle import EventHandle
from ._durable.deadletter import outcome_line
from ._durable.files import open_private, private_error
from ._durable.spools import Holdings, Replay
from ._mapping.mappings import DEFAULT_MAPPINGS, compile_mappings
from ._mapping.router import Router
from ._report.outcome_log import calls
from .testing.__main__ import __doc__ as fake_doc
from .testing.__main__ import add_arguments as add_fake_arguments
from .testing.__main__ import serve as serve_fake

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_HELD, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 3, 130, 141
# analytics.js message fields -> the options the client takes.
_OPTION_FIELDS = ("userId", "anonymousId", "timestamp", "context", "integrations", "messageId")


class BadLine(Exception):
    """
    A line that is not a call: reported with its file and line number, counted, and skipped.
    """


class MaybeDelivered(Exception):
    """
    A failed-file line whose request may have reached Rehook: skipped unless ``--resend-maybe-delivered``.
    """


def read_calls(paths: Sequence[str], stdin: TextIO) -> Iterator[tuple[str, int, str | BadLine]]:
    """
    (file name, line number, text) for every non-blank line, read lazily: a file of any size in constant memory.
    A line that is not UTF-8 comes as a `BadLine` instead of its text.
    """
    for path in paths:
        stream: IO[bytes]
        with contextlib.ExitStack() as stack:
            if path == "-":
                stream, name = stdin.buffer, "<stdin>"
            else:
                stream, name = stack.enter_context(open(path, "rb")), path
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    yield name, number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield name, number, BadLine(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")


def unreadable(paths: Sequence[str]) -> str | None:
    """
    Why one of ``paths`` cannot be read, checked before anything is sent; None when all can.
    """
    for path in paths:
        if path == "-":
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
    return None


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


def parse_call(text: str, *, resend_maybe_delivered: bool = False) -> dict[str, Any]:
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
        outcome = message.get("outcome")
        if not resend_maybe_delivered and isinstance(outcome, dict) and outcome.get("maybe_delivered") is True:
            raise MaybeDelivered
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
        self.read = 0  # non-blank lines read, skipped ones included: what --skip takes to resume after them
        self.maybe_delivered = 0  # failed-file lines skipped because their request may have reached Rehook

    def add(self, outcome: Outcome) -> None:
        self.outcomes[(outcome.status.value, outcome.reason.value if outcome.reason else "")] += 1

    def count(self, status: OutcomeStatus) -> int:
        return sum(n for (s, _), n in self.outcomes.items() if s == status.value)

    def table(self) -> str:
        rows = [("status", "reason", "calls")]
        rows += [(s, r or "-", str(n)) for (s, r), n in sorted(self.outcomes.items())]
        if self.maybe_delivered:
            rows.append(("skipped", "maybe_delivered", str(self.maybe_delivered)))
        if self.bad_lines:
            rows.append(("bad line", "-", str(self.bad_lines)))
        rows.append(("total", "", str(sum(self.outcomes.values()) + self.bad_lines + self.maybe_delivered)))
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

    A run that is not interrupted delivers everything it read, however long that takes. Ctrl-C stops reading and
    gives the calls already read ``--drain-timeout`` seconds; a second Ctrl-C says so again, a third stops at once.
    What was not delivered goes to the failed file, and the summary says where reading stopped.
    """
    if args.dry_run:
        return dry_run(args)
    if args.from_spool is not None:
        return await send_from_spool(args)
    failed_to = args.failed_to or f"rehook-failed-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl"
    tally = Tally()
    outstanding = asyncio.Semaphore(args.max_queue)  # reading waits when this many calls have no outcome yet
    stop, abort = asyncio.Event(), asyncio.Event()
    presses = 0

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            stop.set()
        elif presses == 2:
            print(
                f"rehook: still delivering the calls already read (at most {args.drain_timeout:g} s); "
                f"press Ctrl-C once more to stop now and write what is left to {failed_to}",
                file=sys.stderr,
            )
        else:
            abort.set()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, interrupted)
    client = _client_from(
        args,
        concurrency=args.concurrency,
        max_queue_size=args.max_queue + 1,
        conversion_events=args.conversion_event,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        dead_letter=failed_to,
    )
    dropped_to: IO[bytes] | None = args.dropped_file  # opened (and closed) by main(), outside the loop
    # The bar counts lines read, so messages about bad lines appear where the bar is. Its total (for the ETA)
    # costs one fast pass over the files: only when a bar will show it.
    show_bar = not args.no_progress and sys.stderr.isatty()
    bar = _progress(count_lines(args.files) if show_bar else None, show_bar)

    def done(outcome: Outcome) -> None:
        tally.add(outcome)
        outstanding.release()
        if dropped_to is not None and outcome.status is OutcomeStatus.DROPPED and outcome.reason not in _RESENDABLE:
            dropped_to.write(outcome_line(outcome))
        if bar is not None:
            bar.set_postfix(
                delivered=tally.count(OutcomeStatus.DELIVERED),
                dropped=tally.count(OutcomeStatus.DROPPED),
                failed=tally.count(OutcomeStatus.FAILED),
                refresh=False,
            )

    def complain(name: str, number: int, message: str) -> None:
        tally.bad_lines += 1
        if bar is not None:
            bar.write(f"{name}:{number}: {message}", file=sys.stderr)  # above the bar, not through it
        else:
            print(f"{name}:{number}: {message}", file=sys.stderr)

    async def slot() -> bool:
        # A free place among the calls awaiting their outcome, unless Ctrl-C comes first.
        if not outstanding.locked():
            await outstanding.acquire()
            return True
        acquiring, stopping = asyncio.ensure_future(outstanding.acquire()), asyncio.ensure_future(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if acquiring.done() and not acquiring.cancelled():
            return True
        acquiring.cancel()
        return False

    position = ""
    lines = read_calls(args.files, sys.stdin)
    async with client:
        # Lines are read in batches in a thread, so a slow stdin never holds the event loop (and deliveries).
        while not stop.is_set() and (batch := await asyncio.to_thread(_take, lines, 500)):
            for name, number, text in batch:
                if stop.is_set() or not await slot():
                    break
                tally.read += 1
                position = f"{name}:{number}"
                if bar is not None:
                    bar.update(1)
                if tally.read <= args.skip:
                    outstanding.release()
                    continue
                try:
                    if isinstance(text, BadLine):
                        raise text
                    _ = submit(client, parse_call(text, resend_maybe_delivered=args.resend_maybe_delivered), done)
                    tally.accepted += 1
                except MaybeDelivered:
                    outstanding.release()
                    tally.maybe_delivered += 1
                except BadLine as exc:
                    outstanding.release()
                    complain(name, number, str(exc))
        await _drain(client, args, stop, abort, tally, position, failed_to)
    if bar is not None:
        bar.close()
    print(tally.table())
    failed = tally.count(OutcomeStatus.FAILED)
    resendable = failed + sum(tally.outcomes[("dropped", r.value)] for r in _RESENDABLE)
    _report_failed_file(failed_to, resendable, keep=args.failed_to is not None)
    if tally.maybe_delivered:
        print(
            f"rehook: skipped {tally.maybe_delivered} failed-file lines whose request may have reached Rehook "
            "(maybe_delivered); sending them again may duplicate them: --resend-maybe-delivered sends them"
        )
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed or tally.bad_lines else EXIT_OK


_RESENDABLE = (Reason.QUEUE_FULL, Reason.CLIENT_CLOSED)


async def _drain(
    client: RehookClient,
    args: argparse.Namespace,
    stop: asyncio.Event,
    abort: asyncio.Event,
    tally: Tally,
    position: str,
    failed_to: str,
) -> None:
    # Not interrupted: wait for every outcome, however long. Interrupted (now or while waiting): --drain-timeout
    # seconds, or until a third Ctrl-C; then close at once, failing what is left into the failed file.
    flushing, stopping = asyncio.ensure_future(client.flush(None)), asyncio.ensure_future(stop.wait())
    await asyncio.wait({flushing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if flushing.done():
        await client.aclose(timeout=None)
        return
    flushing.cancel()
    where = f"after {position}" if position else "before the first line"
    resume = " ".join(["rehook send", *args.files, "--skip", str(tally.read)])
    print(
        f"rehook: interrupted: stopped reading {where} ({tally.read} lines read, {calls(tally.accepted)} accepted); "
        f"to send the rest later: {resume}\n"
        f"rehook: delivering the calls already read (at most {args.drain_timeout:g} s; Ctrl-C twice more to stop "
        f"now and write what is left to {failed_to})",
        file=sys.stderr,
    )
    timed, aborting = asyncio.ensure_future(client.flush(args.drain_timeout)), asyncio.ensure_future(abort.wait())
    await asyncio.wait({timed, aborting}, return_when=asyncio.FIRST_COMPLETED)
    timed.cancel()
    aborting.cancel()
    await client.aclose(timeout=0)


def _take(lines: Iterator[tuple[str, int, str | BadLine]], n: int) -> list[tuple[str, int, str | BadLine]]:
    return [line for _, line in zip(range(n), lines, strict=False)]


def _report_failed_file(path: str, resendable: int, *, keep: bool) -> None:
    if resendable:
        print(f"rehook: {calls(resendable)} to send again, in {path} (replay: rehook send {path})")
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
    for read, (name, number, text) in enumerate(read_calls(args.files, sys.stdin), 1):
        if read <= args.skip:
            continue
        try:
            if isinstance(text, BadLine):
                raise text
            call = submit(checker, parse_call(text, resend_maybe_delivered=args.resend_maybe_delivered), None).call
        except MaybeDelivered:
            print(f"{name}:{number}: SKIP maybe_delivered: its request may have reached Rehook")
            continue
        except BadLine as exc:
            bad += 1
            print(f"{name}:{number}: {exc}", file=sys.stderr)
            continue
        finally:
            delivery_engine(checker).queue.take_all()
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


async def relay(args: argparse.Namespace) -> int:
    """
    ``rehook relay``: deliver what a spool holds for processes that are gone (or let their calls go), until
    SIGINT/SIGTERM, or with ``--once`` until nothing is left to take over; a summary; exit code.
    """
    client = _client_from(
        args,
        spool=args.spool,
        spool_lease=args.lease,
        spool_take_unidentified=args.take_unidentified,
        concurrency=args.concurrency,
        max_queue_size=args.max_queue,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await client.start()
    engine = delivery_engine(client)
    where = engine.spooling.path if engine.spooling is not None else redact_location(args.spool)
    print(f"rehook relay: delivering from {where}" + (" until it is empty" if args.once else ""), file=sys.stderr)
    held = Holdings()
    told = False
    try:
        while not stop.is_set():
            if args.once and _relayed_all(client):
                held = await _held(client)
                if held.calls and args.wait:
                    if not told:  # waiting for those leases: say so once
                        print(f"rehook relay: waiting: {_held_words(held)}", file=sys.stderr)
                        told = True
                elif told:  # the leases waited for have ended: one more look takes those calls over
                    told = False
                    if engine.adoption is not None:
                        engine.adoption.adopt_soon()
                else:
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        holdings = await _held_or_none(client)
        await client.aclose(timeout=args.drain_timeout)
    stats = client.stats()
    failed, dropped = _by_reason(stats.failed), _by_reason(stats.dropped)
    print(
        f"rehook relay: took over {stats.adopted} ({stats.resent} of them may have reached Rehook before); "
        f"delivered {stats.delivered}; failed: {failed}; dropped: {dropped}; {stats.spooled} left in the spool",
        file=sys.stderr,
    )
    unidentified = 0
    if holdings is not None:
        _tell_not_taken("rehook relay", holdings.others, holdings.unidentified)
        unidentified = holdings.unidentified
    if stats.failed_total:
        return EXIT_FAILED
    if held.calls and not stop.is_set():
        print(
            f"rehook relay: not taken: {_held_words(held)}; those processes deliver them if they are alive, or "
            "--wait waits for their leases and takes them over",
            file=sys.stderr,
        )
        return EXIT_HELD
    return EXIT_HELD if unidentified and args.once and not stop.is_set() else EXIT_OK


async def _held(client: RehookClient) -> Holdings:
    spooling = delivery_engine(client).spooling
    assert spooling is not None
    return await asyncio.wrap_future(spooling.spool.held())


async def _held_or_none(client: RehookClient) -> Holdings | None:
    # For the summary: a spool that cannot be read now only loses that part of it.
    try:
        return await _held(client)
    except SpoolError as exc:
        print(f"rehook: could not count what the spool holds for others: {exc}", file=sys.stderr)
        return None


def _tell_not_taken(command: str, others: int, unidentified: int) -> None:
    if others:
        print(
            f"{command}: {calls(others)} {_verb(others, 'belongs', 'belong')} to other applications and "
            f"{_verb(others, 'was', 'were')} not taken: it takes only the calls of the application its API key "
            "and base URL name",
            file=sys.stderr,
        )
    if unidentified:
        print(
            f"{command}: {calls(unidentified)} {_verb(unidentified, 'names', 'name')} no application (spooled "
            f"before rows named one) and {_verb(unidentified, 'was', 'were')} not taken: --take-unidentified "
            "delivers them as this application's, only where no other application has used this spool",
            file=sys.stderr,
        )


def _verb(count: int, one: str, more: str) -> str:
    return one if count == 1 else more


def _held_words(held: Holdings) -> str:
    processes = held.processes
    whose = "whose lease ends" if processes == 1 else "whose leases end, the first one,"
    return (
        f"{calls(held.calls)} are held by {processes} other process{'es' if processes != 1 else ''} with a live "
        f"heartbeat, {whose} in {math.ceil(held.seconds)} s"
    )


async def send_from_spool(args: argparse.Namespace) -> int:
    """
    ``rehook send --from-spool``: send the calls a spool keeps as failed again (each row taken once, oldest first;
    those whose request may have reached Rehook only with ``--resend-maybe-delivered``). A call delivered now
    leaves the spool; one that fails again is kept with its new outcome. Ctrl-C stops taking calls and gives
    those taken ``--drain-timeout`` seconds; what is left of them goes back to the spool's queue.
    """
    client = _client_from(
        args,
        spool=args.from_spool,
        spool_take_unidentified=args.take_unidentified,
        concurrency=args.concurrency,
        max_queue_size=args.max_queue,
        conversion_events=args.conversion_event,
        retry=RetryPolicy(max_attempts=args.max_attempts),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    replay = Replay(resend_maybe_delivered=args.resend_maybe_delivered)
    replayed = 0
    await client.start()
    engine = delivery_engine(client)
    where = engine.spooling.path if engine.spooling is not None else redact_location(args.from_spool)
    adoption = engine.adoption
    assert adoption is not None  # the client has started, on a spool
    try:
        while not stop.is_set() and not (replay.done and engine.pending_count() == 0):
            before = replay.after
            if not replay.done:
                replayed += await adoption.replay_failed(replay)
            if replay.done or replay.after == before:  # all taken, or no room in the queue: wait for outcomes
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
        holdings = await _held_or_none(client)
        await client.aclose(timeout=args.drain_timeout)
    stats = client.stats()
    failed, dropped = _by_reason(stats.failed), _by_reason(stats.dropped)
    others = stats.adopted - replayed
    print(
        f"rehook send: {calls(replayed)} failed before, sent again from {where}"
        + (f" (and {others} taken over from processes that are gone)" if others else "")
        + f"; delivered {stats.delivered}; failed: {failed}; dropped: {dropped}"
    )
    if replay.skipped:
        print(
            f"rehook send: skipped {calls(replay.skipped)} whose request may have reached Rehook (maybe_delivered); "
            "sending them again may duplicate them: --resend-maybe-delivered sends them"
        )
    if holdings is not None:
        _tell_not_taken("rehook send", holdings.others_failed, holdings.unidentified_failed)
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if stats.failed_total else EXIT_OK


def _by_reason(counts: Mapping[Reason, int]) -> str:
    return ", ".join(f"{n} {reason.value}" for reason, n in sorted(counts.items())) or "none"


def _relayed_all(client: RehookClient) -> bool:
    # Done once an adoption took nothing and nothing it took is still pending.
    engine = delivery_engine(client)
    return engine.adoption is not None and engine.adoption.last_adopted == 0 and engine.pending_count() == 0


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
    top.add_argument("--version", action="version", version=f"rehook-sdk {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    def credentials(p: argparse.ArgumentParser) -> None:
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
        p.add_argument(
            "--base-url", default=None, help="Rehook's URL (default $REHOOK_BASE_URL or https://api.rehook.ai)"
        )

    def take_unidentified(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--take-unidentified",
            action="store_true",
            help="also take the spool's calls that name no application (spooled before rows named one) as this "
            "application's: only where no other application has used the spool",
        )

    send_p = commands.add_parser(
        "send",
        help="send the calls in JSON Lines files (or - for stdin)",
        description="Send every call in the files. A run that is not interrupted delivers all it read, however long "
        "that takes; Ctrl-C stops reading, delivers what was read for at most --drain-timeout seconds, and says "
        "how to resume. Failed calls go to the failed file, which `rehook send` replays.",
    )
    send_p.add_argument("files", nargs="*", metavar="FILE", help="JSON Lines: one Segment call per line (- is stdin)")
    credentials(send_p)
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
    take_unidentified(send_p)
    send_p.add_argument("--no-progress", action="store_true", help="no progress bar")

    relay_p = commands.add_parser(
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
    credentials(relay_p)
    relay_p.add_argument("--once", action="store_true", help="stop when nothing is left to take over")
    take_unidentified(relay_p)
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

    spool_p = commands.add_parser(
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
        credentials(sub)
    purge_p.add_argument(
        "--older-than",
        type=_seconds,
        default=DEFAULT_SPOOL_RETENTION,
        metavar="SECONDS",
        help="remove the failed calls accepted more than this many seconds ago (default 604800, 7 days: what "
        "spool_retention keeps; 0 removes every failed call)",
    )

    auth_p = commands.add_parser("check-auth", help="check the API key and secret")
    credentials(auth_p)

    fake_p = commands.add_parser(
        "fake-server", help="run the fake Rehook (the same as python -m rehook_sdk.testing)", description=fake_doc
    )
    add_fake_arguments(fake_p)
    return top


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
        if (problem := _send_usage(args)) is not None:
            print(f"rehook send: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if (problem := unreadable(args.files)) is not None:
            print(f"rehook send: {problem}", file=sys.stderr)
            return EXIT_USAGE
        try:
            args.dropped_file = _open_appending(args.dropped_to) if args.dropped_to else None
        except OSError as exc:
            print(f"rehook send: cannot write {args.dropped_to}: {private_error(exc)}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return _run_command(args)
    finally:
        if getattr(args, "dropped_file", None) is not None:
            args.dropped_file.close()


def _open_appending(path: str) -> IO[bytes]:
    # 0600 and no symbolic link, as the dead-letter file: the dropped calls are users' data.
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "ab")


def _send_usage(args: argparse.Namespace) -> str | None:
    if args.from_spool is None:
        return None if args.files else "give the files to send (- for stdin), or --from-spool SPOOL"
    if args.files:
        return "--from-spool sends what the spool keeps: no FILE with it"
    given = [
        option
        for option, value in (
            ("--dry-run", args.dry_run),
            ("--failed-to", args.failed_to),
            ("--dropped-to", args.dropped_to),
            ("--skip", args.skip),
        )
        if value
    ]
    if given:
        return f"{', '.join(given)}: not with --from-spool (failed calls stay in the spool)"
    return None


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
            _client_from(args)  # fail early and clearly on missing credentials or a bad URL
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


if __name__ == "__main__":
    sys.exit(main())
