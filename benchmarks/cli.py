"""
The command line at scale: ``rehook send`` against the fake Rehook, each in its own process. Loopback only.

    python benchmarks/cli.py                 # 30,000 tracks, 30,000 new-customer identifies, RSS on a 1 GB file
    python benchmarks/cli.py --quick         # 2,000 of each and a 20 MB file (the test suite runs this)
    python benchmarks/cli.py --json out.json

Figures:

1. Throughput: calls/s of ``rehook send`` for N tracks and for N identifies of new customers (each one makes the
   fake create a customer and a referral code), with the CLI's CPU and the fake's own CPU reported separately.
2. Memory: the CLI's peak RSS (VmHWM) on ``--dry-run`` of a 1 GB file, against a 10 MB one (reading is lazy: it
   should not grow with the file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_calls(path: Path, kind: str, count: int, pad: int = 0) -> None:
    with path.open("w") as out:
        for i in range(count):
            if kind == "track":
                call: dict[str, Any] = {"type": "track", "event": "Order Completed", "userId": f"u{i}"}
                call["properties"] = {"total": i, "pad": "x" * pad} if pad else {"total": i}
            else:
                call = {"type": "identify", "userId": f"new{i}", "traits": {"plan": "pro"}}
            out.write(json.dumps(call) + "\n")


def start_fake(source: str | None, latency: float) -> tuple[subprocess.Popen[str], str]:
    # source: another checkout whose fake to run (to compare with an earlier version); default this one's.
    env = {**os.environ, "PYTHONPATH": source} if source else None
    extra = ["--latency", str(latency)] if latency else []
    fake = subprocess.Popen(
        [sys.executable, "-m", "rehook_sdk.testing", "--port", "0", "--no-record", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=source,  # python -m puts the current folder first on sys.path
    )
    assert fake.stdout is not None
    url = fake.stdout.readline().split()[-1]
    fake.stdout.readline()
    fake.stdout.readline()
    return fake, url


def send(path: Path, url: str, fake_pid: int, *extra: str, cli_from: str | None = None) -> dict[str, Any]:
    env = {**os.environ, "REHOOK_BASE_URL": url, "REHOOK_API_KEY": "test_key", "REHOOK_API_SECRET": "test_secret"}
    code = (
        "import resource, sys; from rehook_sdk._cli import main; "
        f"c = main(['send', {str(path)!r}, '--no-progress', *{list(extra)!r}]); "
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "u = resource.getrusage(resource.RUSAGE_SELF); "
        "print('figures', hwm, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(c)"
    )
    fake_before = cpu_seconds(fake_pid) if fake_pid else 0.0
    started = time.perf_counter()
    quiet = "--dry-run" in extra  # its output is one line per call: not kept
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": cli_from} if cli_from else env,
        cwd=cli_from,
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    result.stdout = result.stdout or ""
    elapsed = time.perf_counter() - started
    if result.returncode != 0 and not cli_from:
        raise SystemExit(f"rehook send failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    hwm, cpu = result.stderr.rsplit("figures", 1)[1].split()
    return {
        "seconds": round(elapsed, 2),
        "cli_cpu_seconds": round(float(cpu), 2),
        "fake_cpu_seconds": round(cpu_seconds(fake_pid) - fake_before, 2) if fake_pid else None,
        "peak_rss_mib": round(int(hwm) / 1024, 1),
        "delivered": next(
            (int(row.split("|")[2]) for row in result.stdout.splitlines() if row.startswith("delivered")), 0
        ),
    }


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--quick", action="store_true")
    options.add_argument("--json", default=None, metavar="PATH")
    options.add_argument("--calls", type=int, default=None, help="calls per kind (default 30000; --quick 2000)")
    options.add_argument("--fake-from", default=None, metavar="DIR", help="run the fake of another checkout")
    options.add_argument("--no-memory", action="store_true", help="skip the dry-run memory figures")
    options.add_argument("--latency", type=float, default=0.0, help="the fake's answer latency, seconds")
    options.add_argument("--cli-from", default=None, metavar="DIR", help="run the CLI of another checkout")
    options.add_argument("--kinds", default="track,identify", help="which calls to send (default track,identify)")
    args = options.parse_args()
    count = args.calls or (2_000 if args.quick else 30_000)
    big_mib = 20 if args.quick else 1024
    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "calls": count,
    }
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        fake, url = start_fake(args.fake_from, args.latency)
        try:
            for kind in args.kinds.split(","):
                path = tmp / f"{kind}.jsonl"
                write_calls(path, kind, count)
                run = send(path, url, fake.pid, cli_from=args.cli_from)
                run["calls_per_second"] = round(count / run["seconds"])
                figures[kind] = run
                print(f"{count} {kind}: {run}", flush=True)
        finally:
            fake.terminate()
            fake.wait()
        # Memory: --dry-run (reads and maps every line, sends nothing) of a small and a large file.
        line = len(json.dumps({"type": "track", "event": "Order Completed", "userId": "u0", "properties": {}})) + 300
        sizes = () if args.no_memory else (("small", 10 if not args.quick else 2), ("large", big_mib))
        for label, mib in sizes:
            path = tmp / f"{label}.jsonl"
            write_calls(path, "track", mib * 1024 * 1024 // line, pad=280)
            run = send(path, url, 0, "--dry-run")
            run["file_mib"] = round(path.stat().st_size / 1024 / 1024)
            run.pop("fake_cpu_seconds")
            run.pop("delivered")
            figures[f"dry_run_{label}"] = run
            print(f"dry run, {run['file_mib']} MiB file: {run}", flush=True)
            path.unlink()
    if "identify" in figures and "track" in figures:
        ratio = figures["identify"]["calls_per_second"] / figures["track"]["calls_per_second"]
        figures["identify_over_track"] = round(ratio, 3)
        print(f"identifies/s over tracks/s: {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
