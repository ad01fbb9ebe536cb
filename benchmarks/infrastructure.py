"""
Delivery behind real infrastructure (#25): what HAProxy and nginx, as Debian packages them, cost the SDK's calls.
Loopback only; needs ``haproxy`` and ``nginx`` (``apt-get install haproxy nginx-light``).

    python benchmarks/infrastructure.py                      # every scenario; a table and JSON
    python benchmarks/infrastructure.py --only keepalive     # one scenario
    python benchmarks/infrastructure.py --calls 2000         # fewer calls per run
    python benchmarks/infrastructure.py --json out.json

Scenarios:

1. keepalive: HAProxy with ``timeout http-keep-alive 200ms`` in front of the fake Rehook; calls in bursts of 64
   (``concurrency=64``, ``delivery="at_most_once"``), each burst after a pause drawn from 170-230 ms (seeded), so
   that HAProxy closes idle connections just as the next burst may write on them. Counts the calls that failed
   (each ``maybe_delivered``) and, by the server's records, how many of those it really received. Per transport.

2. ratelimit: nginx with ``limit_req`` at 800 requests/s (``burst=20 nodelay``, refusals answered 429 without
   Retry-After) in front of the fake Rehook; 10,000 queued calls drained with ``concurrency="auto"`` and with fixed
   8, 16 and 64 (retries wait as by default). Seconds, events/s and the share of requests refused.

The fake Rehook and the proxies run outside the client's event loop (a thread, and their own processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/infrastructure.py runs the proxies

from rehook_sdk import Delivery, RehookClient, RetryPolicy, __version__
from rehook_sdk.testing import FakeRehook
from tests.infrastructure import haproxy, nginx

BURST = 64


async def keepalive(fake: FakeRehook, transport: str, calls: int, seed: int) -> dict[str, Any]:
    port = int(fake.url.rsplit(":", 1)[1])
    rng = random.Random(seed)
    async with haproxy(port, defaults="timeout http-keep-alive 200ms") as url:
        before = set(fake.delivered_keys)
        client = RehookClient(
            fake.api_key,
            fake.api_secret,
            base_url=url,
            transport=transport,  # type: ignore[arg-type]
            concurrency=BURST,
            delivery=Delivery.AT_MOST_ONCE,
            retry=RetryPolicy(max_attempts=3, time_scale=0),
        )
        handles = []
        started = time.perf_counter()
        async with client:
            for first in range(0, calls, BURST):
                burst = [client.track("e", {"i": i}, user_id=f"u{i}") for i in range(first, min(first + BURST, calls))]
                await asyncio.gather(*burst)
                handles += burst
                await asyncio.sleep(rng.uniform(0.17, 0.23))
        elapsed = time.perf_counter() - started
    outcomes = [h.outcome for h in handles if h.outcome is not None]
    failed = [o for o in outcomes if not o.delivered]
    received = fake.delivered_keys - before
    return {
        "transport": transport,
        "calls": calls,
        "seconds": round(elapsed, 1),
        "failed": len(failed),
        "failed_maybe_delivered": sum(1 for o in failed if o.maybe_delivered),
        "failed_the_server_received": sum(1 for o in failed if o.message_id in received),
        "reported_delivered_not_received": sum(1 for o in outcomes if o.delivered and o.message_id not in received),
        "requests": client.stats().requests,
    }


async def ratelimit(fake: FakeRehook, concurrency: int | str, calls: int) -> dict[str, Any]:
    port = int(fake.url.rsplit(":", 1)[1])
    http = "limit_req_zone $binary_remote_addr zone=rehook:1m rate=800r/s;\nlimit_req_status 429;"
    async with nginx(port, http=http, location="limit_req zone=rehook burst=20 nodelay;") as url:
        client = RehookClient(
            fake.api_key,
            fake.api_secret,
            base_url=url,
            concurrency=concurrency,  # type: ignore[arg-type]
            max_queue_size=calls + 1000,
            retry=RetryPolicy(max_attempts=100),
        )
        await client.start()
        for i in range(calls):
            _ = client.track("e", {"i": i}, user_id=f"u{i}")
        started = time.perf_counter()
        await client.aclose(timeout=None)
        elapsed = time.perf_counter() - started
    stats = client.stats()
    return {
        "concurrency": concurrency,
        "calls": calls,
        "seconds": round(elapsed, 2),
        "events_per_s": round(stats.delivered / elapsed, 1),
        "delivered": stats.delivered,
        "refused_share": round((stats.requests - stats.delivered) / stats.requests, 4),
    }


async def run(only: str | None, calls: int, seed: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "calls": calls,
    }
    with FakeRehook.in_thread() as fake:
        if only in (None, "keepalive"):
            results["keepalive"] = [await keepalive(fake, transport, calls, seed) for transport in ("fast", "aiohttp")]
        if only in (None, "ratelimit"):
            results["ratelimit"] = [await ratelimit(fake, c, calls) for c in (8, 16, 64, "auto")]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["keepalive", "ratelimit"])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.only, args.calls, args.seed))
    for row in results.get("keepalive", []):
        print(
            f"keepalive  {row['transport']:8} {row['calls']} calls in {row['seconds']} s: {row['failed']} failed "
            f"({row['failed_maybe_delivered']} maybe delivered, {row['failed_the_server_received']} of them received "
            f"by the server); {row['reported_delivered_not_received']} reported delivered but not received"
        )
    for row in results.get("ratelimit", []):
        print(
            f"ratelimit  concurrency {row['concurrency']!s:5} {row['calls']} calls in {row['seconds']} s: "
            f"{row['events_per_s']}/s, {row['refused_share']:.1%} of requests refused"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
