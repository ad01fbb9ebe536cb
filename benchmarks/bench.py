"""
The rehook-sdk benchmark: what the SDK costs its caller, how fast it delivers, what a backlog costs, how fast it
drains. Loopback only; the server (benchmarks/server.py) runs in its own process on its own core.

    python benchmarks/bench.py            # full run: several runs per figure, medians, a table and JSON
    python benchmarks/bench.py --quick    # a small smoke run (the test suite runs this)
    python benchmarks/bench.py --json results.json
    python benchmarks/bench.py --loop uvloop   # the client on uvloop (the application's choice, not a dependency)

Figures (all from one run on the same machine, so compare the ratios):

1. Caller cost: microseconds per track() (mean and p99) while the SDK delivers to a 0 ms server, against the same
   loop calling an empty function (the harness floor).
2. Throughput: events/s from the first call until all are delivered, at 0 ms and 20 ms server latency, for the SDK
   (concurrency 64) and a hand-written aiohttp baseline (one session, one task per event, Semaphore(64),
   session.post(json=...)); client CPU seconds per event (process_time).
3. Backlog: bytes per queued event with the server paused (tracemalloc), and the longest event-loop stall during
   that burst (a 1 ms ticker's worst lateness).
4. Drain: seconds for aclose() to deliver queued events at 20 ms latency, against events * 0.020 / 64.
6. Adaptive concurrency: concurrency="auto" draining queued events from a 50 ms server that answers 429 above a
   concurrency drawn at random, against fixed concurrency at that limit (the best a fixed setting can do) and at
   the default 64.
5. Metrics: track() mean and client CPU per delivered event (0 ms server) without opentelemetry-api, with the API
   and no provider set (OpenTelemetry's default), and with the OpenTelemetry SDK and an in-memory reader.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import importlib
import json
import os
import platform
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import aiohttp
import httptools

from rehook_sdk import RehookClient, RetryPolicy
from rehook_sdk._client import delivery_engine

KEY, SECRET = "bench_key", "bench_secret"
CONCURRENCY = 64
WIDE = 256  # the wide figure's senders and raw connections
PROPS = {"product_id": "507f1f779439011", "price": 18.99, "currency": "EUR"}
SERVER = Path(__file__).with_name("server.py")
CLIENT_CPU, SERVER_CPU = 0, 1


class Server:
    """
    benchmarks/server.py in a subprocess.
    """

    def __init__(
        self,
        latency_ms: float,
        tls: tuple[Path, Path] | None = None,
        limit: int | None = None,
        rate: tuple[float, float] | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        cpu = ["--cpu", str(SERVER_CPU)] if _cores() > 1 else []
        pair = ["--tls", str(tls[0]), str(tls[1])] if tls else []
        pair += ["--limit", str(limit)] if limit is not None else []
        pair += ["--rate", str(rate[0]), "--burst", str(rate[1])] if rate is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--latency-ms", str(latency_ms), *cpu, *pair],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip().rsplit(" ", 1)[-1]

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.proc.terminate()
        self.proc.wait(10)


# What Python 3.13's strict verification (VERIFY_X509_STRICT, on by default) requires of a server certificate.
STRICT_SERVER_EXTENSIONS = (
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
)


def _cores() -> int:
    return os.cpu_count() or 1


def client_for(url: str, n: int, **settings: Any) -> RehookClient:
    settings.setdefault("concurrency", CONCURRENCY)
    return RehookClient(KEY, SECRET, base_url=url, max_queue_size=n + 1000, retry=RetryPolicy(time_scale=0), **settings)


# -- 1. caller cost ---------------------------------------------------------------------------------------------


async def _timed_calls(call: Callable[..., object], n: int) -> array.array[int]:
    samples = array.array("q", bytes(8 * n))
    clock = time.perf_counter_ns
    props = PROPS
    for i in range(n):
        t0 = clock()
        call("Product Viewed", props, user_id="u1")
        samples[i] = clock() - t0
        if i & 255 == 0:
            await asyncio.sleep(0)  # let the senders deliver: the calls are measured while delivery runs
    return samples


def _summary(samples: array.array[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"mean_us": statistics.fmean(ordered) / 1000, "p99_us": ordered[int(len(ordered) * 0.99)] / 1000}


async def caller_cost(url: str, n: int) -> dict[str, float]:
    def empty(event: str, properties: object = None, *, user_id: object = None) -> None:
        return None

    floor = _summary(await _timed_calls(empty, n))
    async with client_for(url, n) as client:
        sdk = _summary(await _timed_calls(client.track, n))
        await client.flush()
        assert client.stats().delivered == n
    return {
        "track_mean_us": sdk["mean_us"],
        "track_p99_us": sdk["p99_us"],
        "floor_mean_us": floor["mean_us"],
        "floor_p99_us": floor["p99_us"],
    }


# -- 6. adaptive concurrency -----------------------------------------------------------------------------------


async def drain_against_limit(url: str, n: int, concurrency: int | Literal["auto"]) -> dict[str, float]:
    """
    Queue ``n`` tracks, then aclose(): delivered events/s and the share of requests the server refused (429).
    Retries wait as they do by default (backoff from 0.5 s): a fixed concurrency above the limit pays for it.
    """
    client = RehookClient(
        KEY, SECRET, base_url=url, max_queue_size=n + 1000, concurrency=concurrency,
        retry=RetryPolicy(max_attempts=100),
    )  # fmt: skip
    elapsed = await queue_then_close(client, n)
    stats = client.stats()
    return {
        "events_per_s": stats.delivered / elapsed,
        "delivered": stats.delivered,
        "refused_share": (stats.requests - stats.delivered) / stats.requests,
    }


async def adaptive(n: int, seed: int) -> dict[str, Any]:
    """
    concurrency="auto" against a server (50 ms) that answers 429 above a limit drawn at random, against fixed
    concurrency at that limit and at the default.
    """
    limit = random.Random(seed).randint(40, 200)
    server = Server(50, limit=limit)
    try:
        # The limit itself (what a fixed setting does at best) and the default, 64 (what a user gets). Settings
        # far above the limit spend most of their time in retry backoff (140 against 70: 231/s, a sixth).
        fixed = {c: await drain_against_limit(server.url, n, c) for c in sorted({limit, CONCURRENCY})}
        auto = await drain_against_limit(server.url, n, "auto")
        assert auto["delivered"] == n, auto
    finally:
        server.close()
    return {"n": n, "hidden_limit": limit, **_against_fixed(auto, fixed)}


RATE_LIMIT = (800.0, 20.0)  # requests per second and burst, as nginx's limit_req rate=800r/s burst=20 nodelay
RATE_LATENCY_MS = 20
RATE_FIXED = (8, 16, 32, 64)


async def adaptive_rate(n: int) -> dict[str, Any]:
    """
    concurrency="auto" against a server (20 ms) that answers 429 without Retry-After above 800 requests per second
    (burst 20), however many are in flight, against fixed settings around 800/s x 20 ms = 16 in flight.
    """
    server = Server(RATE_LATENCY_MS, rate=RATE_LIMIT)
    try:
        fixed = {c: await drain_against_limit(server.url, n, c) for c in RATE_FIXED}
        auto = await drain_against_limit(server.url, n, "auto")
        assert auto["delivered"] == n, auto
    finally:
        server.close()
    return {"n": n, "rate_limit": RATE_LIMIT[0], "burst": RATE_LIMIT[1], **_against_fixed(auto, fixed)}


def _against_fixed(auto: dict[str, float], fixed: dict[int, dict[str, float]]) -> dict[str, Any]:
    best = max(fixed.values(), key=lambda f: f["events_per_s"])
    return {
        "auto": auto,
        "fixed": {str(c): f for c, f in fixed.items()},
        "auto_over_best_fixed": auto["events_per_s"] / best["events_per_s"],
        "auto_refused_share": auto["refused_share"],
    }


# -- 5. metrics -------------------------------------------------------------------------------------------------


async def metrics_cost(url: str, n: int, variant: str) -> dict[str, float]:
    """
    One run of n tracks with metrics ``variant``: "absent" (as without opentelemetry-api), "api" (the API's
    default provider), "sdk" (the OpenTelemetry SDK with an in-memory reader, collected once at the end).
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import rehook_sdk._report.metrics as metrics_module

    api = metrics_module._api
    settings: dict[str, Any] = {}
    reader = InMemoryMetricReader()
    if variant == "absent":
        metrics_module._api = lambda: None  # what an environment without the package sees
    elif variant == "sdk":
        settings["meter_provider"] = MeterProvider(metric_readers=[reader])
    try:
        async with client_for(url, n, **settings) as client:
            assert (delivery_engine(client).metrics is None) == (variant == "absent")
            cpu0 = time.process_time()
            caller = _summary(await _timed_calls(client.track, n))
            await client.flush()
            cpu = time.process_time() - cpu0
            assert client.stats().delivered == n
    finally:
        metrics_module._api = api
    if variant == "sdk":
        assert reader.get_metrics_data() is not None
    return {"track_mean_us": caller["mean_us"], "cpu_us_per_event": cpu / n * 1e6}


# -- 2. throughput ----------------------------------------------------------------------------------------------


async def throughput_sdk(
    url: str, n: int, concurrency: int = CONCURRENCY, ssl_context: ssl.SSLContext | None = None, **more: Any
) -> dict[str, float]:
    settings: dict[str, Any] = {"concurrency": concurrency, **more}
    if ssl_context is not None:
        settings["ssl"] = ssl_context
    async with client_for(url, n, **settings) as client:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            _ = client.track("Product Viewed", PROPS, user_id=f"u{i}")
        assert await client.flush() == 0
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert client.stats().delivered == n
    return {"events_per_s": n / elapsed, "cpu_us_per_event": cpu / n * 1e6}


async def throughput_baseline(url: str, n: int, ssl_context: ssl.SSLContext | None = None) -> dict[str, float]:
    """
    What a user would write by hand: one session, one task per event, a semaphore of 64, post(json=...).
    """
    headers = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()}
    endpoint = url + "/events/invoke"
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    async with aiohttp.ClientSession(headers=headers) as session:
        semaphore = asyncio.Semaphore(CONCURRENCY)
        delivered = 0

        async def send(i: int) -> None:
            nonlocal delivered
            body = {"event_name": "Product Viewed", "source_id": f"u{i}", "metadata": PROPS}
            async with semaphore, session.post(endpoint, json=body, ssl=verify) as response:
                await response.read()
                delivered += response.status == 200

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(asyncio.create_task(send(i)) for i in range(n)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert delivered == n
    return {"events_per_s": n / elapsed, "cpu_us_per_event": cpu / n * 1e6}


async def throughput_floor(url: str, n: int) -> dict[str, float]:
    """
    What aiohttp alone costs: 64 workers posting a prebuilt body, no per-event task, no JSON, no bookkeeping.

    Not a target: a reference for how close the SDK comes to the library it is built on.
    """
    body = json.dumps({"event_name": "Product Viewed", "source_id": "u1", "metadata": PROPS}).encode()
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode(),
        "Content-Type": "application/json",
    }
    endpoint = url + "/events/invoke"
    remaining = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

        async def worker() -> None:
            for _ in remaining:
                async with session.post(endpoint, data=body, headers=headers) as response:
                    await response.read()

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"events_per_s": n / elapsed, "cpu_us_per_event": cpu / n * 1e6}


class _RawConnection(asyncio.Protocol):
    """
    The raw floor's connection: one request at a time, answers parsed by httptools.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not derive from asyncio's

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self.done is not None
        self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("lost"))

    async def post(self, request: bytes) -> int:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.done


def raw_request(url: str, path: str = "/events/invoke") -> bytes:
    body = json.dumps({"event_name": "Product Viewed", "source_id": "u1", "metadata": PROPS}).encode()
    auth = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    host = url.split("://", 1)[1]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _raw_connections(url: str, count: int, ssl_context: ssl.SSLContext | None) -> list[_RawConnection]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    loop = asyncio.get_running_loop()
    made = []
    for _ in range(count):
        _, connection = await loop.create_connection(
            _RawConnection, host, int(port), ssl=ssl_context, server_hostname=host if ssl_context else None
        )
        made.append(connection)
    return made


async def throughput_raw(
    url: str, n: int, concurrency: int = CONCURRENCY, ssl_context: ssl.SSLContext | None = None
) -> dict[str, float]:
    """
    The physical floor of this machine and server: ``concurrency`` keep-alive connections on asyncio.Protocol,
    each posting one prebuilt request after another, answers parsed by httptools; nothing else.
    """
    request = raw_request(url)
    connections = await _raw_connections(url, concurrency, ssl_context)
    remaining = iter(range(n))

    async def worker(connection: _RawConnection) -> None:
        for _ in remaining:
            assert await connection.post(request) == 200

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    return {"events_per_s": n / elapsed, "cpu_us_per_event": cpu / n * 1e6}


async def round_trip_ms(url: str, n: int = 50, ssl_context: ssl.SSLContext | None = None) -> float:
    """
    The server's real latency: median of sequential requests on one raw connection.
    """
    (connection,) = await _raw_connections(url, 1, ssl_context)
    request = raw_request(url)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await connection.post(request)
        times.append((time.perf_counter() - t0) * 1000)
    assert connection.transport is not None
    connection.transport.close()
    return statistics.median(times)


# -- 3. backlog -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ticker() -> AsyncIterator[list[float]]:
    """
    Measures the event loop's worst lateness (seconds) against a 1 ms tick while the block runs.
    """
    worst = [0.0]
    loop = asyncio.get_running_loop()
    running = True

    async def tick() -> None:
        while running:
            before = loop.time()
            await asyncio.sleep(0.001)
            worst[0] = max(worst[0], loop.time() - before - 0.001)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    try:
        yield worst
    finally:
        running = False
        await task


async def _burst(client: RehookClient, n: int, every: int) -> None:
    for i in range(n):
        _ = client.track("Product Viewed", PROPS, user_id="u1")
        if i % every == every - 1:
            await asyncio.sleep(0)  # a server handling requests calls the SDK between other work


# Calls between two yields to the loop in the stall's burst: 100 track() calls are ~0.2 ms, already more than a
# request handler makes between awaits. The reference burst yields every 1,000 calls (~2 ms): the ticker then waits
# behind up to two such stretches of the harness's own calls, and the senders start over 64 long loop iterations.
STALL_EVERY, STALL_EVERY_REFERENCE = 100, 1_000


async def _stall(server: Server, n: int, every: int) -> tuple[float, int]:
    """
    The longest lateness of a 1 ms ticker (ms) during a burst of ``n`` calls, and the full collections in it.
    """
    client = client_for(server.url, n)
    await client.start()
    gc.collect()
    collections = gc.get_stats()[2]["collections"]
    async with ticker() as worst:
        await _burst(client, n, every)
    full = gc.get_stats()[2]["collections"] - collections
    await client.aclose(timeout=0)
    return worst[0] * 1000, full


async def backlog(server: Server, n: int) -> dict[str, float]:
    server.pause()
    try:
        client = client_for(server.url, n)
        await client.start()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await _burst(client, n, STALL_EVERY_REFERENCE)
        per_event = (tracemalloc.get_traced_memory()[0] - before) / n
        tracemalloc.stop()
        queued = client.stats().in_queue
        # A reference for the stall: one full collection of this whole process, the backlog still queued.
        t0 = time.perf_counter()
        gc.collect()
        full_gc_ms = (time.perf_counter() - t0) * 1000
        await client.aclose(timeout=0)

        stall_ms, full = await _stall(server, n, STALL_EVERY)
        reference_ms, reference_full = await _stall(server, n, STALL_EVERY_REFERENCE)
    finally:
        server.resume()
    return {
        "bytes_per_queued_event": per_event,
        "queued": queued,
        "max_stall_ms": stall_ms,
        "full_collections_during_burst": full,
        "max_stall_ms_1000_per_yield": reference_ms,
        "full_collections_during_burst_1000_per_yield": reference_full,
        "full_gc_ms": full_gc_ms,
    }


# -- 4. drain ---------------------------------------------------------------------------------------------------


async def queue_then_close(client: RehookClient, n: int) -> float:
    """
    Start ``client``, queue ``n`` tracks, and return the seconds ``aclose()`` takes to deliver them.
    """
    await client.start()
    for i in range(n):
        _ = client.track("Product Viewed", PROPS, user_id=f"u{i}")
    t0 = time.perf_counter()
    await client.aclose(timeout=None)
    return time.perf_counter() - t0


async def drain(url: str, n: int, round_trip_ms: float) -> dict[str, float]:
    client = client_for(url, n)
    elapsed = await queue_then_close(client, n)
    assert client.stats().delivered == n
    theoretical = n * round_trip_ms / 1000 / CONCURRENCY
    return {"seconds": elapsed, "theoretical_s": theoretical, "ratio": elapsed / theoretical}


# -- the run ----------------------------------------------------------------------------------------------------


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def throughput_figures(
    url: str, n: int, runs: int, *, ssl_context: ssl.SSLContext | None = None, wide: bool = False
) -> dict[str, Any]:
    """
    The SDK, the hand-written baseline, the aiohttp floor (plain http only) and the raw floor on one server,
    interleaved run by run so that all see the same machine; with ``wide``, also the SDK and the raw floor at 256.
    """
    who = (
        ["sdk", "baseline", "raw"]
        + ([] if ssl_context else ["aiohttp_floor"])
        + (["sdk_256", "raw_256"] if wide else [])
    )
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in who}
    for _ in range(runs):
        samples["sdk"].append(await throughput_sdk(url, n, ssl_context=ssl_context))
        samples["baseline"].append(await throughput_baseline(url, n, ssl_context))
        samples["raw"].append(await throughput_raw(url, n, ssl_context=ssl_context))
        if not ssl_context:
            samples["aiohttp_floor"].append(await throughput_floor(url, n))
        if wide:
            samples["sdk_256"].append(await throughput_sdk(url, n, WIDE, ssl_context))
            samples["raw_256"].append(await throughput_raw(url, n, WIDE, ssl_context))
    rtt = await round_trip_ms(url, ssl_context=ssl_context)
    figures: dict[str, Any] = {"n": n, "round_trip_ms": rtt, **{name: median_of(samples[name]) for name in who}}
    figures["sdk_over_baseline"] = figures["sdk"]["events_per_s"] / figures["baseline"]["events_per_s"]
    figures["sdk_cpu_over_raw"] = figures["sdk"]["cpu_us_per_event"] / figures["raw"]["cpu_us_per_event"]
    # The limit at a latency: requests in flight / the measured round trip.
    figures["limit_events_per_s"] = CONCURRENCY / (rtt / 1000)
    for name in ("sdk", "baseline", "raw"):
        figures[f"{name}_over_limit"] = figures[name]["events_per_s"] / figures["limit_events_per_s"]
    if wide:
        figures["limit_256_events_per_s"] = WIDE / (rtt / 1000)
        for name in ("sdk_256", "raw_256"):
            figures[f"{name}_over_limit"] = figures[name]["events_per_s"] / figures["limit_256_events_per_s"]
    return figures


def test_ca(folder: Path) -> tuple[Path, Path, Path] | None:
    """
    A throwaway CA and a certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key), or None
    without the openssl command.
    """
    if shutil.which("openssl") is None:
        return None

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-subj", "/CN=rehook-sdk bench CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=bench")
    (folder / "san.ext").write_text(STRICT_SERVER_EXTENSIONS + "subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


async def run(quick: bool, runs: int) -> dict[str, Any]:
    sizes = (
        {
            "caller": 5_000,
            "tp0": 500,
            "tp20": 640,
            "backlog": 5_000,
            "drain": 640,
            "metrics": 500,
            "auto": 2_000,
            "rate": 1_000,
        }
        if quick
        else {
            "caller": 100_000,
            "tp0": 20_000,
            "tp20": 20_000,
            "backlog": 100_000,
            "drain": 10_000,
            "metrics": 20_000,
            "auto": 100_000,
            "rate": 10_000,
        }
    )
    fast, slow = Server(0), Server(20)
    results: dict[str, Any] = {}
    try:
        results["caller_cost"] = median_of([await caller_cost(fast.url, sizes["caller"]) for _ in range(runs)])
        results["throughput_0ms"] = await throughput_figures(fast.url, sizes["tp0"], runs)
        results["throughput_20ms"] = await throughput_figures(slow.url, sizes["tp20"], runs, wide=True)
        results["backlog"] = median_of([await backlog(fast, sizes["backlog"]) for _ in range(runs)])
        rtt = results["throughput_20ms"]["round_trip_ms"]
        results["drain"] = {
            "n": sizes["drain"],
            **median_of([await drain(slow.url, sizes["drain"], rtt) for _ in range(runs)]),
        }
        variants = ("absent", "api", "sdk")
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for _ in range(runs):  # interleaved, so that all three see the same machine
            for variant in variants:
                samples[variant].append(await metrics_cost(fast.url, sizes["metrics"], variant))
        results["metrics"] = {"n": sizes["metrics"], **{v: median_of(samples[v]) for v in variants}}
        # One run: at 100,000 events four drains take minutes.
        results["adaptive"] = await adaptive(sizes["auto"], seed=2026)
        results["adaptive_rate"] = await adaptive_rate(sizes["rate"])
    finally:
        fast.close()
        slow.close()
    with tempfile.TemporaryDirectory() as folder:
        ca = test_ca(Path(folder))
        if ca is None:
            results["tls_0ms"] = results["tls_20ms"] = None
            return results
        context = ssl.create_default_context(cafile=str(ca[0]))
        tls_fast, tls_slow = Server(0, (ca[1], ca[2])), Server(20, (ca[1], ca[2]))
        try:
            results["tls_0ms"] = await throughput_figures(tls_fast.url, sizes["tp0"], runs, ssl_context=context)
            results["tls_20ms"] = await throughput_figures(tls_slow.url, sizes["tp20"], runs, ssl_context=context)
        finally:
            tls_fast.close()
            tls_slow.close()
    return results


def machine(loop: str) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    return {
        "date": dt.date.today().isoformat(),
        "cpu": model,
        "cores": _cores(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "client_core": CLIENT_CPU if _cores() > 1 else None,
        "server_core": SERVER_CPU if _cores() > 1 else None,
        "loop": loop,
    }


TARGETS = [
    ("caller_cost.track_mean_us", "<=", 2.5),
    ("caller_cost.track_p99_us", "<=", 10.0),
    ("throughput_0ms.sdk_over_baseline", ">=", 2.0),
    ("throughput_0ms.sdk_cpu_over_raw", "<=", 3.0),
    ("throughput_20ms.sdk_over_limit", ">=", 0.95),
    ("throughput_20ms.sdk_256_over_limit", ">=", 0.90),
    ("backlog.bytes_per_queued_event", "<=", 400.0),
    ("backlog.max_stall_ms", "<=", 10.0),
    ("drain.ratio", "<=", 1.05),
    ("tls_0ms.sdk_over_baseline", ">=", 1.5),
    ("adaptive.auto_over_best_fixed", ">=", 0.9),
    ("adaptive.auto_refused_share", "<=", 0.02),
    ("adaptive_rate.auto_over_best_fixed", ">=", 0.9),
    ("adaptive_rate.auto_refused_share", "<=", 0.05),
]


def lookup(results: dict[str, Any], dotted: str) -> float | None:
    """
    The figure at ``dotted``; None when its section did not run (TLS without the openssl command).
    """
    value: Any = results
    for part in dotted.split("."):
        if value is None:
            return None
        value = value[part]
    return float(value)


def met(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


def _throughput_rows(name: str, f: dict[str, Any], key: str | None) -> list[tuple[str, float, str, str | None]]:
    rtt = f["round_trip_ms"]
    floor = f" aiohttp floor {f['aiohttp_floor']['events_per_s']:.0f}," if "aiohttp_floor" in f else ""
    rows = [
        (
            f"{name}: events/s",
            f["sdk"]["events_per_s"],
            f"baseline {f['baseline']['events_per_s']:.0f},{floor} raw {f['raw']['events_per_s']:.0f}",
            None,
        ),
        (
            f"  {name}: SDK / baseline",
            f["sdk_over_baseline"],
            "hand-written aiohttp loop, 64 in flight",
            f"{key}.sdk_over_baseline" if key else None,
        ),
        (
            f"  {name}: CPU us per event",
            f["sdk"]["cpu_us_per_event"],
            f"baseline {f['baseline']['cpu_us_per_event']:.0f}, raw {f['raw']['cpu_us_per_event']:.1f}",
            None,
        ),
        (
            f"  {name}: SDK CPU / raw CPU",
            f["sdk_cpu_over_raw"],
            "asyncio.Protocol + httptools, prebuilt request",
            f"{key}.sdk_cpu_over_raw" if key == "throughput_0ms" else None,
        ),
        (
            f"  {name}: SDK / (64 / RTT)",
            f["sdk_over_limit"],
            f"RTT {rtt:.2f} ms; baseline {f['baseline_over_limit']:.3f}, raw {f['raw_over_limit']:.3f}",
            f"{key}.sdk_over_limit" if key == "throughput_20ms" else None,
        ),
    ]
    if "sdk_256" in f:
        rows.append(
            (
                f"  {name}: SDK at 256 / (256 / RTT)",
                f["sdk_256_over_limit"],
                f"raw at 256 {f['raw_256_over_limit']:.3f}",
                f"{key}.sdk_256_over_limit",
            )
        )
    return rows  # fmt: skip


def table(results: dict[str, Any], info: dict[str, Any]) -> Iterator[str]:
    yield f"{info['date']}, {info['cpu']} ({info['cores']} cores), Python {info['python']}, aiohttp {info['aiohttp']}"
    yield f"client on core {info['client_core']}, server on core {info['server_core']}, loop {info['loop']}"
    c, b, d, m = (results[k] for k in ("caller_cost", "backlog", "drain", "metrics"))
    yield ""
    yield "| figure | rehook-sdk | reference | target | met |"
    yield "|---|---|---|---|---|"
    rows: list[tuple[str, float, str, str | None]] = [
        ("track() mean, us", c["track_mean_us"], f"empty function {c['floor_mean_us']:.2f}", "caller_cost.track_mean_us"),
        ("track() p99, us", c["track_p99_us"], f"empty function {c['floor_p99_us']:.2f}", "caller_cost.track_p99_us"),
        *_throughput_rows("0 ms", results["throughput_0ms"], "throughput_0ms"),
        *_throughput_rows("20 ms", results["throughput_20ms"], "throughput_20ms"),
        ("bytes per queued event", b["bytes_per_queued_event"], f"{b['queued']:.0f} queued", "backlog.bytes_per_queued_event"),
        ("longest loop stall, ms", b["max_stall_ms"], f"{b['full_collections_during_burst']:.0f} full GC; yielding every 1,000 calls: {b['max_stall_ms_1000_per_yield']:.1f} ms, {b['full_collections_during_burst_1000_per_yield']:.0f} full GC; one full GC {b['full_gc_ms']:.1f} ms", "backlog.max_stall_ms"),
        ("drain s", d["seconds"], f"theoretical {d['theoretical_s']:.3f} (64 in flight, measured RTT)", None),
        ("  drain / theoretical", d["ratio"], "", "drain.ratio"),
        ("metrics: track() mean, us, API / SDK", m["api"]["track_mean_us"], f"SDK {m['sdk']['track_mean_us']:.2f}, without the API {m['absent']['track_mean_us']:.2f}", None),
        ("metrics: CPU us per event, API / SDK", m["api"]["cpu_us_per_event"], f"SDK {m['sdk']['cpu_us_per_event']:.1f}, without the API {m['absent']['cpu_us_per_event']:.1f}", None),
    ]  # fmt: skip
    a = results["adaptive"]
    fixed = ", ".join(f"{c}: {f['events_per_s']:.0f}/s" for c, f in a["fixed"].items())
    rows += [
        ("auto: events/s / best fixed", a["auto_over_best_fixed"], f"hidden limit {a['hidden_limit']}, 50 ms; auto {a['auto']['events_per_s']:.0f}/s; fixed {fixed}", "adaptive.auto_over_best_fixed"),
        ("  auto: 429s / requests", a["auto_refused_share"], "", "adaptive.auto_refused_share"),
    ]  # fmt: skip
    r = results["adaptive_rate"]
    fixed = ", ".join(
        f"{c}: {f['events_per_s']:.0f}/s ({f['refused_share']:.1%} refused)" for c, f in r["fixed"].items()
    )
    rows += [
        ("auto vs rate limit: events/s / best fixed", r["auto_over_best_fixed"], f"{r['rate_limit']:.0f}/s, burst {r['burst']:.0f}, 20 ms; auto {r['auto']['events_per_s']:.0f}/s; fixed {fixed}", "adaptive_rate.auto_over_best_fixed"),
        ("  auto: 429s / requests", r["auto_refused_share"], "", "adaptive_rate.auto_refused_share"),
    ]  # fmt: skip
    for name, section in (("TLS 0 ms", "tls_0ms"), ("TLS 20 ms", "tls_20ms")):
        if results.get(section) is not None:
            rows.extend(_throughput_rows(name, results[section], section))
    targets = {key: (op, bound) for key, op, bound in TARGETS}
    for label, value, reference, key in rows:
        if key is None or key not in targets:
            yield f"| {label} | {value:,.3f} | {reference} | | |"
            continue
        op, bound = targets[key]
        yield f"| {label} | {value:,.3f} | {reference} | {op} {bound} | {'yes' if met(value, op, bound) else 'NO'} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the client's event loop (uvloop: pip install uvloop)",
    )
    args = parser.parse_args()
    if _cores() > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CLIENT_CPU})
    runs = args.runs or (1 if args.quick else 3)
    loop_factory = None
    if args.loop == "uvloop":
        loop_factory = importlib.import_module("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        results = runner.run(run(args.quick, runs))
    info = machine(args.loop)
    output = {"machine": info, "quick": args.quick, "runs": runs, "results": results}
    output["targets"] = {
        key: {"value": lookup(results, key), "target": f"{op} {bound}", "met": met(lookup(results, key), op, bound)}
        for key, op, bound in TARGETS
    }
    for line in table(results, info):
        print(line)
    print()
    print(json.dumps(output, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
