"""
What the durable spool (``spool=``) costs and what it keeps, on loopback against benchmarks/server.py.

    python benchmarks/spool.py            # every figure (about 2 minutes)
    python benchmarks/spool.py --quick    # small sizes, one run (the test suite runs it)
    python benchmarks/spool.py --json out.json

Figures, each without a spool and with one (synchronous "normal" and "full"), interleaved run by run:

1. Caller cost: microseconds per track() (mean, p99) while the SDK delivers to a 0 ms server.
2. Throughput: events/s and client CPU per event from the first call until all are delivered, at 0 ms and 20 ms.
3. Restart: events/s of a client delivering what an earlier client left in the spool (0 ms server).
4. Size: bytes of spool file per queued call (10,000 calls left in it).
5. What a SIGKILL loses: a process tracking ~10,000 calls/s to a silent server is SIGKILLed at a random moment;
   the calls it had accepted (counted in shared memory, exactly) against the calls found in its spool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import random
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
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).parent))

from bench import PROPS, Server, _summary, _timed_calls, client_for, median_of, throughput_sdk

from rehook_sdk import RehookClient

SPOOLS: tuple[Literal["normal", "full"], ...] = ("normal", "full")
VARIANTS = ("memory", *SPOOLS)


def settings_for(variant: str, folder: Path) -> dict[str, Any]:
    if variant == "memory":
        return {}
    path = folder / f"{variant}-{time.monotonic_ns()}.db"
    return {"spool": path, "spool_synchronous": variant}


async def caller_cost(url: str, n: int, variant: str, folder: Path) -> dict[str, float]:
    async with client_for(url, n, **settings_for(variant, folder)) as client:
        figures = _summary(await _timed_calls(client.track, n))
        assert await client.flush() == 0
        assert client.stats().delivered == n
    return {"track_mean_us": figures["mean_us"], "track_p99_us": figures["p99_us"]}


async def throughput(url: str, n: int, variant: str, folder: Path) -> dict[str, float]:
    return await throughput_sdk(url, n, **settings_for(variant, folder))


def silent_url() -> tuple[socket.socket, str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


async def leave_in_spool(path: Path, n: int, synchronous: Literal["normal", "full"]) -> None:
    listener, url = silent_url()
    with listener:
        client = RehookClient(
            "k",
            "s",
            base_url=url,
            spool=path,
            spool_synchronous=synchronous,
            concurrency=1,
            request_timeout=60,
            max_queue_size=n + 10,
        )
        await client.start()
        for i in range(n):
            _ = client.track("Product Viewed", PROPS, user_id=f"u{i}")
        await client.aclose(timeout=0.5)


def disk_bytes(path: Path) -> int:
    # The database with its write-ahead log and index.
    return sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))


async def restart(url: str, n: int, variant: Literal["normal", "full"], folder: Path) -> dict[str, float]:
    path = folder / f"restart-{variant}-{time.monotonic_ns()}.db"
    await leave_in_spool(path, n, variant)
    size = await asyncio.to_thread(disk_bytes, path)
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with client_for(url, n, spool=path, spool_synchronous=variant) as client:
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


def sigkill_loss(folder: Path, seed: int) -> dict[str, float]:
    listener, url = silent_url()
    path = folder / f"killed-{seed}.db"
    counter = folder / f"counter-{seed}"
    counter.write_bytes(bytes(8))
    with (
        listener,
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(path), str(counter)], stdout=subprocess.PIPE, text=True
        ) as child,
    ):
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3 + random.Random(seed).random() * 0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    with open(counter, "rb") as f:
        accepted = struct.unpack("q", mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)[:8])[0]
    with sqlite3.connect(path) as connection:
        found = connection.execute("SELECT count(*) FROM rehook_calls").fetchone()[0]
    return {"accepted": accepted, "found": found, "lost": accepted - found}


async def run(quick: bool, runs: int) -> dict[str, Any]:
    n = 2_000 if quick else 20_000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        zero = Server(0)
        try:
            samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
            for _ in range(runs):
                for variant in VARIANTS:
                    samples[variant].append(await caller_cost(zero.url, n, variant, folder))
            results["caller_cost"] = {v: median_of(samples[v]) for v in VARIANTS}
            samples = {v: [] for v in VARIANTS}
            for _ in range(runs):
                for variant in VARIANTS:
                    samples[variant].append(await throughput(zero.url, n, variant, folder))
            results["throughput_0ms"] = {v: median_of(samples[v]) for v in VARIANTS}
            restarts: dict[str, list[dict[str, float]]] = {v: [] for v in SPOOLS}
            for _ in range(runs):
                for spooled in SPOOLS:
                    restarts[spooled].append(await restart(zero.url, n // 2, spooled, folder))
            results["restart_0ms"] = {v: median_of(restarts[v]) for v in SPOOLS}
        finally:
            zero.close()
        slow = Server(20)
        try:
            samples = {v: [] for v in VARIANTS}
            for _ in range(runs):
                for variant in VARIANTS:
                    samples[variant].append(await throughput(slow.url, n // 4, variant, folder))
            results["throughput_20ms"] = {v: median_of(samples[v]) for v in VARIANTS}
        finally:
            slow.close()
        kills = [sigkill_loss(folder, seed) for seed in range(2 if quick else 5)]
        results["sigkill"] = {
            "runs": kills,
            "lost_median": statistics.median(k["lost"] for k in kills),
            "lost_max": max(k["lost"] for k in kills),
            "calls_per_ms": 10,
        }
    return results


def table(results: dict[str, Any]) -> list[str]:
    cost, zero, slow, again = (
        results["caller_cost"],
        results["throughput_0ms"],
        results["throughput_20ms"],
        results["restart_0ms"],
    )
    lines = ["| figure | memory | spool, normal | spool, full |", "|---|---|---|---|"]

    def row(label: str, values: list[float | None], fmt: str) -> None:
        cells = ["" if v is None else format(v, fmt) for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("track() mean, us", [cost[v]["track_mean_us"] for v in VARIANTS], ".2f")
    row("track() p99, us", [cost[v]["track_p99_us"] for v in VARIANTS], ".2f")
    row("0 ms: events/s", [zero[v]["events_per_s"] for v in VARIANTS], ",.0f")
    row("0 ms: client CPU us per event", [zero[v]["cpu_us_per_event"] for v in VARIANTS], ".1f")
    row("20 ms: events/s", [slow[v]["events_per_s"] for v in VARIANTS], ",.0f")
    row("restart, 0 ms: events/s from the spool", [None, *(again[v]["events_per_s"] for v in SPOOLS)], ",.0f")
    row("spool file bytes per call", [None, *(again[v]["bytes_per_call"] for v in SPOOLS)], ".0f")
    kill = results["sigkill"]
    lines.append(
        f"\nSIGKILL at ~{kill['calls_per_ms']} calls/ms, {len(kill['runs'])} runs: calls accepted but not in the "
        f"spool: median {kill['lost_median']:.0f}, max {kill['lost_max']:.0f} "
        f"({', '.join(str(k['lost']) + ' of ' + str(k['accepted']) for k in kill['runs'])})"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    results = asyncio.run(run(args.quick, runs))
    for line in table(results):
        print(line)
    output = {"quick": args.quick, "runs": runs, "results": results}
    print(json.dumps(output, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
