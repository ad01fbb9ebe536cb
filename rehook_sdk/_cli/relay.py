"""
``rehook relay`` and ``rehook send --from-spool``: deliver what a spool holds for processes that are gone, or
keeps as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Mapping

from .._client.client import RehookClient, delivery_engine
from .._core.exceptions import SpoolError
from .._core.outcome import Reason
from .._core.redaction import redact_location
from .._core.retry import RetryPolicy
from .._durable.spools import Holdings, Replay
from .._report.outcome_log import calls
from .common import EXIT_FAILED, EXIT_HELD, EXIT_INTERRUPTED, EXIT_OK, client_from


async def relay(args: argparse.Namespace) -> int:
    """
    ``rehook relay``: deliver what a spool holds for processes that are gone (or let their calls go), until
    SIGINT/SIGTERM, or with ``--once`` until nothing is left to take over; a summary; exit code.
    """
    client = client_from(
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
    try:
        held = await _relay_until(client, args, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        holdings = await _held_or_none(client)
        await client.aclose(timeout=args.drain_timeout)
    return _relay_report(client, args, stop.is_set(), held, holdings)


async def _relay_until(client: RehookClient, args: argparse.Namespace, stop: asyncio.Event) -> Holdings:
    """
    Relay until ``stop``, or with ``--once`` until nothing is left to take over (with ``--wait``, also once the
    leases of the calls others hold have ended); what others still held at the last look.
    """
    engine = delivery_engine(client)
    held = Holdings()
    told = False
    # Done when two looks at what others hold agree, with an adoption round between them that took nothing: a lease
    # that ends after a round and before a look frees calls that only a round started after the look can take.
    previous = -1
    while not stop.is_set():
        if args.once and _relayed_all(client):
            held = await _held(client)
            if held.calls and args.wait:
                if not told:  # waiting for those leases: say so once
                    print(f"rehook relay: waiting: {_held_words(held)}", file=sys.stderr)
                    told = True
                previous = -1
            elif held.calls != previous:  # the first look, or what others hold changed: a round, then look again
                told, previous = False, held.calls
                if engine.adoption is not None:
                    engine.adoption.adopt_soon()
            else:
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    return held


def _relay_report(
    client: RehookClient, args: argparse.Namespace, stopped: bool, held: Holdings, holdings: Holdings | None
) -> int:
    """
    The relay's summary, what it did not take and why, and its exit code.
    """
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
    if held.calls and not stopped:
        print(
            f"rehook relay: not taken: {_held_words(held)}; those processes deliver them if they are alive, or "
            "--wait waits for their leases and takes them over",
            file=sys.stderr,
        )
        return EXIT_HELD
    return EXIT_HELD if unidentified and args.once and not stopped else EXIT_OK


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
    client = client_from(
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
