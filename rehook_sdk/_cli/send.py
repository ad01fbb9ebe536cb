"""
``rehook send``: deliver every call in JSON Lines files (or a dry run), tally the outcomes, write the failed file.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import Iterator
from typing import IO, Any

from .._client.client import RehookClient, delivery_engine
from .._core.outcome import Outcome, OutcomeStatus, Reason
from .._core.retry import RetryPolicy
from .._durable.deadletter import outcome_line
from .._durable.files import open_private
from .._mapping.mappings import DEFAULT_MAPPINGS, compile_mappings
from .._mapping.router import Router
from .._report.outcome_log import calls
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, client_from
from .lines import BadLine, MaybeDelivered, count_lines, parse_call, read_calls, submit
from .relay import send_from_spool


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
    run = _Run(args, args.failed_to or f"rehook-failed-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl")
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, run.interrupted)
    client = client_from(
        args,
        concurrency=args.concurrency,
        max_queue_size=args.max_queue + 1,
        conversion_events=args.conversion_event,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        dead_letter=run.failed_to,
    )
    # The bar counts lines read, so messages about bad lines appear where the bar is. Its total (for the ETA)
    # costs one fast pass over the files: only when a bar will show it.
    show_bar = not args.no_progress and sys.stderr.isatty()
    run.bar = _progress(count_lines(args.files) if show_bar else None, show_bar)
    async with client:
        position = await run.read(client)
        await _drain(client, args, run.stop, run.abort, run.tally, position, run.failed_to)
    return run.report()


class _Run:
    """
    One ``rehook send`` of files: its tally, the calls awaiting their outcome, Ctrl-C presses, the progress bar.
    """

    def __init__(self, args: argparse.Namespace, failed_to: str) -> None:
        self.args = args
        self.failed_to = failed_to
        self.tally = Tally()
        self.outstanding = asyncio.Semaphore(args.max_queue)  # reading waits when this many calls have no outcome yet
        self.stop, self.abort = asyncio.Event(), asyncio.Event()
        self.presses = 0
        self.dropped_to: IO[bytes] | None = args.dropped_file  # opened (and closed) by main(), outside the loop
        self.bar: Any = None

    def interrupted(self) -> None:
        self.presses += 1
        if self.presses == 1:
            self.stop.set()
        elif self.presses == 2:
            print(
                f"rehook: still delivering the calls already read (at most {self.args.drain_timeout:g} s); "
                f"press Ctrl-C once more to stop now and write what is left to {self.failed_to}",
                file=sys.stderr,
            )
        else:
            self.abort.set()

    def done(self, outcome: Outcome) -> None:
        tally = self.tally
        tally.add(outcome)
        self.outstanding.release()
        dropped = outcome.status is OutcomeStatus.DROPPED and outcome.reason not in _RESENDABLE
        if self.dropped_to is not None and dropped:
            self.dropped_to.write(outcome_line(outcome))
        if self.bar is not None:
            self.bar.set_postfix(
                delivered=tally.count(OutcomeStatus.DELIVERED),
                dropped=tally.count(OutcomeStatus.DROPPED),
                failed=tally.count(OutcomeStatus.FAILED),
                refresh=False,
            )

    def complain(self, name: str, number: int, message: str) -> None:
        self.tally.bad_lines += 1
        if self.bar is not None:
            self.bar.write(f"{name}:{number}: {message}", file=sys.stderr)  # above the bar, not through it
        else:
            print(f"{name}:{number}: {message}", file=sys.stderr)

    async def slot(self) -> bool:
        # A free place among the calls awaiting their outcome, unless Ctrl-C comes first.
        outstanding = self.outstanding
        if not outstanding.locked():
            await outstanding.acquire()
            return True
        acquiring, stopping = asyncio.ensure_future(outstanding.acquire()), asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if acquiring.done() and not acquiring.cancelled():
            return True
        acquiring.cancel()
        return False

    async def read(self, client: RehookClient) -> str:
        """
        Read and submit the calls until the files end or Ctrl-C; where reading stopped (``file:line``).
        """
        position = ""
        lines = read_calls(self.args.files, sys.stdin)
        # Lines are read in batches in a thread, so a slow stdin never holds the event loop (and deliveries).
        while not self.stop.is_set() and (batch := await asyncio.to_thread(_take, lines, 500)):
            for name, number, text in batch:
                if self.stop.is_set() or not await self.slot():
                    break
                self.tally.read += 1
                position = f"{name}:{number}"
                if self.bar is not None:
                    self.bar.update(1)
                self._submit(client, name, number, text)
        return position

    def _submit(self, client: RehookClient, name: str, number: int, text: str | BadLine) -> None:
        if self.tally.read <= self.args.skip:
            self.outstanding.release()
            return
        try:
            if isinstance(text, BadLine):
                raise text
            _ = submit(client, parse_call(text, resend_maybe_delivered=self.args.resend_maybe_delivered), self.done)
            self.tally.accepted += 1
        except MaybeDelivered:
            self.outstanding.release()
            self.tally.maybe_delivered += 1
        except BadLine as exc:
            self.outstanding.release()
            self.complain(name, number, str(exc))

    def report(self) -> int:
        """
        The summary, the failed file's fate, and the exit code.
        """
        tally = self.tally
        if self.bar is not None:
            self.bar.close()
        print(tally.table())
        failed = tally.count(OutcomeStatus.FAILED)
        resendable = failed + sum(tally.outcomes[("dropped", r.value)] for r in _RESENDABLE)
        _report_failed_file(self.failed_to, resendable, keep=self.args.failed_to is not None)
        if tally.maybe_delivered:
            print(
                f"rehook: skipped {tally.maybe_delivered} failed-file lines whose request may have reached Rehook "
                "(maybe_delivered); sending them again may duplicate them: --resend-maybe-delivered sends them"
            )
        if self.stop.is_set():
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


def open_appending(path: str) -> IO[bytes]:
    # 0600 and no symbolic link, as the dead-letter file: the dropped calls are users' data.
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "ab")


def send_usage(args: argparse.Namespace) -> str | None:
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
