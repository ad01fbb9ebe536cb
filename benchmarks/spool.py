"""
What the durable spool (``spool=``) costs and what it keeps, on loopback against benchmarks/server.py.

    python benchmarks/spool.py            # every figure (about 2 minutes)
    python benchmarks/spool.py --quick    # small sizes, one run (the test suite runs it)
    python benchmarks/spool.py --json out.json
    python benchmarks/spool.py --postgres postgresql://postgres@127.0.0.1:5432/test   # and a PostgreSQL spool

Figures, each without a spool and with one (SQLite with synchronous "normal" and "full"; with --postgres, also
PostgreSQL: each run in a schema of its own, dropped afterwards), interleaved run by run:

1. Caller cost: microseconds per track() (mean, p99) while the SDK delivers to a 0 ms server.
2. Throughput: events/s and client CPU per event from the first call until all are delivered, at 0 ms and 20 ms.
3. Restart: events/s of a client delivering what an earlier client left in the spool (0 ms server). Burst: 3,000
   calls from code that never yields: how many are not committed at its end (stats().unspooled), and for how long.
4. Size: bytes of spool per queued call (SQLite: the file with its WAL; PostgreSQL: the table with its indexes).
5. What a SIGKILL loses: a process tracking ~10,000 calls/s to a silent server is SIGKILLed at a random moment;
   the calls it had accepted (counted in shared memory, exactly) against the calls found in its spool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mmap
import os
import random
import secrets
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).parent))

from bench import PROPS, Server, _summary, _timed_calls, client_for, median_of, throughput_sdk

SQLITE: tuple[Literal["normal", "full"], ...] = ("normal", "full")


class Spools:
    """
    Where each run's spool lives: a new SQLite file in ``folder``, or a new schema in the PostgreSQL database.
    """

    def __init__(self, folder: Path, postgres: str | None) -> None:
        self.folder = folder
        self.postgres = postgres
        self.variants = ("memory", *SQLITE, *(("postgres",) if postgres else ()))
        self.spooled = self.variants[1:]
        self._schemas: list[str] = []

    def settings(self, variant: str) -> dict[str, Any]:
        if variant == "memory":
            return {}
        return {"spool": self.new(variant), **({} if variant == "postgres" else {"spool_synchronous": variant})}

    def new(self, variant: str) -> str:
        if variant != "postgres":
            return str(self.folder / f"{variant}-{time.monotonic_ns()}.db")
        assert self.postgres is not None
        schema = f"rehook_bench_{secrets.token_hex(6)}"
        self._execute(f"CREATE SCHEMA {schema}")
        self._schemas.append(schema)
        return f"{self.postgres}{'&' if '?' in self.postgres else '?'}options=-csearch_path%3D{schema}"

    def size(self, spool: str) -> int:
        if not spool.startswith("postgresql://"):
            path = Path(spool)  # the database with its write-ahead log and index
            return sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))
        return int(self._execute("SELECT pg_total_relation_size('rehook_calls')", spool)[0][0])

    def count(self, spool: str) -> int:
        if not spool.startswith("postgresql://"):
            with contextlib.closing(sqlite3.connect(spool)) as connection, connection:
                return int(connection.execute("SELECT count(*) FROM rehook_calls").fetchone()[0])
        return int(self._execute("SELECT count(*) FROM rehook_calls", spool)[0][0])

    def close(self) -> None:
        for schema in self._schemas:
            self._execute(f"DROP SCHEMA {schema} CASCADE")

    def _execute(self, sql: str, url: str | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(url or self.postgres or "", autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description is not None else []


async def caller_cost(url: str, n: int, variant: str, spools: Spools) -> dict[str, float]:
    async with client_for(url, n, **spools.settings(variant)) as client:
        figures = _summary(await _timed_calls(client.track, n))
        assert await client.flush() == 0
        assert client.stats().delivered == n
    return {"track_mean_us": figures["mean_us"], "track_p99_us": figures["p99_us"]}


async def caller_cost_alternating(url: str, blocks: int, block: int, spools: Spools) -> dict[str, Any]:
    """
    track() with each spool against track() without, in one process: both clients run side by side and take
    turns, ``blocks`` blocks of ``block`` calls each (the order flips every block), each block's calls delivered
    (and committed) before the next starts. Median microseconds per call, and each spool's ratio to no spool.
    """
    clients = {variant: client_for(url, blocks * block, **spools.settings(variant)) for variant in spools.variants}
    per_call: dict[str, list[float]] = {variant: [] for variant in clients}
    for client in clients.values():
        await client.start()
    try:
        order = list(clients)
        for number in range(blocks):
            for variant in order if number % 2 == 0 else reversed(order):
                client = clients[variant]
                samples = await _timed_calls(client.track, block)
                per_call[variant].append(statistics.fmean(samples) / 1000)
                assert await client.flush() == 0
                while client.stats().unspooled:  # noqa: ASYNC110 (a counter has no event to wait on)
                    await asyncio.sleep(0.0005)
    finally:
        for client in clients.values():
            await client.aclose()
    medians = {variant: statistics.median(values) for variant, values in per_call.items()}
    return {
        "track_us": medians,
        "ratio": {variant: medians[variant] / medians["memory"] for variant in spools.spooled},
        "blocks": blocks,
        "block": block,
    }


async def throughput(url: str, n: int, variant: str, spools: Spools) -> dict[str, float]:
    return await throughput_sdk(url, n, **spools.settings(variant))


def silent_url() -> tuple[socket.socket, str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


async def leave_in_spool(url: str, spool: str, n: int, variant: str) -> None:
    # The application the restarted client is (a spool's calls belong to one base URL and API key), its requests
    # sent through a "proxy" that never answers: they stay in the spool.
    listener, silent = silent_url()
    durability: dict[str, Any] = {} if variant == "postgres" else {"spool_synchronous": variant}
    with listener:
        client = client_for(url, n, spool=spool, proxy=silent, concurrency=1, request_timeout=60, **durability)
        await client.start()
        for i in range(n):
            _ = client.track("Product Viewed", PROPS, user_id=f"u{i}")
        await client.aclose(timeout=0.5)


async def restart(url: str, n: int, variant: str, spools: Spools) -> dict[str, float]:
    spool = spools.new(variant)
    await leave_in_spool(url, spool, n, variant)
    size = await asyncio.to_thread(spools.size, spool)
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with client_for(url, n, spool=spool) as client:
        while client.stats().delivered < n:  # noqa: ASYNC110 (a counter has no event to wait on)
            await asyncio.sleep(0.001)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"events_per_s": n / elapsed, "cpu_us_per_event": cpu / n * 1e6, "bytes_per_call": size / n}


CHILD = textwrap.dedent(
    """
    import asyncio, mmap, struct, sys
    from rehook_sdk import RehookClient

    async def main() -> None:
        with open(sys.argv[3], "r+b") as f:
            shared = mmap.mmap(f.fileno(), 8)
        client = RehookClient("k", "s", base_url=sys.argv[1], spool=sys.argv[2], concurrency=4,
                              request_timeout=600, max_queue_size=1_000_000)
        await client.start()
        print("ready", flush=True)
        n = 0
        while True:  # about 10 calls a millisecond
            for _ in range(10):
                _ = client.track("Product Viewed", {"i": n}, user_id=f"u{n}")
                n += 1
                struct.pack_into("q", shared, 0, n)
            await asyncio.sleep(0.001)

    asyncio.run(main())
    """
)


BURST = 3_000


async def burst(url: str, variant: str, spools: Spools) -> dict[str, float]:
    """
    3,000 track() calls from code that never yields to the loop (Rehook silent): how many the spool has not
    committed when the burst ends (stats().unspooled, what a SIGKILL then loses), and how long after it they are.
    """
    listener, silent = silent_url()
    with listener:
        settings = {**spools.settings(variant), "proxy": silent, "request_timeout": 60, "concurrency": 4}
        client = client_for(url, BURST, **settings)
        await client.start()
        t0 = time.perf_counter()
        for i in range(BURST):
            _ = client.track("Product Viewed", PROPS, user_id=f"u{i}")
        t1 = time.perf_counter()
        unspooled = client.stats().unspooled
        while client.stats().unspooled:  # noqa: ASYNC110 (a counter has no event to wait on)
            await asyncio.sleep(0.0005)
        t2 = time.perf_counter()
        await client.aclose(timeout=0.1)
    return {"burst_ms": (t1 - t0) * 1e3, "unspooled_at_end": unspooled, "committed_after_ms": (t2 - t1) * 1e3}


def sigkill_loss(spools: Spools, variant: str, seed: int) -> dict[str, float]:
    listener, url = silent_url()
    spool = spools.new(variant)
    counter = spools.folder / f"counter-{variant}-{seed}"
    counter.write_bytes(bytes(8))
    command = [sys.executable, "-c", CHILD, url, spool, str(counter)]
    with listener, subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3 + random.Random(seed).random() * 0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    with open(counter, "rb") as f:
        accepted = struct.unpack("q", mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)[:8])[0]
    found = spools.count(spool)
    return {"accepted": accepted, "found": found, "lost": accepted - found}


async def run(quick: bool, runs: int, postgres: str | None) -> dict[str, Any]:
    n = 2_000 if quick else 20_000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spools = Spools(Path(tmp), postgres)
        try:
            await measure(spools, n, runs, results, quick)
        finally:
            spools.close()
    return results


async def sampled(
    runs: int, variants: tuple[str, ...], measure: Callable[[str], Awaitable[dict[str, float]]]
) -> dict[str, dict[str, float]]:
    """Each variant's median figures over ``runs`` runs, the variants interleaved run by run."""
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for _ in range(runs):
        for variant in variants:
            samples[variant].append(await measure(variant))
    return {v: median_of(samples[v]) for v in variants}


async def measure(spools: Spools, n: int, runs: int, results: dict[str, Any], quick: bool) -> None:
    variants, spooled = spools.variants, spools.spooled
    zero = Server(0)
    try:
        results["caller_cost"] = await sampled(runs, variants, lambda v: caller_cost(zero.url, n, v, spools))
        results["caller_cost_alternating"] = await caller_cost_alternating(
            zero.url, 4 if quick else 40, 500 if quick else 2_000, spools
        )
        results["throughput_0ms"] = await sampled(runs, variants, lambda v: throughput(zero.url, n, v, spools))
        results["restart_0ms"] = await sampled(runs, spooled, lambda v: restart(zero.url, n // 2, v, spools))
        bursts = runs if quick else max(runs, 5)
        results["burst"] = await sampled(bursts, spooled, lambda v: burst(zero.url, v, spools))
    finally:
        zero.close()
    slow = Server(20)
    try:
        results["throughput_20ms"] = await sampled(runs, variants, lambda v: throughput(slow.url, n // 4, v, spools))
    finally:
        slow.close()
    results["sigkill"] = {}
    for variant in ("normal", *(("postgres",) if "postgres" in variants else ())):
        kills = [sigkill_loss(spools, variant, seed) for seed in range(2 if quick else 5)]
        results["sigkill"][variant] = {
            "runs": kills,
            "lost_median": statistics.median(k["lost"] for k in kills),
            "lost_max": max(k["lost"] for k in kills),
            "calls_per_ms": 10,
        }


NAMES = {"memory": "memory", "normal": "SQLite, normal", "full": "SQLite, full", "postgres": "PostgreSQL"}


def table(results: dict[str, Any]) -> list[str]:
    cost, zero, slow, again = (
        results["caller_cost"],
        results["throughput_0ms"],
        results["throughput_20ms"],
        results["restart_0ms"],
    )
    variants = list(cost)
    lines = ["| figure | " + " | ".join(NAMES[v] for v in variants) + " |", "|---" * (len(variants) + 1) + "|"]

    def row(label: str, key: str, figures: dict[str, dict[str, float]], fmt: str) -> None:
        cells = [format(figures[v][key], fmt) if v in figures else "" for v in variants]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    alternating = results["caller_cost_alternating"]
    lines.append(
        "| track(), us: blocks alternated in one process (median of "
        f"{alternating['blocks']} x {alternating['block']:,} calls) | "
        + " | ".join(
            f"{alternating['track_us'][v]:.2f}"
            + (f" ({alternating['ratio'][v]:.2f}x)" if v in alternating["ratio"] else "")
            for v in variants
        )
        + " |"
    )
    row("track() mean, us", "track_mean_us", cost, ".2f")
    row("track() p99, us", "track_p99_us", cost, ".2f")
    row("0 ms: events/s", "events_per_s", zero, ",.0f")
    row("0 ms: client CPU us per event", "cpu_us_per_event", zero, ".1f")
    row("20 ms: events/s", "events_per_s", slow, ",.0f")
    row("restart, 0 ms: events/s from the spool", "events_per_s", again, ",.0f")
    row("spool bytes per call", "bytes_per_call", again, ".0f")
    for variant, figures in results["burst"].items():
        lines.append(
            f"\n{BURST:,} calls that never yield, {NAMES[variant]}: {figures['burst_ms']:.1f} ms; not committed at "
            f"their end: {figures['unspooled_at_end']:.0f}; all committed {figures['committed_after_ms']:.1f} ms "
            "later (medians)"
        )
    for variant, kill in results["sigkill"].items():
        lines.append(
            f"\nSIGKILL at ~{kill['calls_per_ms']} calls/ms, {NAMES[variant]}, {len(kill['runs'])} runs: calls "
            f"accepted but not in the spool: median {kill['lost_median']:.0f}, max {kill['lost_max']:.0f} "
            f"({', '.join(str(k['lost']) + ' of ' + str(k['accepted']) for k in kill['runs'])})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--postgres", default=None, metavar="URL", help="also a PostgreSQL spool, in new schemas of this database"
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    results = asyncio.run(run(args.quick, runs, args.postgres))
    for line in table(results):
        print(line)
    output = {"quick": args.quick, "runs": runs, "results": results}
    print(json.dumps(output, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
