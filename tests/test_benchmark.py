"""
The benchmark's smoke mode runs end to end, so the benchmark cannot rot; it asserts no speed (see docs/performance.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import POSTGRES_URL

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """bench.py --quick prints the table and writes JSON with every figure and target."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "| track() mean, us |" in result.stdout
    data = json.loads(out.read_text())
    results = data["results"]
    assert results["caller_cost"]["track_mean_us"] > 0
    assert results["throughput_0ms"]["sdk"]["events_per_s"] > 0
    assert results["throughput_0ms"]["baseline"]["events_per_s"] > 0
    assert results["throughput_0ms"]["raw"]["cpu_us_per_event"] > 0
    assert results["throughput_20ms"]["raw_256"]["events_per_s"] > 0
    assert 2000 < results["throughput_20ms"]["limit_events_per_s"] <= 3200  # 64 / the measured round trip
    assert results["backlog"]["bytes_per_queued_event"] > 0
    assert results["backlog"]["full_gc_ms"] > 0
    assert results["backlog"]["full_collections_during_burst"] >= 0
    assert results["backlog"]["max_stall_ms_1000_per_yield"] > 0
    assert results["drain"]["ratio"] > 0
    if shutil.which("openssl") is not None:
        assert results["tls_0ms"]["sdk"]["events_per_s"] > 0
    assert set(data["targets"]) == {
        "caller_cost.track_mean_us",
        "caller_cost.track_p99_us",
        "throughput_0ms.sdk_over_baseline",
        "throughput_0ms.sdk_cpu_over_raw",
        "throughput_20ms.sdk_over_limit",
        "throughput_20ms.sdk_256_over_limit",
        "backlog.bytes_per_queued_event",
        "backlog.max_stall_ms",
        "drain.ratio",
        "tls_0ms.sdk_over_baseline",
        "adaptive.auto_over_best_fixed",
        "adaptive.auto_refused_share",
        "adaptive_rate.auto_over_best_fixed",
        "adaptive_rate.auto_refused_share",
    }
    assert results["adaptive"]["auto"]["events_per_s"] > 0
    assert results["adaptive_rate"]["auto"]["delivered"] == results["adaptive_rate"]["n"]
    assert data["machine"]["python"]


DELIVERY = BENCH.with_name("delivery.py")


def test_quick_delivery_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """delivery.py --quick runs every scenario in its own process and writes every figure."""
    out = tmp_path / "delivery.json"
    result = subprocess.run(
        [sys.executable, str(DELIVERY), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {
        "aclose_10k",
        "aclose_10k_dead_letter",
        "aclose_10k_dead_letter_file_log",
        "aclose_100k",
        "aclose_100k_dead_letter",
        "aclose_100k_dead_letter_file_log",
        "storm_401",
        "rule_drops",
        "huge_bodies",
        "caller_cost",
    }
    assert all(r["aclose_s"] > 0 for name, r in results.items() if name.startswith("aclose"))
    assert results["huge_bodies"]["delivered"] == results["huge_bodies"]["answers"]
    assert set(results["caller_cost"]["us_per_call"]) == {"queued", "dropped", "dropped_dead_letter_file_log"}
    assert "| storm_401 |" in result.stdout


def test_quick_cli_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """benchmarks/cli.py --quick sends tracks and identifies through `rehook send` and measures a dry run's RSS."""
    out = tmp_path / "cli.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "cli.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for kind in ("track", "identify"):
        assert data[kind]["delivered"] == data["calls"]
        assert data[kind]["calls_per_second"] > 0
        assert data[kind]["fake_cpu_seconds"] >= 0
    assert data["dry_run_large"]["file_mib"] > data["dry_run_small"]["file_mib"]
    assert data["identify_over_track"] > 0


def run_spool_benchmark(tmp_path: Path, *options: str) -> dict[str, Any]:
    out = tmp_path / "spool.json"
    result = subprocess.run(
        [sys.executable, str(BENCH.with_name("spool.py")), "--quick", "--json", str(out), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| track() mean, us |" in result.stdout
    results: dict[str, Any] = json.loads(out.read_text())["results"]
    assert set(results) == {
        "caller_cost",
        "caller_cost_alternating",
        "throughput_0ms",
        "throughput_20ms",
        "restart_0ms",
        "burst",
        "sigkill",
    }
    assert set(results["caller_cost_alternating"]["ratio"]) == set(results["caller_cost"]) - {"memory"}
    for figures in results["burst"].values():
        assert 0 <= figures["unspooled_at_end"] <= 3_000
    for kills in results["sigkill"].values():
        for run in kills["runs"]:
            assert 0 < run["found"] <= run["accepted"]  # the spool never holds a call that was not accepted
            assert run["lost"] == run["accepted"] - run["found"]
    return results


def test_quick_spool_benchmark_produces_every_figure(tmp_path: Path) -> None:
    """benchmarks/spool.py --quick measures every figure with and without a spool, SIGKILLs included."""
    results = run_spool_benchmark(tmp_path)
    assert set(results["throughput_0ms"]) == {"memory", "normal", "full"}
    assert set(results["sigkill"]) == {"normal"}


def test_quick_spool_benchmark_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """With --postgres, every figure also for a PostgreSQL spool, in schemas it drops afterwards."""
    import psycopg

    results = run_spool_benchmark(tmp_path, "--postgres", POSTGRES_URL)
    assert set(results["restart_0ms"]) == {"normal", "full", "postgres"}
    assert results["restart_0ms"]["postgres"]["bytes_per_call"] > 0
    assert set(results["sigkill"]) == {"normal", "postgres"}
    with psycopg.connect(POSTGRES_URL) as connection:
        left = connection.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rehook_bench_%'").fetchall()
    assert left == []
