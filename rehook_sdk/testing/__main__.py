"""
Run the fake Rehook from a shell: ``python -m rehook_sdk.testing [--host H] [--port P] [--conversion-event E]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ._fake import DEFAULT_API_KEY, DEFAULT_API_SECRET, FakeRehook


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """
    The fake server's options: shared by ``python -m rehook_sdk.testing`` and ``rehook fake-server``.
    """
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="API key the fake accepts")
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET, help="API secret the fake accepts")
    parser.add_argument(
        "--conversion-event",
        action="append",
        default=[],
        metavar="NAME",
        help="an event name that needs metadata.referral_code (repeatable)",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="answer this fraction of requests with --status")
    parser.add_argument("--status", type=int, default=500, help="the status of random errors (default 500)")
    parser.add_argument("--reset-rate", type=float, default=0.0, help="drop the connection of this fraction")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random faults")
    parser.add_argument("--no-record", action="store_true", help="keep counters only (for long load runs)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each request waits before its answer")


def main(argv: list[str] | None = None, prog: str = "python -m rehook_sdk.testing") -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser)
    serve(parser.parse_args(argv))


def serve(args: argparse.Namespace) -> None:
    """
    Run the fake until Ctrl-C; then print what it received.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeRehook(
        api_key=args.api_key,
        api_secret=args.api_secret,
        conversion_events=args.conversion_event,
        host=args.host,
        port=args.port,
        record=not args.no_record,
        latency=args.latency,
    )
    if args.error_rate or args.reset_rate:
        fake.random_faults(error_rate=args.error_rate, status=args.status, reset_rate=args.reset_rate, seed=args.seed)
    async with fake:
        print(f"Fake Rehook listening on {fake.url}", flush=True)
        print(f"  REHOOK_BASE_URL={fake.url} REHOOK_API_KEY={fake.api_key} REHOOK_API_SECRET={fake.api_secret}")
        print("Ctrl-C to stop.", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            print(
                f"Fake Rehook stopped: {fake.request_count} requests, {len(fake.delivered_keys)} calls delivered, "
                f"{fake.duplicates} duplicates, {len(fake.customers)} customers, {len(fake.events)} events recorded",
                flush=True,
            )


if __name__ == "__main__":
    main()
