"""
Run the fake Rehook from a shell: ``python -m rehook_sdk.testing [--host H] [--port P] [--conversion-event E]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ._fake import DEFAULT_API_KEY, DEFAULT_API_SECRET, FakeRehook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rehook_sdk.testing", description=__doc__)
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
    args = parser.parse_args(argv)
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
    )
    if args.error_rate or args.reset_rate:
        fake.random_faults(error_rate=args.error_rate, status=args.status, reset_rate=args.reset_rate, seed=args.seed)
    async with fake:
        print(f"Fake Rehook listening on {fake.url}", flush=True)
        print(f"  REHOOK_BASE_URL={fake.url} REHOOK_API_KEY={fake.api_key} REHOOK_API_SECRET={fake.api_secret}")
        print("Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    main()
