"""
The delivery benchmark: what the SDK's promises cost when things go wrong. Loopback only.

    python benchmarks/delivery.py            # every scenario, each in a fresh process; a table and JSON
    python benchmarks/delivery.py --quick    # smaller sizes (the test suite runs this)
    python benchmarks/delivery.py --json out.json

Figures:

1. Shutdown: seconds ``aclose(0.5)`` takes with 10,000 and 100,000 calls queued behind a server that never
   answers, plain, with ``dead_letter=``, and with ``dead_letter=`` plus a file log handler.
2. Loop stretches: the longest stretch of the client's event loop (CPU seconds of its thread between two loop
   iterations, `LoopProbe`) during that shutdown, a 401 storm (10,000 queued, every call rejected), 10,000 rule
   drops (no user id), and 8 answers with 100 MiB bodies through `FaultProxy`.
3. Memory: peak RSS growth while those 8 huge answers arrive.
4. Caller cost: microseconds per ``track()`` that is dropped as ``queue_full`` (plain, with ``dead_letter=`` and a
   file log handler) against one that is queued.

Servers run on their own thread and event loop, so the probe sees only the client's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rehook_sdk import RehookClient, RetryPolicy
from rehook_sdk.testing import FakeRehook, FaultProxy, LoopProbe, ProxyFault

T = TypeVar("T")
PROPS = {"product_id": "507f1f779439011", "price": 18.99, "currency": "EUR"}


class Background:
    """
    An event loop on its own thread, for the servers.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-servers", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


async def silent_server() -> tuple[asyncio.Server, str]:
    """
    Accepts connections, reads, never answers.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@contextlib.contextmanager
def file_logging(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with tempfile.TemporaryDirectory() as folder:
        handler = logging.FileHandler(Path(folder) / "sdk.log")
        log = logging.getLogger("rehook_sdk")
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            log.removeHandler(handler)
            handler.close()


# -- scenarios: each runs in its own process and prints one JSON object ------------------------------------


def shutdown(queued: int, dead_letter: bool, logs: bool) -> dict[str, Any]:
    servers = Background()
    server, url = servers.run(silent_server())

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as folder, file_logging(logs):
            path = Path(folder) / "dead.jsonl" if dead_letter else None
            client = RehookClient("k", "s", base_url=url, max_queue_size=queued, dead_letter=path, request_timeout=30)
            await client.start()
            for i in range(queued):
                _ = client.track("bench", PROPS, user_id=f"u{i}")
            await asyncio.sleep(0.05)  # the senders' requests are out and hanging
            with LoopProbe() as probe:
                started = time.perf_counter()
                await client.aclose(0.5)
                took = time.perf_counter() - started
            stats = client.stats()
            lines_by_return = sum(1 for _ in path.open()) if path is not None else None
        return {
            "aclose_s": took,
            "deadline_s": 0.5,
            "longest_stretch_ms": probe.longest * 1000,
            "failed": stats.failed_total,
            "dead_letter_lines_at_return": lines_by_return,
        }

    try:
        return asyncio.run(main())
    finally:
        servers.run(_close_server(server))
        servers.close()


async def _close_server(server: asyncio.Server) -> None:
    server.close()


def storm(kind: str, calls: int) -> dict[str, Any]:
    servers = Background()
    fake = FakeRehook(record=False)
    servers.run(fake.start())

    async def main() -> dict[str, Any]:
        secret = "wrong" if kind == "401" else fake.api_secret
        client = RehookClient(
            fake.api_key, secret, base_url=fake.url, max_queue_size=calls, retry=RetryPolicy(time_scale=0)
        )
        await client.start()
        if kind == "401":
            await client.track("first", user_id="u0")  # the 401 that arms the fail-fast
        # Queued in one go before the probe starts: the harness's own burst is not the SDK's stretch. The senders
        # start on them at the next loop iteration, under the probe.
        for i in range(calls):
            if kind == "401":
                _ = client.track("bench", PROPS, user_id=f"u{i}")
            else:
                _ = client.track("bench", PROPS, anonymous_id=f"a{i}")  # dropped: anonymous_only
        with LoopProbe() as probe:
            started = time.perf_counter()
            await client.flush()
            took = time.perf_counter() - started
        await client.aclose()
        stretch = probe.longest * 1000
        return {"calls": calls, "seconds": took, "longest_stretch_ms": stretch, "iterations": probe.iterations}

    try:
        with contextlib.redirect_stderr(None):
            return asyncio.run(main())
    finally:
        servers.run(fake.stop())
        servers.close()


def huge_bodies(count: int, size: int) -> dict[str, Any]:
    servers = Background()
    fake = FakeRehook(record=False)
    servers.run(fake.start())
    proxy = FaultProxy.for_url(fake.url)
    servers.run(proxy.start())

    async def main() -> dict[str, Any]:
        proxy.script(ProxyFault(kind="huge_body", size=size), count=count)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with RehookClient(fake.api_key, fake.api_secret, base_url=proxy.url, concurrency=count) as client:
            with LoopProbe() as probe:
                started = time.perf_counter()
                outcomes = await asyncio.gather(*(client.track("bench", PROPS, user_id=f"u{i}") for i in range(count)))
                took = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(1000):  # the proxy notices the client hung up a little after the client has its outcome
            if proxy.finished():
                break
            await asyncio.sleep(0.01)
        sent = [r.bytes_to_client for r in proxy.requests]
        return {
            "answers": count,
            "body_bytes": size,
            "delivered": sum(1 for o in outcomes if o.delivered),
            "seconds": took,
            "longest_stretch_ms": probe.longest * 1000,
            "peak_rss_growth_mib": (after - before) / 1024,
            "max_bytes_proxy_could_write_mib": max(sent) / 2**20,
        }

    try:
        return asyncio.run(main())
    finally:
        servers.run(proxy.stop())
        servers.run(fake.stop())
        servers.close()


def caller_cost(calls: int) -> dict[str, Any]:
    servers = Background()
    server, url = servers.run(silent_server())

    async def per_call(client: RehookClient, n: int) -> float:
        started = time.perf_counter_ns()
        for i in range(n):
            _ = client.track("bench", PROPS, user_id=f"u{i}")
        return (time.perf_counter_ns() - started) / n / 1000

    async def main() -> dict[str, Any]:
        results: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as folder:
            for name, dead_letter, logs in (
                ("queued", False, False),
                ("dropped", False, False),
                ("dropped_dead_letter_file_log", True, True),
            ):
                path = Path(folder) / f"{name}.jsonl" if dead_letter else None
                with file_logging(logs):
                    client = RehookClient("k", "s", base_url=url, max_queue_size=calls + 64, dead_letter=path)
                    await client.start()
                    await asyncio.sleep(0)
                    if name == "queued":
                        results[name] = await per_call(client, calls)
                    else:
                        await per_call(client, calls + 64)  # fill the queue (64 go out and hang)
                        await asyncio.sleep(0.05)
                        await per_call(client, calls)  # warm-up of the drop path
                        results[name] = await per_call(client, calls)
                    await client.aclose(0)
        return {"us_per_call": results}

    try:
        return asyncio.run(main())
    finally:
        servers.run(_close_server(server))
        servers.close()


SCENARIOS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "aclose_10k": lambda quick: shutdown(2_000 if quick else 10_000, False, False),
    "aclose_10k_dead_letter": lambda quick: shutdown(2_000 if quick else 10_000, True, False),
    "aclose_10k_dead_letter_file_log": lambda quick: shutdown(2_000 if quick else 10_000, True, True),
    "aclose_100k": lambda quick: shutdown(5_000 if quick else 100_000, False, False),
    "aclose_100k_dead_letter": lambda quick: shutdown(5_000 if quick else 100_000, True, False),
    "aclose_100k_dead_letter_file_log": lambda quick: shutdown(5_000 if quick else 100_000, True, True),
    "storm_401": lambda quick: storm("401", 1_000 if quick else 10_000),
    "rule_drops": lambda quick: storm("drops", 1_000 if quick else 10_000),
    "huge_bodies": lambda quick: huge_bodies(2 if quick else 8, (4 if quick else 100) * 2**20),
    "caller_cost": lambda quick: caller_cost(2_000 if quick else 20_000),
}


def run_all(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in SCENARIOS:
        command = [sys.executable, __file__, "--scenario", name] + (["--quick"] if quick else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def table(results: dict[str, Any]) -> str:
    rows = ["| scenario | figure |", "|---|---|"]
    for name, r in results.items():
        if name.startswith("aclose"):
            rows.append(
                f"| {name} | aclose(0.5) took {r['aclose_s']:.3f} s; longest loop stretch"
                f" {r['longest_stretch_ms']:.1f} ms; {r['failed']} failed; dead-letter lines on disk at return:"
                f" {r['dead_letter_lines_at_return']} |"
            )
        elif name in ("storm_401", "rule_drops"):
            rows.append(
                f"| {name} | {r['calls']} calls ended in {r['seconds']:.3f} s; longest loop stretch"
                f" {r['longest_stretch_ms']:.1f} ms over {r['iterations']} iterations |"
            )
        elif name == "huge_bodies":
            rows.append(
                f"| {name} | {r['delivered']}/{r['answers']} delivered in {r['seconds']:.2f} s; longest stretch"
                f" {r['longest_stretch_ms']:.1f} ms; peak RSS +{r['peak_rss_growth_mib']:.1f} MiB"
                f" (bodies of {r['body_bytes'] // 2**20} MiB; at most {r['max_bytes_proxy_could_write_mib']:.1f} MiB"
                " written before the client hung up) |"
            )
        else:
            us = r["us_per_call"]
            rows.append(
                f"| {name} | track() queued {us['queued']:.2f} us; dropped queue_full {us['dropped']:.2f} us;"
                f" dropped with dead_letter= and a file log {us['dropped_dead_letter_file_log']:.2f} us |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(SCENARIOS[args.scenario](args.quick)))
        return
    results = run_all(args.quick)
    print(table(results))
    if args.json:
        meta = {"python": platform.python_version(), "machine": platform.processor() or platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
